"""The Mithril client over httpx.MockTransport: retries, idempotency, paging, errors, the key."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import pytest

from sflow.errors import MithrilError, SflowError, render
from sflow.mithril import client as mc
from sflow.mithril.client import (AuthError, Conflict, InvalidRequest, MithrilClient, NotFound, Unavailable,
                                  load_api_key, save_api_key)

KEY = "fkey_T0pSecretValue42"
BASE = "https://api.test"

PROJECT = {"fid": "proj_1", "name": "lab", "created_at": "2024-01-01T00:00:00Z"}
SPEC = {"volumes": [], "ssh_keys": ["sshkey_1"]}
BID_REQUEST = {"project": "proj_1", "region": "us-central1-a", "instance_type": "it_1", "limit_price": "$16.00",
               "instance_quantity": 2, "name": "job-1", "launch_specification": SPEC}


def bid(fid="bid_1", status="Open", **extra):
    return {"fid": fid, "name": "job-1", "project": "proj_1", "created_by": "user_1",
            "created_at": "2024-01-01T00:00:00Z", "limit_price": "$16.00", "instance_quantity": 2,
            "instance_type": "it_1", "region": "us-central1-a", "instances": [], "launch_specification": SPEC,
            "status": status, **extra}


def instance(fid, **extra):
    return {"fid": fid, "name": fid, "project": "proj_1", "created_at": "2024-01-01T00:00:00Z",
            "created_by": "user_1", "instance_type": "it_1", "bid": "bid_1", "ssh_destination": "10.0.0.5:2222",
            "private_ip": "192.168.0.5", "status": "STATUS_RUNNING", **extra}


def reservation(fid="res_1"):
    return {"fid": fid, "name": "r", "project": "proj_1", "created_by": "user_1",
            "created_at": "2024-01-01T00:00:00Z", "instance_quantity": 1, "instance_type": "it_1",
            "instances": [], "launch_specification": SPEC, "status": "Pending",
            "start_time": "2024-01-01T00:00:00Z", "end_time": "2024-01-01T03:00:00Z",
            "total_price": "$47.76", "unit_price": "$1.99"}


class Server:
    """A scripted MockTransport: answers are handed out in order; every request is kept."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


def make(*answers, **kwargs):
    server = Server(*answers)
    sleeps: list[float] = []
    kwargs.setdefault("sleep", sleeps.append)
    client = MithrilClient(KEY, base_url=BASE, transport=httpx.MockTransport(server), **kwargs)
    return client, server, sleeps


def ok(body, status=200, **kwargs):
    return httpx.Response(status, json=body, **kwargs)


def fail(status, body=None, **kwargs):
    return httpx.Response(status, json=body, **kwargs) if body is not None else httpx.Response(status, **kwargs)


# --- basics ----------------------------------------------------------------------------------

def test_bearer_auth_and_base_url():
    client, server, _ = make(ok([PROJECT]))
    assert [p.fid for p in client.projects()] == ["proj_1"]
    request = server.requests[0]
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert str(request.url) == f"{BASE}/v2/projects"
    assert "Idempotency-Key" not in request.headers


def test_base_url_from_environment(monkeypatch):
    monkeypatch.setenv("MITHRIL_API_URL", "http://127.0.0.1:8099/")
    server = Server(ok({"id": "u", "fid": "user_1", "email": "a@b.c", "organization_id": "org_1"}))
    client = MithrilClient(KEY, transport=httpx.MockTransport(server))
    assert client.me().fid == "user_1"
    assert str(server.requests[0].url) == "http://127.0.0.1:8099/v2/me"
    monkeypatch.delenv("MITHRIL_API_URL")
    assert MithrilClient(KEY).base_url == "https://api.mithril.ai"


def test_key_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SFLOW_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("MITHRIL_API_KEY", "fkey_fromenv")
    server = Server(ok([]))
    MithrilClient(transport=httpx.MockTransport(server)).projects()
    assert server.requests[0].headers["Authorization"] == "Bearer fkey_fromenv"


