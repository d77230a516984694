"""The spot auction, instance lifecycle, billing ledger and reservations.

Pure and deterministic: no I/O, no threads, no clock of its own. Every entry
point takes ``now`` (seconds, any epoch) and ``advance(now)`` replays, in time
order, everything due by then: scheduled auction ticks, instance start-up,
the end of preemption notices, reservation windows. Given the same calls with
the same ``now`` values, the state is the same.

Scripted supply and competing demand are step functions keyed by seconds
since the market's ``start``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from sflow.mithril.emulator.catalog import Catalog, InstanceType
from sflow.mithril.emulator.ids import Ids, stable_id

# Bid statuses (BidModel.status)
OPEN, ALLOCATED, PREEMPTING, TERMINATED, PAUSED = "Open", "Allocated", "Preempting", "Terminated", "Paused"
LIVE_BID = (OPEN, ALLOCATED, PREEMPTING, PAUSED)

# Instance statuses (InstanceModel.status)
S_NEW, S_STARTING, S_RUNNING = "STATUS_NEW", "STATUS_STARTING", "STATUS_RUNNING"
S_PREEMPTING, S_PAUSED = "STATUS_PREEMPTING", "STATUS_PAUSED"
S_TERMINATED, S_ERROR = "STATUS_TERMINATED", "STATUS_ERROR"
# statuses in which an instance still occupies a machine
HOLDING = (S_NEW, S_STARTING, S_RUNNING, S_PREEMPTING)

# Reservation statuses (ReservationModel.status)
R_PENDING, R_ACTIVE, R_PAUSED, R_CANCELED, R_ENDED = "Pending", "Active", "Paused", "Canceled", "Ended"

HOUR = 3600.0
MIN_RESERVATION_HOURS, MAX_RESERVATION_HOURS = 3, 14 * 24
# a reservation may start this long before the request arrives (clock skew, slow clients)
RESERVATION_START_GRACE = 300.0


class MarketError(Exception):
    """A request the market refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field  # the request field at fault, for a 422


@dataclass
class MarketConfig:
    tick_seconds: float = 2.0  # production: 120
    notice_seconds: float = 300.0  # preemption notice
    startup_seconds: float = 3.0  # allocated -> running (not billed)


@dataclass
class Pool:
    """One auction: an instance type in a region."""

    fid: str
    region: str
    instance_type: InstanceType
    supply: list[tuple[float, int]]  # (offset, capacity) steps, sorted
    demand: list[tuple[float, int, int]] = field(default_factory=list)  # (offset, limit cents, quantity)
    clearing_cents: int = 0
    lowest_allocated_cents: int | None = None
    competing_held: int = 0  # instances competing demand won at the last auction

    def holds(self, thing) -> bool:
        """Whether a bid, instance or reservation belongs to this auction."""
        return (thing.region, thing.instance_type) == (self.region, self.instance_type.fid)

    def supply_at(self, offset: float) -> int:
        capacity = 0
        for at, cap in self.supply:
            if at > offset:
                break
            capacity = cap
        return capacity

    def demand_at(self, offset: float) -> list[tuple[float, int, int]]:
        """The competing bids standing at ``offset``: those of the latest step at or before it."""
        latest = None
        for at, _, _ in self.demand:
            if at <= offset:
                latest = at
        return [d for d in self.demand if d[0] == latest and d[2] > 0]


@dataclass
class Bid:
    fid: str
    name: str
    project: str
    created_by: str
    created_at: float
    region: str
    instance_type: str  # fid
    quantity: int
    limit_cents: int
    launch_specification: dict
    seq: int  # submission order, breaks ties between equal limits
    notification_email: str | None = None
    status: str = OPEN
    price_cents: int | None = None  # what each instance pays per hour while allocated
    instances: list[str] = field(default_factory=list)  # the latest allocation
    deactivated_at: float | None = None
    notice_ends: float | None = None


@dataclass
class Instance:
    fid: str
    name: str
    project: str
    created_by: str
    created_at: float
    region: str
    instance_type: str
    private_ip: str
    starting_at: float
    running_at: float
    bid: str | None = None
    reservation: str | None = None
    status: str = S_NEW
    ssh_destination: str | None = None
    ended_at: float | None = None
    # (when, status) of every status it has had, oldest first: its status history
    history: list[tuple[float, str]] = field(default_factory=list)

    @property
    def hostname(self) -> str:
        return self.fid.replace("_", "-")

    def become(self, status: str, at: float) -> None:
        self.status = status
        self.history.append((at, status))


