"""Injected faults: seeded, so replayable, and striking before or after a create takes effect."""

from __future__ import annotations

import time

import httpx
import pytest

from sflow.mithril.emulator import start_emulator
from sflow.mithril.emulator.faults import FaultPlan

AUTH = {"Authorization": "Bearer fkey_test"}


def outcome(client: httpx.Client, method: str, path: str, **kwargs) -> str | int:
    try:
        return client.request(method, path, **kwargs).status_code
    except httpx.TransportError:
        return "dropped"


def test_the_plan_depends_only_on_the_seed_and_the_request_number():
    def draws(seed):
        plan = FaultPlan(rate=0.4, seed=seed)
        return [plan.draw("GET", "/v2/me") for _ in range(200)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)
    faults = [f for f in draws(5) if f]
    assert 50 < len(faults) < 110  # about 40%
    assert {f.kind for f in faults} == {"429", "500", "503", "slow", "drop"}
    assert {f.phase for f in faults} == {"before", "after"}
    assert all(f.phase == "before" for f in faults if f.kind == "429")
    with pytest.raises(ValueError):
        FaultPlan(kinds=("teapot",))


def test_a_live_emulator_replays_the_same_faults_for_the_same_seed():
    def run(seed):
        with start_emulator(tick=3600, fault_rate=0.35, seed=seed, slow_seconds=0.01, retry_after=0) as emu, \
                httpx.Client(base_url=emu.url, headers=AUTH, timeout=5) as client:
            return [outcome(client, "GET", "/v2/me") for _ in range(40)]

    first = run(3)
    assert first == run(3)
    assert first != run(4)
    assert {"dropped", 429, 500, 503} <= set(first) and 200 in first


def test_fault_answers_say_when_to_come_back():
    with start_emulator(tick=3600, fault_rate=1.0, fault_kinds=("429", "503"), retry_after=7) as emu, \
            httpx.Client(base_url=emu.url, headers=AUTH) as client:
        for _ in range(6):
            r = client.get("/v2/me")
            assert r.status_code in (429, 503) and r.headers["Retry-After"] == "7"
            assert isinstance(r.json()["detail"], str)
        assert client.get("/_emulator/ledger").status_code == 200  # the control endpoints never fail


def test_slow_answers_are_slow_and_dropped_connections_say_nothing():
    with start_emulator(tick=3600, fault_rate=1.0, fault_kinds=("slow",), slow_seconds=0.3) as emu:
        began = time.monotonic()
        assert httpx.get(f"{emu.url}/v2/me", headers=AUTH).status_code == 200
        assert time.monotonic() - began >= 0.3
    with start_emulator(tick=3600, fault_rate=1.0, fault_kinds=("drop",)) as emu:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{emu.url}/v2/me", headers=AUTH)


def _bid(project: str, instance_type: str, name: str) -> dict:
    return {"project": project, "region": "us-central1-a", "instance_type": instance_type, "limit_price": "$1.00",
            "instance_quantity": 1, "name": name, "launch_specification": {"volumes": [], "ssh_keys": []}}


def _setup(emu, client):
    """Project and instance type, read while faults are off."""
    rate, emu.service.config.fault_rate = emu.service.config.fault_rate, 0
    project = client.get("/v2/projects").json()[0]["fid"]
    it = {t["name"]: t["fid"] for t in client.get("/v2/instance-types").json()}["1xa100"]
    emu.service.config.fault_rate = rate
    return project, it


def test_a_failed_create_may_have_taken_effect_or_not():
    phases = set()
    for seed in range(12):
        with start_emulator(tick=3600, fault_rate=1.0, fault_kinds=("500", "drop"), seed=seed) as emu, \
                httpx.Client(base_url=emu.url, headers=AUTH) as client:
            project, it = _setup(emu, client)
            assert outcome(client, "POST", "/v2/spot/bids", json=_bid(project, it, "once")) in (500, "dropped")
            phase = emu.service.faults.history[-1][3].phase
            phases.add(phase)
            assert len(emu.market.bids) == (1 if phase == "after" else 0)
    assert phases == {"before", "after"}


def test_retrying_with_one_idempotency_key_places_each_bid_exactly_once():
    with start_emulator(tick=3600, fault_rate=0.5, fault_kinds=("500", "503", "drop"), seed=11, retry_after=0) as emu, \
            httpx.Client(base_url=emu.url, headers=AUTH) as client:
        project, it = _setup(emu, client)
        for n in range(8):
            for _ in range(50):
                got = outcome(client, "POST", "/v2/spot/bids", json=_bid(project, it, f"job{n}"),
                              headers={"Idempotency-Key": f"key-{n}"})
                if got == 201:
                    break
            else:
                pytest.fail("never succeeded")
        names = sorted(b.name for b in emu.market.bids.values())
        assert names == [f"job{n}" for n in range(8)]
        posts = [f for _, method, _, f in emu.service.faults.history if method == "POST" and f]
        assert {f.phase for f in posts} == {"before", "after"}  # both cases were exercised