def test_no_key_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("MITHRIL_API_KEY", raising=False)
    monkeypatch.setenv("SFLOW_CONFIG", str(tmp_path / "none.toml"))
    with pytest.raises(AuthError) as info:
        MithrilClient()
    assert str(info.value) == "mithril: no API key: set MITHRIL_API_KEY or run flow init"


def test_current_prices_query():
    client, server, _ = make(ok({"spot_price_cents": 1250, "minimum_price_cents": 50, "total_capacity": 8}))
    prices = client.current_prices("it_1", region="us-central1-a", instance_quantity=4)
    assert (prices.spot_price_cents, prices.minimum_price_cents, prices.reserved_price_cents) == (1250, 50, None)
    url = server.requests[0].url
    assert url.path == "/v2/pricing/current"
    assert dict(url.params) == {"instance_type": "it_1", "region": "us-central1-a", "instance_quantity": "4"}


def test_spot_availability_and_instance_types():
    auction = {"fid": "auc_1", "instance_type": "it_1", "region": "r", "capacity": 4,
               "last_instance_price": "$10.00", "adjustable_memory": False}
    client, server, _ = make(ok([auction]))
    assert client.spot_availability()[0].last_instance_price_cents == 1000
    assert server.requests[0].url.path == "/v2/spot/availability"


# --- retries ---------------------------------------------------------------------------------

def test_429_honours_retry_after_seconds():
    client, server, sleeps = make(fail(429, {"detail": "slow down"}, headers={"Retry-After": "7"}), ok([PROJECT]))
    assert len(client.projects()) == 1
    assert sleeps == [7.0]
    assert len(server.requests) == 2


def test_429_honours_retry_after_http_date():
    when = format_datetime(datetime.fromtimestamp(time.time() + 30, timezone.utc), usegmt=True)
    client, _, sleeps = make(fail(429, headers={"Retry-After": when}), ok([PROJECT]))
    client.projects()
    assert len(sleeps) == 1 and 27 <= sleeps[0] <= 30


def test_retry_after_parsing():
    assert mc.retry_after_seconds("12") == 12.0
    assert mc.retry_after_seconds("0") == 0.0
    assert mc.retry_after_seconds("-3") == 0.0
    assert mc.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: go now
    assert mc.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    for junk in (None, "", "soon", "nan", "inf"):
        assert mc.retry_after_seconds(junk) is None


def test_retry_after_beyond_patience_gives_up_at_once():
    client, server, sleeps = make(fail(429, headers={"Retry-After": "3600"}), ok([PROJECT]))
    with pytest.raises(Unavailable) as info:
        client.projects()
    assert sleeps == [] and len(server.requests) == 1
    assert "3600 s" in str(info.value) and info.value.status == 429


def test_503_then_success_backs_off():
    client, server, sleeps = make(fail(503), ok([PROJECT]), backoff=1.0)
    assert len(client.projects()) == 1
    assert len(server.requests) == 2
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0


def test_backoff_grows_with_jitter_and_attempts_are_bounded():
    client, server, sleeps = make(fail(502), max_retries=4, backoff=1.0, max_backoff=5.0)
    with pytest.raises(Unavailable) as info:
        client.projects()
    assert len(server.requests) == 5
    bounds = [(0.5, 1), (1, 2), (2, 4), (2.5, 5)]
    assert len(sleeps) == 4
    assert all(lo <= s <= hi for s, (lo, hi) in zip(sleeps, bounds)), sleeps
    assert str(info.value) == "mithril: the API is unavailable (502) after 5 attempts: try again later"
    assert info.value.exit_code == 1


def test_jitter_spreads_clients():
    delays = {MithrilClient(KEY, base_url=BASE)._delay(3) for _ in range(20)}
    assert len(delays) > 1


def test_timeouts_and_connection_errors_are_retried():
    client, server, sleeps = make(httpx.ConnectError("Connection refused"), httpx.ReadTimeout("timed out"),
                                  ok([PROJECT]))
    assert len(client.projects()) == 1
    assert len(server.requests) == 3 and len(sleeps) == 2


