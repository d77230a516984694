"""One function per implemented operation of the OpenAPI document, keyed by operationId.

Each takes the service (as ``Books``: its market and account) and a ``Request``
whose query and body already passed the schema, and answers ``(status, JSON
body)``. Rules the schema cannot state (money format, script length, time
windows, references to other objects) are checked here.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from sflow.mithril.emulator import views
from sflow.mithril.emulator.account import Account, generate_key_pair
from sflow.mithril.emulator.market import Market, MarketError, Pool
from sflow.mithril.emulator.schema import invalid
from sflow.mithril.money import parse_dollars

MAX_STARTUP_SCRIPT = 10_000
DEFAULT_PAGE = 100


class Books(Protocol):
    """What a route reads and changes: the market and the account (the service holds both)."""

    market: Market
    account: Account


@dataclass
class Request:
    now: float
    path: dict[str, str]
    query: dict[str, Any]
    body: Any


ROUTES: dict[str, Callable[[Books, Request], tuple[int, Any]]] = {}


def route(operation_id: str):
    def register(fn):
        ROUTES[operation_id] = fn
        return fn

    return register


# ----- helpers ---------------------------------------------------------------------------------


def _page(items: list, query: dict) -> dict:
    """Cursor paging: the cursor is an opaque offset into the sorted list."""
    limit = query.get("limit") or DEFAULT_PAGE
    offset = 0
    cursor = query.get("next_cursor")
    if cursor:
        try:
            offset = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode().removeprefix("o"))
            if offset < 0:
                raise ValueError
        except ValueError:
            raise invalid(["query", "next_cursor"], "Invalid cursor") from None
    end = offset + limit
    following = base64.urlsafe_b64encode(f"o{end}".encode()).decode().rstrip("=") if end < len(items) else None
    return {"data": items[offset:end], "next_cursor": following}


def _sort(items: list, query: dict, keys: dict[str, Callable]) -> list:
    key = keys[query.get("sort_by") or "created_at"]
    return sorted(items, key=key, reverse=query.get("sort_dir") == "desc")


def _instance_type_ref(svc: Books, ref: str, where: list) -> str:
    """A body must name an instance type by fid, as the real service expects."""
    it = svc.market.catalog.find(ref)
    if it is None or it.fid != ref:
        raise invalid(where, f"Unknown instance type {ref!r} (expected an it_ fid)")
    return it.fid


def _pool_for_query(svc: Books, instance_type: str, region: str) -> Pool:
    if svc.market.catalog.find(instance_type) is None:
        raise MarketError(f"Instance type {instance_type} not found", 404)
    return svc.market.pool(region, instance_type)


def _dollars(text: str, loc: list) -> int:
    try:
        return parse_dollars(text)
    except ValueError:
        raise invalid(loc, "Value error, price must look like \"$12.34\"") from None


def _time(text: str | None, loc: list, *, required: bool = True) -> float | None:
    if text is None:
        if required:
            raise invalid(loc, "Field required", "missing")
        return None
    try:
        return views.parse_iso(text)
    except ValueError:
        raise invalid(loc, "Input should be a valid datetime", "datetime_parsing") from None


def _launch_spec(svc: Books, project: str, spec: dict, loc: list) -> dict:
    script = spec.get("startup_script")
    if script is not None and len(script) > MAX_STARTUP_SCRIPT:
        raise invalid(loc + ["startup_script"], f"String should have at most {MAX_STARTUP_SCRIPT} characters",
                      "string_too_long")
    svc.account.check_keys(project, spec.get("ssh_keys") or [])
    return dict(spec)


def _quantity(value: int, loc: list) -> int:
    if value < 1:
        raise invalid(loc, "Input should be greater than or equal to 1", "greater_than_equal")
    return value


# ----- profile and catalog ---------------------------------------------------------------------


@route("get_me_v2_me_get")
def get_me(svc, req):
    return 200, views.me(svc.account)


@route("get_projects_v2_projects_get")
def get_projects(svc, req):
    return 200, [views.project(p) for p in svc.account.projects]


@route("get_instance_types_v2_instance_types_get")
def get_instance_types(svc, req):
    return 200, [views.instance_type(it) for it in svc.market.catalog.instance_types]


@route("get_auctions_v2_spot_availability_get")
def get_auctions(svc, req):
    return 200, [views.auction(svc.market, pool, req.now) for pool in svc.market.pools.values()]


@route("get_current_prices_v2_v2_pricing_current_get")
def get_current_prices(svc, req):
    market, q = svc.market, req.query
    it = market.catalog.find(q["instance_type"])
    if it is None:
        raise MarketError(f"Instance type {q['instance_type']} not found", 404)
    pools = [p for (region, fid), p in market.pools.items()
             if fid == it.fid and (q.get("region") is None or region == q["region"])]
    if not pools:
        raise MarketError(f"Instance type {it.name} is not offered in region {q.get('region')}", 404)
    quantity = q.get("instance_quantity") or 1
    wins = [w for w in (market.win_price_cents(p, quantity, req.now) for p in pools) if w is not None]
    lows = [p.lowest_allocated_cents for p in pools if p.lowest_allocated_cents is not None]
    return 200, {
        "spot_price_cents": min(p.clearing_cents for p in pools),
        "reserved_price_cents": it.reserved_cents,
        "minimum_price_cents": it.reserve_cents,
        "lowest_allocated_bid_cents": min(lows) if lows else None,
        "dynamic_win_price_cents": min(wins) if wins else None,
        "available_capacity": sum(market.available(p, req.now) for p in pools),
        "total_capacity": sum(market.capacity(p, req.now) for p in pools),
    }


# ----- spot bids -------------------------------------------------------------------------------


@route("create_bid_v2_spot_bids_post")
def create_bid(svc, req):
    body = req.body
    svc.account.project(body["project"])
    limit = _dollars(body["limit_price"], ["body", "limit_price"])
    quantity = _quantity(body["instance_quantity"], ["body", "instance_quantity"])
    it = _instance_type_ref(svc, body["instance_type"], ["body", "instance_type"])
    spec = _launch_spec(svc, body["project"], body["launch_specification"], ["body", "launch_specification"])
    bid = svc.market.place_bid(req.now, project=body["project"], region=body["region"], instance_type=it,
                               limit_cents=limit, quantity=quantity, name=body["name"], launch_specification=spec,
                               created_by=svc.account.user_fid, notification_email=body.get("notification_email"))
    return 201, views.bid(bid)


@route("get_bids_v2_spot_bids_get")
def get_bids(svc, req):
    q = req.query
    bids = [b for b in svc.market.bids.values()
            if all(q.get(k) is None or q[k] == v for k, v in
                   (("project", b.project), ("instance_type", b.instance_type), ("region", b.region),
                    ("status", b.status), ("name", b.name)))]
    bids = _sort(bids, q, {"created_at": lambda b: (b.created_at, b.seq), "status": lambda b: (b.status, b.seq)})
    page = _page(bids, q)
    page["data"] = [views.bid(b) for b in page["data"]]
    return 200, page


@route("get_bid_v2_spot_bids__bid_fid__get")
def get_bid(svc, req):
    return 200, views.bid(svc.market.get_bid(req.path["bid_fid"]))


@route("update_bid_v2_spot_bids__bid_fid__patch")
def update_bid(svc, req):
    body = req.body
    limit = _dollars(body["limit_price"], ["body", "limit_price"]) if body.get("limit_price") is not None else None
    bid = svc.market.update_bid(req.now, req.path["bid_fid"], limit_cents=limit, paused=body.get("paused"))
    return 200, views.bid(bid)


@route("cancel_bid_v2_spot_bids__bid_fid__delete")
def cancel_bid(svc, req):
    svc.market.cancel_bid(req.now, req.path["bid_fid"])
    return 204, None


@route("get_bid_status_v2_spot_bids__bid_fid__status_get")
def get_bid_status(svc, req):
    bid = svc.market.get_bid(req.path["bid_fid"])
    return 200, {"bid_fid": bid.fid, "status": bid.status}


# ----- instances -------------------------------------------------------------------------------


@route("get_instances_v2_instances_get")
def get_instances(svc, req):
    q = req.query
    svc.account.project(q["project"])
    wanted_order = set(q.get("order_type_in") or ["Bid", "Reservation"])

    def keep(i) -> bool:
        order = "Bid" if i.bid else "Reservation"
        return (i.project == q["project"] and order in wanted_order
                and (q.get("instance_type") is None or i.instance_type == q["instance_type"])
                and (q.get("region") is None or i.region == q["region"])
                and (not q.get("status_in") or i.status in q["status_in"])
                and (not q.get("bid_fid_in") or i.bid in q["bid_fid_in"])
                and (not q.get("reservation_fid_in") or i.reservation in q["reservation_fid_in"]))

    order = {fid: n for n, fid in enumerate(svc.market.instances)}
    items = _sort([i for i in svc.market.instances.values() if keep(i)], q, {
        "created_at": lambda i: (i.created_at, order[i.fid]),
        "instance_status": lambda i: (i.status, order[i.fid]),
        "instance_type_fid": lambda i: (i.instance_type, order[i.fid]),
    })
    page = _page(items, q)
    page["data"] = [views.instance(i) for i in page["data"]]
    return 200, page


def _history_instances(svc: Books, q: dict) -> list:
    """The instances a history asks for: of the project, narrowed to one instance, bid or reservation
    (404 when unknown)."""
    market = svc.market
    svc.account.project(q["project"])
    for name, table in (("instance_fid", market.instances), ("bid_fid", market.bids),
                        ("reservation_fid", market.reservations)):
        if q.get(name) is not None and (q[name] not in table or table[q[name]].project != q["project"]):
            raise MarketError(f"{name.removesuffix('_fid').capitalize()} {q[name]} not found", 404)
    return [i for i in market.instances.values()
            if i.project == q["project"]
            and (q.get("instance_fid") is None or i.fid == q["instance_fid"])
            and (q.get("bid_fid") is None or i.bid == q["bid_fid"])
            and (q.get("reservation_fid") is None or i.reservation == q["reservation_fid"])]


@route("get_instance_pricing_history_v2_instances_pricing_history_get")
def get_instance_pricing_history(svc, req):
    """The billing ledger, per instance: one event per stretch at one price (``end_time`` null while it
    runs). ``start_time``/``end_time`` keep the events overlapping that window."""
    q, market = req.query, svc.market
    items = _history_instances(svc, q)
    begin = _time(q.get("start_time"), ["query", "start_time"], required=False)
    end = _time(q.get("end_time"), ["query", "end_time"], required=False)
    page = _page(items, q)

    def overlaps(iv) -> bool:
        return (begin is None or iv.end is None or iv.end > begin) and (end is None or iv.start < end)

    return 200, {"instances": [views.pricing_history(i, [iv for iv in market.pricing_history(i) if overlaps(iv)])
                               for i in page["data"]],
                 "next_cursor": page["next_cursor"]}


@route("get_instance_status_history_v2_instances_status_history_get")
def get_instance_status_history(svc, req):
    """Every status each instance (of a bid, a reservation, or one instance) has had, oldest first;
    ``start_time``/``end_time`` keep the changes made in that window."""
    q = req.query
    items = _history_instances(svc, q)
    begin = _time(q.get("start_time"), ["query", "start_time"], required=False)
    end = _time(q.get("end_time"), ["query", "end_time"], required=False)
    page = _page(items, q)

    def within(at: float) -> bool:
        at = views.parse_iso(views.iso(at))  # as the client sees it, to the microsecond
        return (begin is None or at >= begin) and (end is None or at < end)

    return 200, {"instances": [views.status_history(i, [(at, s) for at, s in i.history if within(at)])
                               for i in page["data"]],
                 "next_cursor": page["next_cursor"]}


# ----- SSH keys --------------------------------------------------------------------------------


@route("get_ssh_keys_v2_ssh_keys_get")
def get_ssh_keys(svc, req):
    svc.account.project(req.query["project"])
    return 200, [views.ssh_key(k) for k in svc.account.keys_of(req.query["project"])]


@route("create_ssh_key_v2_ssh_keys_post")
def create_ssh_key(svc, req):
    body = req.body
    svc.account.project(body["project"])
    private = None
    public = body.get("public_key")
    if public is None:
        private, public = generate_key_pair()
    try:
        key = svc.account.add_ssh_key(req.now, body["project"], body["name"], public, bool(body.get("required")))
    except MarketError as e:
        raise invalid(["body", "public_key"], e.message) from None
    return 201, views.ssh_key(key, private, created=True)


# ----- API keys --------------------------------------------------------------------------------


@route("get_api_keys_v2_api_keys_get")
def get_api_keys(svc, req):
    return 200, [views.api_key(k) for k in svc.account.api_keys.values()]


@route("create_api_key_v2_api_keys_post")
def create_api_key(svc, req):
    body = req.body
    expires = _time(body["expires_at"], ["body", "expires_at"])
    try:
        key = svc.account.add_api_key(req.now, body["name"], expires)
    except MarketError as e:
        return e.status, None  # an expiry already past; the schema gives a 400 no body
    return 201, views.api_key(key, created=True)


@route("revoke_api_key_v2_api_keys__key_fid__delete")
def revoke_api_key(svc, req):
    try:
        svc.account.revoke_api_key(req.now, req.path["key_fid"])
    except MarketError as e:
        return e.status, None  # the schema gives a 404 no body
    return 204, None


# ----- reservations ----------------------------------------------------------------------------


@route("create_reservation_v2_reservation_post")
def create_reservation(svc, req):
    body = req.body
    svc.account.project(body["project"])
    it = _instance_type_ref(svc, body["instance_type"], ["body", "instance_type"])
    start = _time(body["start_time"], ["body", "start_time"])
    end = _time(body["end_time"], ["body", "end_time"])
    quantity = _quantity(body["instance_quantity"], ["body", "instance_quantity"])
    spec = _launch_spec(svc, body["project"], body["launch_specification"], ["body", "launch_specification"])
    price = body.get("price_specification") or {}
    res = svc.market.create_reservation(
        req.now, project=body["project"], region=body["region"], instance_type=it, start=start, end=end,
        quantity=quantity, name=body["name"], launch_specification=spec, created_by=svc.account.user_fid,
        notification_email=body.get("notification_email"), max_unit_cents=price.get("max_unit_price"))
    return 201, views.reservation(res)


@route("get_reservations_v2_reservation_get")
def get_reservations(svc, req):
    q = req.query
    svc.account.project(q["project"])
    items = [r for r in svc.market.reservations.values()
             if r.project == q["project"]
             and all(q.get(k) is None or q[k] == v for k, v in
                     (("instance_type", r.instance_type), ("region", r.region), ("status", r.status)))]
    order = {fid: n for n, fid in enumerate(svc.market.reservations)}
    items = _sort(items, q, {"created_at": lambda r: (r.created_at, order[r.fid]),
                             "status": lambda r: (r.status, order[r.fid])})
    page = _page(items, q)
    page["data"] = [views.reservation(r) for r in page["data"]]
    return 200, page


@route("terminate_instance_v2_reservation__reservation_fid__terminate_instances_post")
def terminate_reservation_instances(svc, req):
    body = req.body
    if len(set(body["instances"])) != len(body["instances"]):
        raise invalid(["body", "instances"], "Instances must be unique")
    try:
        svc.market.terminate_reservation_instances(req.now, req.path["reservation_fid"], list(body["instances"]))
    except MarketError as e:
        if e.status in (400, 404):
            return e.status, None  # the schema gives these answers no body
        raise
    return 200, {}


@route("get_availability_v2_reservation_availability_get")
def get_reservation_availability(svc, req):
    q, market = req.query, svc.market
    svc.account.project(q["project"])
    pool = _pool_for_query(svc, q["instance_type"], q["region"])
    mode = q.get("mode") or "latest_end_time"
    if mode == "slots":
        begin = _time(q.get("earliest_start_time"), ["query", "earliest_start_time"])
        end = _time(q.get("latest_end_time"), ["query", "latest_end_time"])
        if end <= begin:
            raise invalid(["query", "latest_end_time"], "latest_end_time must be after earliest_start_time")
        return 200, [views.slot(a, b, free) for a, b, free in market.free_segments(pool, begin, end) if free > 0]
    start = _time(q.get("start_time"), ["query", "start_time"])
    if q.get("quantity") is None:
        raise invalid(["query", "quantity"], "Field required", "missing")
    quantity = q["quantity"]
    if mode == "check":
        end = _time(q.get("end_time"), ["query", "end_time"])
        if end <= start:
            raise invalid(["query", "end_time"], "end_time must be after start_time")
        ok = market.reservable(pool, start, end) >= quantity
        return 200, [views.slot(start, end, quantity)] if ok else []
    latest = market.latest_end(pool, start, quantity)
    return 200, [views.slot(start, latest, quantity)] if latest is not None else []