@dataclass
class Interval:
    """One stretch of billing for one instance at one hourly price."""

    start: float
    end: float | None
    price_cents: int

    def cost_cents(self, now: float) -> float:
        end = self.end if self.end is not None else now
        return max(0.0, end - self.start) / HOUR * self.price_cents


@dataclass
class Reservation:
    fid: str
    name: str
    project: str
    created_by: str
    created_at: float
    region: str
    instance_type: str
    quantity: int
    start: float
    end: float
    unit_cents: int
    launch_specification: dict
    notification_email: str | None = None
    status: str = R_PENDING
    instances: list[str] = field(default_factory=list)
    deactivated_at: float | None = None
    bought: int | None = None  # the quantity paid for up front (terminating instances lowers ``quantity``)

    @property
    def total_cents(self) -> int:
        quantity = self.bought if self.bought is not None else self.quantity
        return round(self.unit_cents * quantity * (self.end - self.start) / HOUR)


@dataclass(frozen=True)
class Event:
    """Something the world outside the market must act on: ``start`` or ``stop`` a host."""

    kind: str
    instance: str


@dataclass
class _Contender:
    limit_cents: int
    quantity: int
    order: tuple
    bid: Bid | None  # None: competing demand


class Market:
    def __init__(self, catalog: Catalog, config: MarketConfig | None = None, *, start: float = 0.0,
                 ids: Ids | None = None):
        self.catalog = catalog
        self.config = config or MarketConfig()
        self.start = start
        self.ids = ids or Ids()
        self.next_tick = start + self.config.tick_seconds
        self.pools: dict[tuple[str, str], Pool] = {}
        for (region, type_name), capacity in sorted(catalog.supply.items()):
            it = catalog.find(type_name)
            if it is None:
                raise ValueError(f"supply names an unknown instance type {type_name!r}")
            self.pools[(region, it.fid)] = Pool(stable_id("auc", f"{region}/{it.name}"), region, it,
                                                [(0.0, capacity)], clearing_cents=it.reserve_cents)
        self.bids: dict[str, Bid] = {}
        self.instances: dict[str, Instance] = {}
        self.reservations: dict[str, Reservation] = {}
        self.ledger: dict[str, dict[str, list[Interval]]] = {}  # bid -> instance -> intervals
        self.events: list[Event] = []
        self._seq = 0

    # ----- scripting -------------------------------------------------------------------------

    def pool(self, region: str, instance_type: str) -> Pool:
        it = self.catalog.find(instance_type)
        pool = self.pools.get((region, it.fid)) if it else None
        if pool is None:
            raise MarketError(f"Instance type {instance_type} is not offered in region {region}", 400)
        return pool

    def script_supply(self, region: str, instance_type: str, steps: Iterable[tuple[float, int]]) -> None:
        """Capacity over time: ``[(offset, capacity), ...]``, offsets in seconds since ``start``."""
        self.pool(region, instance_type).supply = sorted((float(t), int(c)) for t, c in steps)

    def script_demand(self, region: str, instance_type: str, steps: Iterable[tuple[float, int, int]]) -> None:
        """Other users' bids over time: ``[(offset, limit cents, quantity), ...]``.

        The entries sharing the latest offset at or before a moment are the competing bids
        standing then (each one all-or-nothing, like a user's); a quantity of 0 clears them.
        """
        self.pool(region, instance_type).demand = sorted((float(t), int(p), int(q)) for t, p, q in steps)

    # ----- bids ------------------------------------------------------------------------------

    def place_bid(self, now: float, *, project: str, region: str, instance_type: str, limit_cents: int,
                  quantity: int, name: str, launch_specification: dict, created_by: str,
                  notification_email: str | None = None) -> Bid:
        self.advance(now)
        pool = self.pool(region, instance_type)
        if quantity < 1:
            raise MarketError("instance_quantity must be at least 1", 422, "instance_quantity")
        self._seq += 1
        bid = Bid(self.ids.new("bid"), name, project, created_by, now, region, pool.instance_type.fid, quantity,
                  limit_cents, dict(launch_specification), self._seq, notification_email)
        self.bids[bid.fid] = bid
        self.ledger[bid.fid] = {}
        return bid

    def get_bid(self, fid: str) -> Bid:
        bid = self.bids.get(fid)
        if bid is None:
            raise MarketError(f"Bid {fid} not found", 404)
        return bid

    def update_bid(self, now: float, fid: str, *, limit_cents: int | None = None, paused: bool | None = None) -> Bid:
        self.advance(now)
        bid = self.get_bid(fid)
        if bid.status == TERMINATED:
            raise MarketError(f"Bid {fid} is terminated", 400)
        if limit_cents is not None:
            bid.limit_cents = limit_cents
            # takes effect at the next auction, except that nobody pays above their limit, ever
            if bid.price_cents is not None and bid.price_cents > limit_cents:
                self._set_price(bid, limit_cents, now)
        if paused is True and bid.status != PAUSED:
            for inst in self._live_instances(bid):
                self._end_instance(inst, now, S_PAUSED)
            bid.status, bid.price_cents, bid.notice_ends = PAUSED, None, None
        elif paused is False and bid.status == PAUSED:
            for fid_ in bid.instances:
                inst = self.instances[fid_]
                if inst.status == S_PAUSED:
                    inst.become(S_TERMINATED, now)  # replaced by the next allocation
            bid.status, bid.instances = OPEN, []
        return bid

    def cancel_bid(self, now: float, fid: str) -> Bid:
        """Terminate at once: instances stop and billing ends now. Cancelling twice is harmless."""
        self.advance(now)
        bid = self.get_bid(fid)
        if bid.status != TERMINATED:
            for fid_ in bid.instances:
                inst = self.instances[fid_]
                if inst.status in HOLDING:
                    self._end_instance(inst, now, S_TERMINATED)
                elif inst.status == S_PAUSED:
                    inst.become(S_TERMINATED, now)
            bid.status, bid.price_cents, bid.notice_ends, bid.deactivated_at = TERMINATED, None, None, now
        return bid

    # ----- time ------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Replay everything due by ``now`` in time order; transitions due at a tick go first."""
        while True:
            due = self._next_transition()
            if due is not None and due[0] <= now and due[0] <= self.next_tick:
                due[-1](due[0])
                continue
            if self.next_tick <= now:
                at = self.next_tick
                self.next_tick = at + self.config.tick_seconds
                self._auction(at)
                continue
            return

    def tick(self, now: float) -> None:
        """Run an auction now, off schedule (the schedule itself is unchanged)."""
        self.advance(now)
        self._auction(now)

    def drain_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def _next_transition(self):
        best = None
        for inst in self.instances.values():
            if inst.status == S_NEW:
                cand = (inst.starting_at, 0, inst.fid, lambda t, i=inst: self._instance_starting(i, t))
            elif inst.status == S_STARTING:
                cand = (inst.running_at, 0, inst.fid, lambda t, i=inst: self._instance_running(i, t))
            else:
                continue
            if best is None or cand[:3] < best[:3]:
                best = cand
        for bid in self.bids.values():
            if bid.status == PREEMPTING and bid.notice_ends is not None:
                cand = (bid.notice_ends, 1, bid.fid, lambda t, b=bid: self._notice_over(b, t))
                if best is None or cand[:3] < best[:3]:
                    best = cand
        for res in self.reservations.values():
            if res.status == R_PENDING:
                cand = (res.start, 2, res.fid, lambda t, r=res: self._reservation_begins(r, t))
            elif res.status == R_ACTIVE:
                cand = (res.end, 2, res.fid, lambda t, r=res: self._reservation_ends(r, t, R_ENDED))
            else:
                continue
            if best is None or cand[:3] < best[:3]:
                best = cand
        return best

    # ----- the auction -----------------------------------------------------------------------

    def _contenders(self, pool: Pool, at: float) -> list[_Contender]:
        """Everyone competing for the pool at ``at``, best first.

        Highest limit first; equal limits in submission order (competing demand is
        'submitted' when its step begins, and goes before a user's bid of the same instant).
        """
        out = [_Contender(limit, qty, (-limit, self.start + offset, 0, i), None)
               for i, (offset, limit, qty) in enumerate(pool.demand_at(at - self.start))]
        for bid in self.bids.values():
            if bid.status in (OPEN, ALLOCATED) and pool.holds(bid):
                order = (-bid.limit_cents, bid.created_at, 1, bid.seq)
                out.append(_Contender(bid.limit_cents, bid.quantity, order, bid))
        out.sort(key=lambda c: c.order)
        return out

    def capacity(self, pool: Pool, at: float) -> int:
        """Spot capacity: supply less what active reservations hold."""
        reserved = sum(r.quantity for r in self.reservations.values() if r.status == R_ACTIVE and pool.holds(r))
        return max(0, pool.supply_at(at - self.start) - reserved)

    @staticmethod
    def _rank(contenders: list[_Contender], capacity: int, reserve: int) -> tuple[list[_Contender], list[_Contender]]:
        """Greedy gang allocation: each bid gets all its instances or none."""
        winners, losers, left = [], [], capacity
        for c in contenders:
            if c.limit_cents >= reserve and c.quantity <= left:
                winners.append(c)
                left -= c.quantity
            else:
                losers.append(c)
        return winners, losers

    def _auction(self, at: float) -> None:
        for pool in self.pools.values():
            self._clear(pool, at)

    def _clear(self, pool: Pool, at: float) -> None:
        reserve = pool.instance_type.reserve_cents
        capacity = self.capacity(pool, at)
        winners, losers = self._rank(self._contenders(pool, at), capacity, reserve)
        # blind second price: the highest losing limit, never below the reserve
        pool.clearing_cents = max([reserve] + [c.limit_cents for c in losers])
        for c in losers:
            if c.bid is not None and c.bid.status == ALLOCATED:
                self._preempt(c.bid, at)
        # Winners that are not yet allocated get machines only once they are physically free:
        # instances under preemption notice still occupy theirs.
        pool.competing_held = sum(c.quantity for c in winners if c.bid is None)
        free = capacity - pool.competing_held - self._held(pool)
        for c in winners:
            if c.bid is not None and c.bid.status == OPEN and c.quantity <= free:
                self._allocate(c.bid, pool, at)
                free -= c.quantity
        allocated_limits = [c.limit_cents for c in winners if c.bid is None or c.bid.status == ALLOCATED]
        pool.lowest_allocated_cents = min(allocated_limits) if allocated_limits else None
        # a bid under notice keeps the price it had: it is leaving, not bidding
        for bid in self._pool_bids(pool, (ALLOCATED,)):
            self._set_price(bid, min(pool.clearing_cents, bid.limit_cents), at)

    def _pool_bids(self, pool: Pool, statuses: tuple[str, ...]) -> list[Bid]:
        return [b for b in self.bids.values() if b.status in statuses and pool.holds(b)]

    def _held(self, pool: Pool) -> int:
        """Instances of users' bids occupying machines of the pool right now (reservations are
        already taken out of the capacity)."""
        return sum(1 for i in self.instances.values() if i.bid is not None and i.status in HOLDING and pool.holds(i))

    def available(self, pool: Pool, at: float) -> int:
        return max(0, self.capacity(pool, at) - pool.competing_held - self._held(pool))

    def win_price_cents(self, pool: Pool, quantity: int, at: float) -> int | None:
        """The lowest limit at which a new bid for ``quantity`` instances would win now."""
        reserve = pool.instance_type.reserve_cents
        contenders = self._contenders(pool, at)
        capacity = self.capacity(pool, at)
        for price in sorted({reserve} | {c.limit_cents + 1 for c in contenders if c.limit_cents >= reserve}):
            newcomer = _Contender(price, quantity, (-price, float("inf"), 2, 0), None)
            trial = sorted(contenders + [newcomer], key=lambda c: c.order)
            winners, _ = self._rank(trial, capacity, reserve)
            if any(c is newcomer for c in winners):
                return price
        return None

    # ----- transitions -----------------------------------------------------------------------

    def _allocate(self, bid: Bid, pool: Pool, at: float) -> None:
        bid.status, bid.notice_ends = ALLOCATED, None
        bid.price_cents = min(pool.clearing_cents, bid.limit_cents)
        bid.instances = [self._new_instance(bid.project, bid.created_by, pool, f"{bid.name or bid.fid}-{n}", at,
                                            bid=bid.fid).fid
                         for n in range(bid.quantity)]

    def _new_instance(self, project: str, created_by: str, pool: Pool, name: str, at: float, *,
                      bid: str | None = None, reservation: str | None = None) -> Instance:
        startup = self.config.startup_seconds
        n = len(self.instances) + 1
        inst = Instance(self.ids.new("inst"), name, project, created_by, at, pool.region, pool.instance_type.fid,
                        private_ip=f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}",
                        starting_at=at + startup / 3, running_at=at + startup, bid=bid, reservation=reservation)
        inst.history.append((at, S_NEW))
        self.instances[inst.fid] = inst
        return inst

    def _instance_starting(self, inst: Instance, at: float) -> None:
        inst.become(S_STARTING, at)
        self.events.append(Event("start", inst.fid))

    def _instance_running(self, inst: Instance, at: float) -> None:
        inst.become(S_RUNNING, at)
        if inst.bid is not None:  # start-up is free; billing begins now
            bid = self.bids[inst.bid]
            self.ledger[bid.fid].setdefault(inst.fid, []).append(Interval(at, None, bid.price_cents or 0))

    def fail_instance(self, fid: str, now: float) -> None:
        """The machine never came up (its host could not be started)."""
        inst = self.instances[fid]
        if inst.status in HOLDING:
            self._end_instance(inst, now, S_ERROR, stop_host=False)

    def _preempt(self, bid: Bid, at: float) -> None:
        bid.status, bid.notice_ends = PREEMPTING, at + self.config.notice_seconds
        for inst in self._live_instances(bid):
            inst.become(S_PREEMPTING, at)  # a start-up still under way is abandoned too

    def _notice_over(self, bid: Bid, at: float) -> None:
        for inst in self._live_instances(bid):
            self._end_instance(inst, at, S_TERMINATED)
        # back in the auction: re-allocated by itself when the price allows
        bid.status, bid.instances, bid.price_cents, bid.notice_ends = OPEN, [], None, None

    def _live_instances(self, bid: Bid) -> list[Instance]:
        return [self.instances[f] for f in bid.instances if self.instances[f].status in HOLDING]

    def _end_instance(self, inst: Instance, at: float, status: str, *, stop_host: bool = True) -> None:
        was = inst.status
        inst.become(status, at)
        inst.ended_at = at
        if inst.bid is not None:
            for iv in self.ledger[inst.bid].get(inst.fid, []):
                if iv.end is None:
                    iv.end = at
        if stop_host and was != S_NEW:
            self.events.append(Event("stop", inst.fid))

    def _set_price(self, bid: Bid, price: int, at: float) -> None:
        if bid.price_cents == price:
            return
        bid.price_cents = price
        for intervals in self.ledger[bid.fid].values():
            if intervals and intervals[-1].end is None:
                if intervals[-1].start >= at:
                    intervals[-1].price_cents = price
                else:
                    intervals[-1].end = at
                    intervals.append(Interval(at, None, price))

    # ----- billing ---------------------------------------------------------------------------

    def cost_cents(self, bid_fid: str, now: float) -> float:
        """What the bid has cost so far, in cents (fractional: billing is by the second)."""
        self.get_bid(bid_fid)
        return sum(iv.cost_cents(now) for ivs in self.ledger[bid_fid].values() for iv in ivs)

    def pricing_history(self, inst: Instance) -> list[Interval]:
        """What an instance was billed, oldest first: the ledger's intervals for a bid's instance; for a
        reservation's, its window at the unit price (paid up front, whether or not it ran)."""
        if inst.bid is not None:
            return list(self.ledger.get(inst.bid, {}).get(inst.fid, []))
        res = self.reservations.get(inst.reservation or "")
        return [Interval(res.start, res.end, res.unit_cents)] if res is not None else []

    def ledger_dump(self, now: float) -> dict:
        return {
            bid: {
                "cost_cents": self.cost_cents(bid, now),
                "instances": {inst: [{"start": iv.start, "end": iv.end, "price_cents": iv.price_cents} for iv in ivs]
                              for inst, ivs in per_inst.items()},
            }
            for bid, per_inst in self.ledger.items()
        }

    # ----- reservations ----------------------------------------------------------------------

    def free_segments(self, pool: Pool, begin: float, end: float) -> list[tuple[float, float, int]]:
        """Reservable capacity over ``[begin, end)`` as constant stretches ``(start, end, free)``."""
        mine = [r for r in self.reservations.values() if r.status in (R_PENDING, R_ACTIVE, R_PAUSED) and pool.holds(r)]
        cuts = {begin, end}
        cuts.update(self.start + t for t, _ in pool.supply)
        for r in mine:
            cuts.update((r.start, r.end))
        points = sorted(t for t in cuts if begin <= t <= end)
        segments: list[tuple[float, float, int]] = []
        for a, b in zip(points, points[1:]):
            free = pool.supply_at(a - self.start) - sum(r.quantity for r in mine if r.start <= a < r.end)
            free = max(0, free)
            if segments and segments[-1][2] == free:
                segments[-1] = (segments[-1][0], b, free)
            else:
                segments.append((a, b, free))
        return segments

    def reservable(self, pool: Pool, begin: float, end: float) -> int:
        segments = self.free_segments(pool, begin, end)
        return min((s[2] for s in segments), default=0)

    def latest_end(self, pool: Pool, begin: float, quantity: int) -> float | None:
        """How long ``quantity`` instances can be held from ``begin`` (whole hours, at most two weeks)."""
        end = begin
        for _, b, free in self.free_segments(pool, begin, begin + MAX_RESERVATION_HOURS * HOUR):
            if free < quantity:
                break
            end = b
        hours = int((end - begin) // HOUR)
        return begin + hours * HOUR if hours >= MIN_RESERVATION_HOURS else None

    def create_reservation(self, now: float, *, project: str, region: str, instance_type: str, start: float,
                           end: float, quantity: int, name: str, launch_specification: dict, created_by: str,
                           notification_email: str | None = None, max_unit_cents: int | None = None) -> Reservation:
        self.advance(now)
        pool = self.pool(region, instance_type)
        hours = (end - start) / HOUR
        if hours != int(hours) or not MIN_RESERVATION_HOURS <= hours <= MAX_RESERVATION_HOURS:
            raise MarketError("A reservation lasts whole hours, from 3 hours to 2 weeks", 422, "end_time")
        if start < now - RESERVATION_START_GRACE:
            raise MarketError("A reservation cannot start in the past", 422, "start_time")
        if quantity < 1:
            raise MarketError("instance_quantity must be at least 1", 422, "instance_quantity")
        unit = pool.instance_type.reserved_cents
        if max_unit_cents is not None and unit > max_unit_cents:
            raise MarketError(f"The unit price {unit} cents is above max_unit_price {max_unit_cents}", 400)
        if self.reservable(pool, start, end) < quantity:
            raise MarketError("Not enough capacity for this reservation window", 400)
        res = Reservation(self.ids.new("res"), name, project, created_by, now, region, pool.instance_type.fid,
                          quantity, start, end, unit, dict(launch_specification), notification_email, bought=quantity)
        self.reservations[res.fid] = res
        self.advance(now)  # a window starting now is active at once
        return res

    def get_reservation(self, fid: str) -> Reservation:
        res = self.reservations.get(fid)
        if res is None:
            raise MarketError(f"Reservation {fid} not found", 404)
        return res

    def cancel_reservation(self, now: float, fid: str) -> Reservation:
        self.advance(now)
        res = self.get_reservation(fid)
        if res.status in (R_PENDING, R_ACTIVE, R_PAUSED):
            self._reservation_ends(res, now, R_CANCELED)
        return res

    def terminate_reservation_instances(self, now: float, fid: str, instances: list[str]) -> list[str]:
        """Give instances of a reservation back for good (its capacity shrinks; the price paid stays).

        Ending every instance ends the reservation. Answers the instances terminated.
        """
        self.advance(now)
        res = self.get_reservation(fid)
        if res.status in (R_CANCELED, R_ENDED):
            raise MarketError(f"Reservation {fid} has already ended", 400)
        unknown = [i for i in instances if i not in res.instances]
        if unknown:
            raise MarketError(f"Instance {unknown[0]} not found in reservation {fid}", 404)
        for inst_fid in instances:
            inst = self.instances[inst_fid]
            if inst.status in HOLDING:
                self._end_instance(inst, now, S_TERMINATED)
            res.instances.remove(inst_fid)
        res.quantity -= len(instances)
        if res.quantity <= 0:
            res.quantity = 0
            res.status, res.deactivated_at = R_ENDED, now
        return list(instances)

    def _reservation_begins(self, res: Reservation, at: float) -> None:
        pool = self.pools[(res.region, res.instance_type)]
        res.status = R_ACTIVE
        res.instances = [self._new_instance(res.project, res.created_by, pool, f"{res.name or res.fid}-{n}", at,
                                            reservation=res.fid).fid
                         for n in range(res.quantity)]

    def _reservation_ends(self, res: Reservation, at: float, status: str) -> None:
        for fid in res.instances:
            inst = self.instances[fid]
            if inst.status in HOLDING:
                self._end_instance(inst, at, S_TERMINATED)
        res.status, res.deactivated_at = status, at