def test_unreachable_after_retries():
    client, server, _ = make(httpx.ConnectError("Connection refused"), max_retries=2)
    with pytest.raises(Unavailable) as info:
        client.me()
    assert len(server.requests) == 3
    assert str(info.value) == (f"mithril: could not reach {BASE} (ConnectError: Connection refused) "
                               "after 3 attempts: try again later")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
def test_client_errors_are_not_retried(status):
    client, server, sleeps = make(fail(status, {"detail": "no"}), ok([PROJECT]))
    with pytest.raises(MithrilError):
        client.projects()
    assert len(server.requests) == 1 and sleeps == []


# --- idempotency -----------------------------------------------------------------------------

def test_one_idempotency_key_per_create_kept_across_retries():
    client, server, sleeps = make(fail(503), httpx.ReadTimeout("lost"), ok(bid(), 201),
                                  fail(500), ok(bid("bid_2"), 201))
    first = client.create_bid(BID_REQUEST)
    second = client.create_bid(BID_REQUEST)
    assert (first.fid, second.fid) == ("bid_1", "bid_2")
    keys = [r.headers.get("Idempotency-Key") for r in server.requests]
    assert all(r.method == "POST" for r in server.requests)
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] == keys[4]
    assert keys[0] != keys[3]
    assert all(uuid.UUID(k).version == 4 for k in keys)
    assert json.loads(server.requests[0].content) == BID_REQUEST


def test_caller_supplied_idempotency_key():
    client, server, _ = make(fail(503), ok(bid(), 201))
    client.create_bid(BID_REQUEST, idempotency_key="persisted-key-1")
    assert [r.headers["Idempotency-Key"] for r in server.requests] == ["persisted-key-1"] * 2


def test_every_create_sends_a_key():
    key = {"fid": "sshkey_1", "name": "k", "project": "proj_1", "public_key": "ssh-ed25519 AAA",
           "created_at": "2024-01-01T00:00:00Z", "required": False}
    client, server, _ = make(ok(key, 201), ok(reservation(), 201))
    client.create_ssh_key("proj_1", "k", "ssh-ed25519 AAA")
    client.create_reservation({"project": "proj_1", "instance_type": "it_1", "region": "r",
                               "start_time": datetime(2024, 1, 1, tzinfo=timezone.utc),
                               "end_time": "2024-01-01T03:00:00Z", "instance_quantity": 1, "name": "r",
                               "launch_specification": SPEC})
    ssh, res = server.requests
    assert (ssh.url.path, res.url.path) == ("/v2/ssh-keys", "/v2/reservation")
    assert ssh.headers["Idempotency-Key"] != res.headers["Idempotency-Key"]
    assert json.loads(ssh.content) == {"project": "proj_1", "name": "k", "public_key": "ssh-ed25519 AAA",
                                       "required": False}
    assert json.loads(res.content)["start_time"] == "2024-01-01T00:00:00Z"


def test_invalid_create_is_refused_before_sending():
    client, server, _ = make(ok(bid(), 201))
    with pytest.raises(InvalidRequest) as info:
        client.create_bid(BID_REQUEST | {"limit_price": "$0.125"})
    assert str(info.value) == "mithril: limit_price: '$0.125' is not a whole number of cents"
    long_script = BID_REQUEST | {"launch_specification": SPEC | {"startup_script": "x" * 10_001}}
    with pytest.raises(InvalidRequest) as info:
        client.create_bid(long_script)
    assert str(info.value).startswith("mithril: launch_specification.startup_script: ")
    assert server.requests == []


# --- paging ----------------------------------------------------------------------------------

def test_paging_follows_next_cursor():
    pages = {None: ([instance("inst_1"), instance("inst_2")], "c2"),
             "c2": ([instance("inst_3"), instance("inst_4")], "c3"),
             "c3": ([instance("inst_5")], None)}

    def page(request):
        data, cursor = pages[request.url.params.get("next_cursor")]
        return ok({"data": data, "next_cursor": cursor})

    client, server, _ = make(page)
    found = client.list_instances("proj_1", bid="bid_1", limit=2)
    assert [i.fid for i in found] == ["inst_1", "inst_2", "inst_3", "inst_4", "inst_5"]
    assert [r.url.params.get("next_cursor") for r in server.requests] == [None, "c2", "c3"]
    for r in server.requests:
        assert (r.url.params["limit"], r.url.params["project"], r.url.params["bid_fid_in"]) == ("2", "proj_1", "bid_1")
    assert found[0].ssh_destination == "10.0.0.5:2222" and found[0].private_ip == "192.168.0.5"


