"""The emulator over HTTP on loopback: endpoints, shapes, errors, auth, paging, idempotency, hosts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from sflow.mithril.emulator import PLACEHOLDER_DESTINATION, start_emulator
from sflow.mithril.emulator.schema import default_schema

AUTH = {"Authorization": "Bearer fkey_test"}
REGION = "us-central1-a"


@pytest.fixture
def emu():
    # auctions only when a test forces one; instances come up at once; every answer checked
    e = start_emulator(tick=3600, startup=0.0, notice=1.0, check_responses=True)
    yield e
    e.close()
    assert e.violations == []


@pytest.fixture
def api(emu):
    with httpx.Client(base_url=emu.url, headers=AUTH, timeout=10) as client:
        yield client


@pytest.fixture
def project(api) -> str:
    return api.get("/v2/projects").json()[0]["fid"]


@pytest.fixture
def types(api) -> dict[str, str]:
    return {it["name"]: it["fid"] for it in api.get("/v2/instance-types").json()}


def conforms(response: httpx.Response, operation_id: str) -> None:
    schema = default_schema()
    body = response.json() if response.content else None
    assert schema.response_errors(schema.by_id(operation_id), response.status_code, body) == []


def bid_body(project: str, instance_type: str, *, limit: str = "$16.00", quantity: int = 1, name: str = "job",
             **spec) -> dict:
    return {"project": project, "region": REGION, "instance_type": instance_type, "limit_price": limit,
            "instance_quantity": quantity, "name": name,
            "launch_specification": {"volumes": [], "ssh_keys": [], **spec}}


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


# ----- reads -------------------------------------------------------------------------------------


def test_read_endpoints_answer_the_schema_shapes(api, project, types):
    conforms(api.get("/v2/me"), "get_me_v2_me_get")
    conforms(api.get("/v2/projects"), "get_projects_v2_projects_get")
    r = api.get("/v2/instance-types")
    conforms(r, "get_instance_types_v2_instance_types_get")
    assert {"8xh100", "8xa100", "1xa100"} <= set(types)
    assert all(fid.startswith("it_") for fid in types.values())
    assert next(it for it in r.json() if it["name"] == "8xh100")["num_gpus"] == 8

    r = api.get("/v2/spot/availability")
    conforms(r, "get_auctions_v2_spot_availability_get")
    auctions = r.json()
    assert {a["region"] for a in auctions} == {"us-central1-a", "eu-central1-a"}
    assert all(a["fid"].startswith("auc_") and a["last_instance_price"].startswith("$") for a in auctions)

    r = api.get("/v2/pricing/current", params={"instance_type": types["8xh100"], "region": REGION})
    conforms(r, "get_current_prices_v2_v2_pricing_current_get")
    assert r.json()["spot_price_cents"] == 800 and r.json()["reserved_price_cents"] == 2000

    for path, opid in [("/v2/spot/bids", "get_bids_v2_spot_bids_get"),
                       ("/v2/instances", "get_instances_v2_instances_get"),
                       ("/v2/reservation", "get_reservations_v2_reservation_get"),
                       ("/v2/ssh-keys", "get_ssh_keys_v2_ssh_keys_get")]:
        r = api.get(path, params={"project": project})
        assert r.status_code == 200, path
        conforms(r, opid)


def test_the_served_schema_is_the_contract_with_nullable_spelled_out(api):
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["schemas"]["BidModel"]["properties"]["region"]["type"] == ["string", "null"]


# ----- bids --------------------------------------------------------------------------------------


def test_a_bid_from_open_to_allocated_to_terminated(emu, api, project, types):
    r = api.post("/v2/spot/bids", json=bid_body(project, types["8xh100"], quantity=2))
    assert r.status_code == 201
    conforms(r, "create_bid_v2_spot_bids_post")
    bid = r.json()
    assert bid["fid"].startswith("bid_") and bid["status"] == "Open" and bid["limit_price"] == "$16.00"

    emu.tick()
    r = api.get(f"/v2/spot/bids/{bid['fid']}/status")
    conforms(r, "get_bid_status_v2_spot_bids__bid_fid__status_get")
    assert r.json() == {"bid_fid": bid["fid"], "status": "Allocated"}
    r = api.get(f"/v2/spot/bids/{bid['fid']}")
    conforms(r, "get_bid_v2_spot_bids__bid_fid__get")
    assert len(r.json()["instances"]) == 2

    r = api.get("/v2/instances", params={"project": project, "bid_fid_in": bid["fid"]})
    conforms(r, "get_instances_v2_instances_get")
    instances = r.json()["data"]
    assert [i["status"] for i in instances] == ["STATUS_RUNNING"] * 2
    assert all(i["fid"].startswith("inst_") and i["ssh_destination"] == PLACEHOLDER_DESTINATION for i in instances)

    r = api.patch(f"/v2/spot/bids/{bid['fid']}", json={"limit_price": "$20.50"})
    conforms(r, "update_bid_v2_spot_bids__bid_fid__patch")
    assert r.json()["limit_price"] == "$20.50"

    r = api.delete(f"/v2/spot/bids/{bid['fid']}")
    assert r.status_code == 204 and r.content == b""
    assert api.get(f"/v2/spot/bids/{bid['fid']}").json()["status"] == "Terminated"
    statuses = {i["status"] for i in api.get("/v2/instances", params={"project": project}).json()["data"]}
    assert statuses == {"STATUS_TERMINATED"}
    assert api.delete(f"/v2/spot/bids/{bid['fid']}").status_code == 204  # deleting twice is harmless

    ledger = api.get("/_emulator/ledger").json()["bids"][bid["fid"]]
    assert set(ledger["instances"]) == {i["fid"] for i in instances}
    assert all(iv["end"] is not None and iv["price_cents"] == 800 for ivs in ledger["instances"].values() for iv in ivs)
    assert emu.cost_cents(bid["fid"]) == pytest.approx(ledger["cost_cents"], abs=1e-6)


def test_preemption_over_http_when_other_users_outbid(emu, api, project, types):
    fid = api.post("/v2/spot/bids", json=bid_body(project, types["8xa100"], limit="$5.00", quantity=8)).json()["fid"]
    emu.tick()
    assert api.get(f"/v2/spot/bids/{fid}/status").json()["status"] == "Allocated"
    r = api.post("/_emulator/script", json={"region": REGION, "instance_type": "8xa100",
                                            "demand": [[0, "$9.00", 16]]})
    assert r.status_code == 200
    emu.tick()
    assert api.get(f"/v2/spot/bids/{fid}/status").json()["status"] == "Preempting"
    statuses = {i["status"] for i in api.get("/v2/instances", params={"project": project}).json()["data"]}
    assert statuses == {"STATUS_PREEMPTING"}
    time.sleep(1.2)  # the notice is 1 s here
    assert api.get(f"/v2/spot/bids/{fid}/status").json()["status"] == "Open"
    prices = api.get("/v2/pricing/current", params={"instance_type": "8xa100", "region": REGION}).json()
    assert prices["spot_price_cents"] == 500 and prices["dynamic_win_price_cents"] == 901


def test_idempotency_key_returns_the_same_bid_and_never_a_second(api, project, types):
    body = bid_body(project, types["1xa100"], limit="$1.00")
    first = api.post("/v2/spot/bids", json=body, headers={"Idempotency-Key": "k-1"})
    again = api.post("/v2/spot/bids", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert len(api.get("/v2/spot/bids").json()["data"]) == 1
    # reusing a key for something else is refused rather than silently answered
    other = api.post("/v2/spot/bids", json=dict(body, name="other"), headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 409 and isinstance(other.json()["detail"], str)
    # without a key, each POST is a new bid
    api.post("/v2/spot/bids", json=body)
    api.post("/v2/spot/bids", json=body)
    assert len(api.get("/v2/spot/bids").json()["data"]) == 3


def test_paging_with_limit_and_next_cursor(api, project, types):
    made = [api.post("/v2/spot/bids", json=bid_body(project, types["1xa100"], name=f"b{n}")).json()["fid"]
            for n in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"next_cursor": cursor} if cursor else {})}
        r = api.get("/v2/spot/bids", params=params)
        conforms(r, "get_bids_v2_spot_bids_get")
        page = r.json()
        seen += [b["fid"] for b in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made and pages == 3
    desc = api.get("/v2/spot/bids", params={"sort_dir": "desc", "limit": 100}).json()["data"]
    assert [b["fid"] for b in desc] == made[::-1]
    named = api.get("/v2/spot/bids", params={"name": "b3"}).json()["data"]
    assert [b["fid"] for b in named] == [made[3]]
    assert api.get("/v2/spot/bids", params={"next_cursor": "%%%"}).status_code == 422


def test_instances_filter_by_bid_status_and_order_type(emu, api, project, types):
    a = api.post("/v2/spot/bids", json=bid_body(project, types["1xa100"], quantity=2, name="a")).json()["fid"]
    b = api.post("/v2/spot/bids", json=bid_body(project, types["1xa100"], quantity=3, name="b")).json()["fid"]
    emu.tick()

    def fids(**params):
        r = api.get("/v2/instances", params={"project": project, **params})
        assert r.status_code == 200
        return [i["bid"] for i in r.json()["data"]]

    assert fids(bid_fid_in=a) == [a, a]
    assert sorted(fids(bid_fid_in=f"{a},{b}")) == [a] * 2 + [b] * 3
    assert sorted(fids(bid_fid_in=[a, b])) == [a] * 2 + [b] * 3  # repeated parameter
    assert fids(order_type_in="Reservation") == []
    api.delete(f"/v2/spot/bids/{a}")
    assert fids(status_in="STATUS_RUNNING") == [b] * 3
    assert len(fids(limit=2)) == 2


# ----- errors and validation -----------------------------------------------------------------------


def _is_validation_error(r: httpx.Response) -> list[dict]:
    assert r.status_code == 422, r.text
    schema = default_schema()
    assert list(schema.component("HTTPValidationError").iter_errors(r.json())) == []
    return r.json()["detail"]


def test_invalid_bodies_are_422_with_fastapi_details(api, project, types):
    detail = _is_validation_error(api.post("/v2/spot/bids", json={"project": project}))
    missing = {tuple(d["loc"]) for d in detail if d["type"] == "missing"}
    assert ("body", "limit_price") in missing and ("body", "launch_specification") in missing

    body = bid_body(project, types["1xa100"])
    detail = _is_validation_error(api.post("/v2/spot/bids", json=dict(body, instance_quantity="two")))
    assert detail == [{"loc": ["body", "instance_quantity"], "msg": "Input should be a valid integer",
                       "type": "int_type"}]
    detail = _is_validation_error(api.post("/v2/spot/bids", json=dict(body, limit_price="12 dollars")))
    assert detail[0]["loc"] == ["body", "limit_price"]
    detail = _is_validation_error(api.post("/v2/spot/bids", json=dict(body, instance_quantity=0)))
    assert detail[0]["loc"] == ["body", "instance_quantity"]
    long_script = bid_body(project, types["1xa100"], startup_script="x" * 10_001)
    detail = _is_validation_error(api.post("/v2/spot/bids", json=long_script))
    assert detail[0]["loc"] == ["body", "launch_specification", "startup_script"]
    detail = _is_validation_error(api.post("/v2/spot/bids", content=b"{not json",
                                           headers={"Content-Type": "application/json"}))
    assert detail[0]["type"] == "json_invalid"
    detail = _is_validation_error(api.patch("/v2/spot/bids/bid_x", json={"paused": "maybe"}))
    assert detail[0]["loc"] == ["body", "paused"]
    # nothing was created by any of these
    assert api.get("/v2/spot/bids").json()["data"] == []


def test_invalid_query_parameters_are_422(api, project):
    detail = _is_validation_error(api.get("/v2/instances"))
    assert detail == [{"loc": ["query", "project"], "msg": "Field required", "type": "missing"}]
    detail = _is_validation_error(api.get("/v2/spot/bids", params={"limit": 0}))
    assert detail[0]["loc"] == ["query", "limit"] and detail[0]["type"] == "greater_than_equal"
    detail = _is_validation_error(api.get("/v2/spot/bids", params={"limit": "many"}))
    assert detail[0]["type"] == "int_parsing"
    detail = _is_validation_error(api.get("/v2/spot/bids", params={"sort_dir": "sideways"}))
    assert detail[0]["type"] == "enum"
    detail = _is_validation_error(api.get("/v2/instances", params={"project": project, "status_in": "STATUS_BAD"}))
    assert detail[0]["loc"][:2] == ["query", "status_in"]


def test_other_errors_are_a_detail_string(api, project, types):
    for r, status in [(api.get("/v2/spot/bids/bid_missing"), 404),
                      (api.get("/v2/nothing-here"), 404),
                      (api.put("/v2/spot/bids"), 405),
                      (api.post("/v2/spot/bids", json=bid_body("proj_nope", types["1xa100"])), 404),
                      (api.post("/v2/spot/bids", json=bid_body(project, "8xh100")), 422),  # a name, not an fid
                      (api.post("/v2/spot/bids", json=bid_body(project, types["4xa100"]) | {"region": "eu-central1-a"}),
                       400),
                      (api.post("/v2/spot/bids", json=bid_body(project, types["1xa100"], ssh_keys=["sshkey_no"])),
                       400),
                      (api.get("/v2/volumes"), 501)]:
        assert r.status_code == status, r.text
        if status != 422:
            assert isinstance(r.json()["detail"], str)


def test_any_bearer_key_is_accepted_unless_one_was_configured(emu):
    assert httpx.get(f"{emu.url}/v2/me").status_code == 401
    assert httpx.get(f"{emu.url}/v2/me", headers={"Authorization": "Basic abc"}).status_code == 401
    assert httpx.get(f"{emu.url}/v2/me", headers={"Authorization": "Bearer anything"}).status_code == 200
    with start_emulator(api_key="fkey_right", tick=3600) as locked:
        r = httpx.get(f"{locked.url}/v2/me", headers={"Authorization": "Bearer fkey_wrong"})
        assert r.status_code == 401 and r.json() == {"detail": "Invalid API key"}
        assert httpx.get(f"{locked.url}/v2/me", headers={"Authorization": "Bearer fkey_right"}).status_code == 200


# ----- SSH keys and hosts ------------------------------------------------------------------------


def test_ssh_keys_given_or_generated(api, project):
    given = api.post("/v2/ssh-keys", json={"project": project, "name": "mine",
                                           "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ me@host"})
    assert given.status_code == 201
    conforms(given, "create_ssh_key_v2_ssh_keys_post")
    assert given.json()["fid"].startswith("sshkey_") and given.json()["private_key"] is None
    made = api.post("/v2/ssh-keys", json={"project": project, "name": "fresh"}).json()
    assert made["public_key"].startswith("ssh-rsa ") and "PRIVATE KEY" in made["private_key"]
    listed = api.get("/v2/ssh-keys", params={"project": project}).json()
    assert [k["name"] for k in listed] == ["mine", "fresh"] and "private_key" not in listed[0]
    bad = api.post("/v2/ssh-keys", json={"project": project, "name": "x", "public_key": "not a key"})
    assert bad.status_code == 422


def test_instances_become_hosts_through_the_factory():
    calls, closed = [], []

    def factory(instance_id, hostname, authorized_keys):
        calls.append((instance_id, hostname, list(authorized_keys)))
        return f"127.0.0.1:{2200 + len(calls)}", lambda: closed.append(instance_id)

    with start_emulator(tick=3600, startup=0.0, host_factory=factory, check_responses=True) as emu, \
            httpx.Client(base_url=emu.url, headers=AUTH) as api:
        project = api.get("/v2/projects").json()[0]["fid"]
        it = {t["name"]: t["fid"] for t in api.get("/v2/instance-types").json()}
        key = api.post("/v2/ssh-keys", json={"project": project, "name": "k",
                                             "public_key": "ssh-ed25519 AAAAkey user@a"}).json()["fid"]
        api.post("/v2/ssh-keys", json={"project": project, "name": "ops", "required": True,
                                       "public_key": "ssh-ed25519 AAAAops ops@b"})
        fid = api.post("/v2/spot/bids", json=bid_body(project, it["1xa100"], quantity=2, ssh_keys=[key])).json()["fid"]
        emu.tick()
        instances = api.get("/v2/instances", params={"project": project, "bid_fid_in": fid}).json()["data"]
        assert sorted(i["ssh_destination"] for i in instances) == ["127.0.0.1:2201", "127.0.0.1:2202"]
        assert sorted(c[0] for c in calls) == sorted(i["fid"] for i in instances)
        assert all(c[2] == ["ssh-ed25519 AAAAkey user@a", "ssh-ed25519 AAAAops ops@b"] for c in calls)
        assert all(c[1].startswith("inst-") for c in calls)
        api.delete(f"/v2/spot/bids/{fid}")
        assert sorted(closed) == sorted(c[0] for c in calls)
        assert emu.violations == []


def test_an_instance_whose_host_fails_is_in_error():
    def broken(instance_id, hostname, keys):
        raise RuntimeError("no host today")

    with start_emulator(tick=3600, startup=0.0, host_factory=broken) as emu, \
            httpx.Client(base_url=emu.url, headers=AUTH) as api:
        project = api.get("/v2/projects").json()[0]["fid"]
        it = {t["name"]: t["fid"] for t in api.get("/v2/instance-types").json()}
        api.post("/v2/spot/bids", json=bid_body(project, it["1xa100"]))
        emu.tick()
        assert [i["status"] for i in api.get("/v2/instances", params={"project": project}).json()["data"]] == [
            "STATUS_ERROR"]


# ----- reservations ------------------------------------------------------------------------------


def test_reservations_and_their_availability(emu, api, project, types):
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    base = {"project": project, "instance_type": types["8xh100"], "region": REGION}
    r = api.get("/v2/reservation/availability",
                params={**base, "mode": "check", "start_time": iso(start), "end_time": iso(start + timedelta(hours=3)),
                        "quantity": 32})
    conforms(r, "get_availability_v2_reservation_availability_get")
    assert len(r.json()) == 1 and r.json()[0]["quantity"] == 32

    body = {**base, "start_time": iso(start), "end_time": iso(start + timedelta(hours=4)), "instance_quantity": 30,
            "name": "train", "launch_specification": {"volumes": [], "ssh_keys": []}}
    r = api.post("/v2/reservation", json=body, headers={"Idempotency-Key": "res-1"})
    assert r.status_code == 201, r.text
    conforms(r, "create_reservation_v2_reservation_post")
    res = r.json()
    assert res["fid"].startswith("res_") and res["status"] == "Pending"
    assert res["unit_price"] == "$20.00" and res["total_price"] == "$2400.00"
    assert api.post("/v2/reservation", json=body, headers={"Idempotency-Key": "res-1"}).json() == res

    r = api.get("/v2/reservation/availability",
                params={**base, "mode": "check", "start_time": iso(start), "end_time": iso(start + timedelta(hours=3)),
                        "quantity": 3})
    assert r.json() == []
    latest = api.get("/v2/reservation/availability", params={**base, "start_time": iso(start), "quantity": 2}).json()
    assert latest == [{"start_time": iso(start), "end_time": iso(start + timedelta(days=14)), "quantity": 2}]
    slots = api.get("/v2/reservation/availability",
                    params={**base, "mode": "slots", "earliest_start_time": iso(start),
                            "latest_end_time": iso(start + timedelta(hours=6))}).json()
    assert [s["quantity"] for s in slots] == [2, 32]
    missing = api.get("/v2/reservation/availability", params={**base, "mode": "check", "quantity": 1})
    assert _is_validation_error(missing)[0]["loc"] == ["query", "start_time"]

    listed = api.get("/v2/reservation", params={"project": project, "status": "Pending"})
    conforms(listed, "get_reservations_v2_reservation_get")
    assert [x["fid"] for x in listed.json()["data"]] == [res["fid"]]

    short = dict(body, end_time=iso(start + timedelta(hours=2)))
    assert _is_validation_error(api.post("/v2/reservation", json=short))[0]["loc"] == ["body", "end_time"]
    crowded = dict(body, instance_quantity=3)
    assert api.post("/v2/reservation", json=crowded).status_code == 400


# ----- running it -------------------------------------------------------------------------------


def test_the_background_ticker_runs_auctions_by_itself():
    with start_emulator(tick=0.2, startup=0.1) as emu, httpx.Client(base_url=emu.url, headers=AUTH) as api:
        project = api.get("/v2/projects").json()[0]["fid"]
        it = {t["name"]: t["fid"] for t in api.get("/v2/instance-types").json()}
        fid = api.post("/v2/spot/bids", json=bid_body(project, it["1xa100"])).json()["fid"]
        deadline = time.monotonic() + 5
        while api.get("/v2/instances", params={"project": project, "status_in": "STATUS_RUNNING"}).json()["data"] == []:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert api.get(f"/v2/spot/bids/{fid}/status").json()["status"] == "Allocated"


def _spawn(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "sflow.mithril.emulator", "--port", "0", "--no-ssh", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    return proc, url


def test_the_command_prints_its_url_serves_and_keeps_state_across_restarts(tmp_path):
    state = str(tmp_path / "emulator.json")
    proc, url = _spawn("--tick", "0.5", "--seed", "4", "--state", state)
    try:
        assert url.startswith("http://127.0.0.1:")
        api = httpx.Client(base_url=url, headers=AUTH)
        project = api.get("/v2/projects").json()[0]["fid"]
        it = {t["name"]: t["fid"] for t in api.get("/v2/instance-types").json()}
        fid = api.post("/v2/spot/bids", json=bid_body(project, it["1xa100"])).json()["fid"]
        api.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert json.load(open(state))["market"]["bids"][0]["fid"] == fid

    proc, url = _spawn("--tick", "0.5", "--seed", "4", "--state", state)
    try:
        with httpx.Client(base_url=url, headers=AUTH) as api:
            assert api.get("/v2/projects").json()[0]["fid"] == project
            assert [b["fid"] for b in api.get("/v2/spot/bids").json()["data"]] == [fid]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_the_command_refuses_bad_options():
    r = subprocess.run([sys.executable, "-m", "sflow.mithril.emulator", "--fault-rate", "2"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "fault-rate" in r.stderr


def test_pricing_history_is_the_billing_ledger(emu, api, project, types):
    from sflow.mithril.client import MithrilClient

    fid = api.post("/v2/spot/bids", json=bid_body(project, types["8xh100"], quantity=2)).json()["fid"]
    other = api.post("/v2/spot/bids", json=bid_body(project, types["1xa100"], name="other")).json()["fid"]
    emu.tick()
    time.sleep(0.05)
    api.patch(f"/v2/spot/bids/{fid}", json={"limit_price": "$7.50"})  # below the price: a new stretch
    time.sleep(0.05)
    r = api.get("/v2/instances/pricing/history", params={"project": project, "bid_fid": fid})
    conforms(r, "get_instance_pricing_history_v2_instances_pricing_history_get")
    running = r.json()["instances"]
    assert len(running) == 2 and all(h["bid_fid"] == fid and h["reservation_fid"] is None for h in running)
    assert [[e["price_cents"] for e in h["events"]] for h in running] == [[800, 750]] * 2
    assert all(h["events"][-1]["end_time"] is None for h in running)  # still billing

    api.delete(f"/v2/spot/bids/{fid}")
    with MithrilClient(api_key="fkey_test", base_url=emu.url, max_retries=0) as client:
        history = client.pricing_history(project, bid=fid, limit=1)  # one instance a page
        ledger = emu.ledger()[fid]
        assert {h.instance_fid for h in history} == set(ledger["instances"])
        for h in history:
            want = ledger["instances"][h.instance_fid]
            assert [(e.price_cents, e.start_time.timestamp(), e.end_time.timestamp()) for e in h.events] == \
                [(iv["price_cents"], pytest.approx(iv["start"]), pytest.approx(iv["end"])) for iv in want]
        until = datetime.now(timezone.utc)
        assert sum(e.cost_cents(until) for h in history for e in h.events) == pytest.approx(ledger["cost_cents"], abs=1e-6)
        assert {h.bid_fid for h in client.pricing_history(project)} == {fid, other}
        one = history[0].instance_fid
        assert [h.instance_fid for h in client.pricing_history(project, instance=one)] == [one]
    assert api.get("/v2/instances/pricing/history",
                   params={"project": project, "bid_fid": "bid_nope"}).status_code == 404


def test_status_history_keeps_a_preemption_after_the_instances_are_gone(emu, api, project, types):
    from sflow.mithril.client import MithrilClient

    fid = api.post("/v2/spot/bids", json=bid_body(project, types["8xa100"], limit="$5.00", quantity=2)).json()["fid"]
    emu.tick()
    api.post("/_emulator/script", json={"region": REGION, "instance_type": "8xa100", "demand": [[0, "$9.00", 16]]})
    emu.tick()
    time.sleep(1.2)  # the notice (1 s) runs out: the instances are gone, the bid open again
    assert api.get(f"/v2/spot/bids/{fid}/status").json()["status"] == "Open"
    r = api.get("/v2/instances/status/history", params={"project": project, "bid_fid": fid})
    conforms(r, "get_instance_status_history_v2_instances_status_history_get")
    histories = r.json()["instances"]
    assert len(histories) == 2 and all(h["bid_fid"] == fid for h in histories)
    for h in histories:
        assert [e["status"] for e in h["events"]] == ["STATUS_NEW", "STATUS_STARTING", "STATUS_RUNNING",
                                                      "STATUS_PREEMPTING", "STATUS_TERMINATED"]
        times = [e["timestamp"] for e in h["events"]]
        assert times == sorted(times)
    with MithrilClient(api_key="fkey_test", base_url=emu.url, max_retries=0) as client:
        history = client.status_history(project, bid=fid, limit=1)  # one instance a page
        assert {h.instance_fid for h in history} == {h["instance_fid"] for h in histories}
        one = history[0]
        assert [e.status for e in one.events][-2:] == ["STATUS_PREEMPTING", "STATUS_TERMINATED"]
        assert [h.instance_fid for h in client.status_history(project, instance=one.instance_fid)] == \
            [one.instance_fid]
        later = one.events[3].timestamp.isoformat()
    r = api.get("/v2/instances/status/history", params={"project": project, "instance_fid": one.instance_fid,
                                                         "start_time": later})
    assert [e["status"] for e in r.json()["instances"][0]["events"]] == ["STATUS_PREEMPTING", "STATUS_TERMINATED"]
    assert api.get("/v2/instances/status/history",
                   params={"project": project, "bid_fid": "bid_nope"}).status_code == 404


def test_an_outage_fails_the_calls_it_names_and_no_others(emu, api, project):
    with emu.service.lock:
        emu.service.faults.outages.append(("GET", r"/v2/spot/bids(/[^/]+)?"))
    assert api.get("/v2/spot/bids", params={"project": project}).status_code == 503
    assert api.get("/v2/spot/bids/bid_any").status_code == 503
    assert api.get("/v2/instances", params={"project": project}).status_code == 200
    with emu.service.lock:
        emu.service.faults.outages.clear()
    assert api.get("/v2/spot/bids", params={"project": project}).status_code == 200