def test_paging_is_lazy():
    client, server, _ = make(lambda r: ok({"data": [{"n": 1}], "next_cursor": "more"}))
    items = client.paginate("/v2/spot/bids")
    assert next(items) == {"n": 1}
    assert len(server.requests) == 1


@pytest.mark.parametrize("shape", ["array", "page"])
def test_both_list_shapes(shape):
    bids = [bid("bid_1"), bid("bid_2", "Allocated")]
    client, server, _ = make(ok(bids if shape == "array" else {"data": bids, "next_cursor": None}))
    found = client.list_bids("proj_1", status="Open")
    assert [(b.fid, b.status) for b in found] == [("bid_1", "Open"), ("bid_2", "Allocated")]
    assert dict(server.requests[0].url.params) == {"project": "proj_1", "status": "Open"}


def test_a_repeated_cursor_stops_the_paging():
    client, _, _ = make(lambda r: ok({"data": [], "next_cursor": "same"}))
    with pytest.raises(MithrilError, match="already given"):
        client.list_bids()


def test_an_unexpected_shape_is_an_error_not_a_traceback():
    client, _, _ = make(ok({"items": []}))
    with pytest.raises(MithrilError, match="neither a list nor a page"):
        client.list_bids()
    client, _, _ = make(ok(bid() | {"status": None}))
    with pytest.raises(MithrilError) as info:
        client.get_bid("bid_1")
    assert str(info.value).startswith("mithril: unexpected answer from GET /v2/spot/bids/bid_1: status: ")
    client, _, _ = make(httpx.Response(200, text="<html>oops</html>"))
    with pytest.raises(MithrilError, match="not JSON"):
        client.me()


# --- bids and instances ----------------------------------------------------------------------

def test_cancel_bid_is_idempotent():
    client, server, _ = make(httpx.Response(204), fail(404, {"detail": "Not Found"}))
    assert client.cancel_bid("bid_1") is True
    assert client.cancel_bid("bid_1") is False
    assert [(r.method, r.url.path) for r in server.requests] == [("DELETE", "/v2/spot/bids/bid_1")] * 2


def test_get_of_a_missing_bid_raises():
    client, _, _ = make(fail(404, {"detail": "Not Found"}))
    with pytest.raises(NotFound):
        client.get_bid("bid_gone")


def test_ids_stay_one_path_segment():
    client, server, _ = make(ok(bid()))
    client.get_bid("../instances")
    assert server.requests[0].url.raw_path == b"/v2/spot/bids/..%2Finstances"


def test_update_bid():
    client, server, _ = make(ok(bid(limit_price="$3.00")))
    assert client.update_bid("bid_1", limit_price="3").limit_price_cents == 300
    client.pause_bid("bid_1")
    client.resume_bid("bid_1")
    bodies = [json.loads(r.content) for r in server.requests]
    assert bodies == [{"limit_price": "$3.00"}, {"paused": True}, {"paused": False}]
    assert {r.method for r in server.requests} == {"PATCH"}
    with pytest.raises(ValueError):
        client.update_bid("bid_1")


def test_list_instances_finds_the_project_from_the_bid():
    client, server, _ = make(ok(bid()), ok([instance("inst_1")]))
    assert [i.fid for i in client.list_instances(bid=["bid_1", "bid_2"], status_in=["STATUS_RUNNING"])] == ["inst_1"]
    assert server.requests[0].url.path == "/v2/spot/bids/bid_1"
    assert dict(server.requests[1].url.params) == {"project": "proj_1", "bid_fid_in": "bid_1,bid_2",
                                                  "status_in": "STATUS_RUNNING"}


def test_reservation_availability_modes():
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    client, server, _ = make(ok({"latest_end_time": "2024-01-02T00:00:00Z", "available": True}),
                             ok({"available": False}),
                             ok([{"start_time": "2024-01-01T00:00:00Z", "end_time": "2024-01-01T06:00:00Z",
                                  "quantity": 3}]))
    latest = client.reservation_availability("proj_1", "it_1", "r", start_time=start, quantity=2)
    assert latest.available and latest.latest_end_time.day == 2
    check = client.reservation_availability("proj_1", "it_1", "r", mode="check", start_time=start,
                                            end_time="2024-01-01T06:00:00Z", quantity=2)
    assert check.available is False
    slots = client.reservation_availability("proj_1", "it_1", "r", mode="slots", earliest_start_time=start,
                                            latest_end_time="2024-01-02T00:00:00Z")
    assert [s.quantity for s in slots] == [3]
    assert dict(server.requests[0].url.params) == {"project": "proj_1", "instance_type": "it_1", "region": "r",
                                                  "mode": "latest_end_time",
                                                  "start_time": "2024-01-01T00:00:00Z", "quantity": "2"}
    with pytest.raises(ValueError):
        client.reservation_availability("proj_1", "it_1", "r", start_time=datetime(2024, 1, 1))


def test_ssh_keys_and_reservations_lists():
    key = {"fid": "sshkey_1", "name": "k", "project": "proj_1", "public_key": "ssh-ed25519 AAA",
           "created_at": "2024-01-01T00:00:00Z", "required": True}
    client, server, _ = make(ok([key]), ok({"data": [reservation()], "next_cursor": None}))
    assert client.ssh_keys("proj_1")[0].required is True
    assert client.reservations("proj_1", status="Pending")[0].unit_price_cents == 199
    assert dict(server.requests[0].url.params) == {"project": "proj_1"}
    assert dict(server.requests[1].url.params) == {"project": "proj_1", "status": "Pending"}


# --- error lines -----------------------------------------------------------------------------

@pytest.mark.parametrize("status, body, cls, line", [
    (401, {"detail": "Invalid API key"}, AuthError,
     "mithril: the API key was rejected (401): check MITHRIL_API_KEY or run flow init"),
    (403, {"detail": "User is not a member of project proj_9"}, AuthError,
     "mithril: permission denied (403): User is not a member of project proj_9"),
    (404, {"detail": "Not Found"}, NotFound, "mithril: bid_404 was not found (404)"),
    (404, {"detail": "Bid bid_404 does not exist"}, NotFound, "mithril: Bid bid_404 does not exist (404)"),
    (400, {"detail": "limit price $0.10 is below the minimum $0.50"}, InvalidRequest,
     "mithril: limit price $0.10 is below the minimum $0.50"),
    (409, {"detail": "bid is already terminated"}, Conflict, "mithril: bid is already terminated"),
    (422, {"detail": [{"loc": ["body", "limit_price"], "msg": "must be a dollar amount", "type": "value_error"},
                      {"loc": ["body", "launch_specification", "ssh_keys", 0], "msg": "unknown key",
                       "type": "value_error"}]},
     InvalidRequest, "mithril: limit_price: must be a dollar amount; launch_specification.ssh_keys.0: unknown key"),
    (418, None, MithrilError, "mithril: GET /v2/spot/bids/bid_404 failed (418 I'm a teapot)"),
    (400, {"detail": "first line\n  second line"}, InvalidRequest, "mithril: first line second line"),
])
def test_error_lines(status, body, cls, line):
    client, _, _ = make(fail(status, body))
    with pytest.raises(cls) as info:
        client.get_bid("bid_404")
    err = info.value
    assert isinstance(err, SflowError) and isinstance(err, MithrilError)
    assert str(err) == line and "\n" not in str(err)
    assert (err.status, err.exit_code) == (status, 1)
    assert render("flow", err) == f"flow: error: {line}"


def test_a_proxy_error_page_is_not_shown():
    client, _, _ = make(httpx.Response(502, text="<html><body>Bad gateway</body></html>"), max_retries=0)
    with pytest.raises(Unavailable) as info:
        client.me()
    assert str(info.value) == "mithril: the API is unavailable (502) (no retries): try again later"


# --- the key never leaks ---------------------------------------------------------------------

def test_the_key_never_leaks(caplog):
    caplog.set_level(logging.DEBUG)
    echo = {"detail": f"key {KEY} is not valid here"}
    failures = [fail(400, echo), fail(401, echo), fail(404, echo), fail(500, echo),
                httpx.ConnectError(f"refused {KEY}"),
                fail(422, {"detail": [{"loc": ["header", "Authorization"], "msg": f"bad {KEY}"}]})]
    errors, clients = [], []
    for answer in failures:
        client, _, _ = make(answer, max_retries=1)
        clients.append(client)
        with pytest.raises(MithrilError) as info:
            client.get_bid("bid_1")
        errors.append(info.value)
    texts = [caplog.text] + [t for c in clients for t in (str(c), repr(c), str(vars(c)))]
    texts += [t for err in errors for t in (str(err), repr(err), render("flow", err), str(err.args))]
    for text in texts:
        assert KEY not in text
        assert "T0pSecret" not in text
    assert "<redacted>" in str(errors[0]) and "<redacted>" in caplog.text


def test_an_unsendable_key_is_refused_without_echo():
    with pytest.raises(AuthError) as info:
        MithrilClient("fkey_with space\n", base_url=BASE)
    assert "with space" not in str(info.value)


# --- the config file -------------------------------------------------------------------------

def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def no_chmod(monkeypatch):
    """The file must be born private: changing its mode afterwards leaves a window."""
    def refuse(*args, **kwargs):
        raise AssertionError("chmod after creation")
    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)


def test_save_creates_a_private_file(tmp_path, no_chmod):
    path = tmp_path / "sflow" / "config.toml"
    old = os.umask(0)  # a permissive umask must not matter
    try:
        save_api_key(path, KEY)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert load_api_key({"SFLOW_CONFIG": str(path)}) == KEY
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temporary file left


def test_save_replaces_a_readable_file_and_keeps_other_settings(tmp_path, no_chmod):
    path = tmp_path / "config.toml"
    old = os.umask(0)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    finally:
        os.umask(old)
    with os.fdopen(fd, "w") as fh:
        fh.write('backend = "mithril"\n\n[mithril]\nproject = "proj_1"\napi_key = "fkey_old"\n\n[other]\nx = 1\n')
    assert _mode(path) == 0o644
    save_api_key(path, KEY)
    assert _mode(path) == 0o600
    import tomllib

    data = tomllib.loads(path.read_text())
    assert data == {"backend": "mithril", "mithril": {"project": "proj_1", "api_key": KEY}, "other": {"x": 1}}


@pytest.mark.parametrize("before", ["", "[other]\nx = 1", "[mithril]\nproject = \"p\"\n", "mithril.project = \"p\"\n",
                                    "mithril.api_key = \"fkey_old\"\n[a]\nb = 2\n"])
def test_save_into_any_layout(tmp_path, before):
    path = tmp_path / "config.toml"
    if before:
        path.write_text(before)
    save_api_key(path, KEY)
    assert load_api_key({"SFLOW_CONFIG": str(path)}) == KEY


def test_environment_beats_the_file(tmp_path):
    path = tmp_path / "config.toml"
    save_api_key(path, "fkey_file")
    assert load_api_key({"SFLOW_CONFIG": str(path), "MITHRIL_API_KEY": "fkey_env"}) == "fkey_env"
    assert load_api_key({"SFLOW_CONFIG": str(path)}) == "fkey_file"
    assert load_api_key({"SFLOW_CONFIG": str(tmp_path / "missing.toml")}) is None


def test_default_config_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mc.config_path({}) == tmp_path / ".config" / "sflow" / "config.toml"


def test_a_broken_config_file_says_where_not_what(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(f'[mithril]\napi_key = "{KEY}\n')
    with pytest.raises(MithrilError) as info:
        load_api_key({"SFLOW_CONFIG": str(path)})
    assert str(path) in str(info.value) and KEY not in str(info.value)


# --- import weight ---------------------------------------------------------------------------

def test_import_is_light():
    code = ("import sys, sflow.mithril.client; "
            "print(sorted(m for m in sys.modules if m in ('httpx', 'pydantic') or 'emulator' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
