"""The Mithril backend's parts on their own: environments, node names, cost accrual, the worker."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from types import SimpleNamespace

import pytest

from sflow.backends.base import Allocation
from sflow.backends.mithril import WITHHELD_ENV, MithrilBackend, node_name
from sflow.exec.env import JobContext
from sflow.exec.remote_env import portable, relative_to_home
from sflow.mithril.emulator import start_emulator
from sflow.mithril.fetch import Settings
from sflow.mithril.worker import Worker
from sflow.slurm.request import parse_sbatch
from sflow.mithril.bids import BidRow


def test_only_what_is_not_this_machines_travels():
    env = {"HOME": "/home/me", "PATH": "/opt/venv/bin", "PWD": "/w", "MITHRIL_API_KEY": "fkey_x",
           "MITHRIL_API_URL": "u", "SFLOW_HOME": "/h", "SSH_AUTH_SOCK": "/s", "LC_ALL": "C", "BASH_FUNC_f%%": "()",
           "OMP_NUM_THREADS": "4", "WANDB_PROJECT": "p", "SLURM_JOB_ID": "12"}
    assert portable(env, withheld=WITHHELD_ENV) == {"OMP_NUM_THREADS": "4", "WANDB_PROJECT": "p", "SLURM_JOB_ID": "12"}
    kept = portable(env, {"PATH": "/custom", "MITHRIL_API_KEY": "fkey_x"}, WITHHELD_ENV)
    assert kept["PATH"] == "/custom" and "MITHRIL_API_KEY" not in kept
    # The executor withholds what the backend says; the key is a secret whichever backend placed the job.
    assert portable(env) == {"MITHRIL_API_URL": "u", "OMP_NUM_THREADS": "4", "WANDB_PROJECT": "p",
                             "SLURM_JOB_ID": "12"}


def test_a_mithril_allocation_withholds_mithrils_settings_through_the_job_context(tmp_path):
    backend = MithrilBackend.__new__(MithrilBackend)
    backend.settings = SimpleNamespace(deadman={"lease_renew_seconds": 45.0})
    request = parse_sbatch(["-n", "2", "--wrap", "true"], env={}, cwd=str(tmp_path), user="alice", uid=1000,
                           gid=1000, host="login1").request
    instances = [{"fid": f"inst_{i}", "name": f"sflow-5-{i}", "status": "STATUS_RUNNING", "ssh": f"127.0.0.1:{2200 + i}"}
                 for i in range(2)]
    row = _row(job_id=5, bid_id="bid_5", instances=instances)
    alloc = backend._allocation(SimpleNamespace(job_id=5), request, row)
    assert (alloc.withheld_env, alloc.lease_renew_seconds) == (WITHHELD_ENV, 45.0)
    stored = Allocation.from_json(json.loads(json.dumps(alloc.to_json())))  # as the controller keeps it
    assert (stored.withheld_env, stored.lease_renew_seconds) == (WITHHELD_ENV, 45.0)
    backend.settings = SimpleNamespace(deadman=None)  # the switch off: no lease to renew
    assert backend._allocation(SimpleNamespace(job_id=5), request, row).lease_renew_seconds is None
    context = JobContext(job_id=5, job_name="j", user="u", uid=0, gid=0, partition="gpu", account="u", qos="normal",
                         cluster_name="c", submit_dir="/w", submit_host="h", work_dir="/w", nodes=stored.nodes,
                         tasks_per_node=stored.tasks_per_node, ntasks=2, withheld_env=stored.withheld_env)
    assert JobContext.from_json(json.loads(json.dumps(context.to_json()))).withheld_env == WITHHELD_ENV
    # An instance's copy says nothing of it: an older sflow there reads the file too.
    assert "withheld_env" not in dataclasses.replace(context, withheld_env=()).to_json()
    assert relative_to_home("/home/ubuntu/sflow-job-3/sub", "/home/ubuntu") == "sflow-job-3/sub"
    assert relative_to_home("/tmp/x", "/home/ubuntu") == "/tmp/x"


def test_node_names_are_slurm_safe():
    assert node_name({"fid": "inst_a1", "name": "sflow-12-0"}) == "sflow-12-0"
    assert node_name({"fid": "inst_a1", "name": "my node [1]"}) == "my-node-1"
    assert node_name({"fid": "inst_a1", "name": ""}) == "inst-a1"


def _row(**kw) -> BidRow:
    plan = {"type_id": "it_x", "type_name": "8xh100", "region": "r", "quantity": 2, "gpus": 8, "gpu_type": "h100",
            "cpus": 224, "memory_gb": 1800}
    fields = {"idempotency_key": "k", "job_id": 1, "run": 0, "status": "Allocated", "plan": plan,
              "limit_cents": 1200, "created": 0.0, **kw}
    return BidRow(**fields)


def test_cost_is_price_times_running_instances_times_time():
    row = _row(price_cents=800, instances=[
        {"fid": "a", "status": "STATUS_RUNNING", "running_since": 100.0},
        {"fid": "b", "status": "STATUS_RUNNING", "running_since": 130.0},
        {"fid": "c", "status": "STATUS_STARTING", "running_since": None},
    ], accrued_to=90.0)
    MithrilBackend._accrue(None, row, 190.0)
    assert row.cost_cents == pytest.approx(800 * (90 + 60) / 3600)
    MithrilBackend._accrue(None, row, 190.0)  # nothing more for no time
    assert row.cost_cents == pytest.approx(800 * 150 / 3600) and row.accrued_to == 190.0


def test_reasons_explain_the_market():
    backend = MithrilBackend.__new__(MithrilBackend)
    backend.markets = {}
    assert backend.reason(_row(status="Placing")) == "BidPlacing"
    assert backend.reason(_row(status="Placing", error="mithril: down")) == "MithrilUnavailable: mithril: down"
    row = _row(status="Open", bid_id="bid_1")
    backend.markets = {"k": (1500, 1)}
    assert backend.reason(row) == "BidOpen: waiting for 2 x 8xh100 in r (1 free)"
    backend.markets = {"k": (1500, 5)}
    assert backend.reason(row) == "BidOpen: limit $12.00/hr below spot $15.00/hr"
    backend.markets = {"k": (900, 5)}
    assert backend.reason(row) == "BidOpen: waiting for the next auction"


@pytest.fixture
def emulator():
    emu = start_emulator(tick=3600, startup=0.0, api_key="fkey_parts")
    yield emu
    emu.close()


def _reports(worker: Worker, kinds: set[str], timeout: float = 10.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and not kinds <= {r[0] for r in got}:
        got += worker.take_reports()
        time.sleep(0.02)
    return got


def test_a_create_sent_twice_with_its_key_places_one_bid(emulator, tmp_path):
    read, write = os.pipe()
    settings = Settings(api_url=emulator.url, poll_seconds=0.1)
    spec = {"name": "sflow-7", "region": "us-central1-a", "type_id": emulator.market.catalog.find("8xh100").fid,
            "limit_cents": 900, "quantity": 1}
    first = Worker(str(tmp_path), settings, "fkey_parts", write)
    first.create("key-1", spec)
    (created,) = [r for r in _reports(first, {"created"}) if r[0] == "created"]
    first.close()
    again = Worker(str(tmp_path), settings, "fkey_parts", write)  # as a restarted controller would
    again.create("key-1", spec)
    (repeated,) = [r for r in _reports(again, {"created"}) if r[0] == "created"]
    assert repeated[2] == created[2]
    assert [b.name for b in emulator.market.bids.values()] == ["sflow-7"]
    again.delete("key-1", None, spec)  # a delete that never learnt the id finds it by its key
    deleted = [r for r in _reports(again, {"deleted"}) if r[0] == "deleted"]
    assert deleted[0][3] == created[2]
    assert emulator.market.bids[created[2]].status == "Terminated"
    again.close()
    os.close(read)
    os.close(write)


def test_a_deleted_bid_costs_what_mithril_billed(emulator, tmp_path):
    read, write = os.pipe()
    settings = Settings(api_url=emulator.url, poll_seconds=0.1)
    spec = {"name": "sflow-8", "region": "us-central1-a", "type_id": emulator.market.catalog.find("8xh100").fid,
            "limit_cents": 1200, "quantity": 2}
    worker = Worker(str(tmp_path), settings, "fkey_parts", write)
    worker.create("key-8", spec)
    (created,) = [r for r in _reports(worker, {"created"}) if r[0] == "created"]
    emulator.tick()
    time.sleep(0.3)
    worker.delete("key-8", created[2], spec)
    got = _reports(worker, {"deleted", "final_cost"})
    (billed,) = [r for r in got if r[0] == "final_cost"]
    assert billed[1] == "key-8" and billed[2] > 0
    assert billed[2] == pytest.approx(emulator.ledger()[created[2]]["cost_cents"], abs=1e-6)
    worker.final_cost("key-8", created[2], time.time())  # asked again (a restarted controller): the same
    (again,) = [r for r in _reports(worker, {"final_cost"}) if r[0] == "final_cost"]
    assert again[2] == pytest.approx(billed[2], abs=1e-9)
    worker.final_cost("key-9", "bid_unknown", time.time())  # no record to be had: the estimate stands
    assert [r for r in _reports(worker, {"final_cost"}) if r[0] == "final_cost"] == [("final_cost", "key-9", None)]
    assert not worker.busy()
    worker.close()
    os.close(read)
    os.close(write)


def test_a_store_made_before_final_costs_is_migrated(tmp_path):
    import sqlite3

    from sflow.mithril import bids

    conn = sqlite3.connect(str(tmp_path / "old.db"), isolation_level=None)
    old = bids.SCHEMA[0].replace(' cost_final INTEGER NOT NULL DEFAULT 0,', '')
    assert "cost_final" not in old
    conn.execute(old)
    for key, ended in (("gone", 50.0), ("live", None)):
        row = _row(idempotency_key=key, bid_id=f"bid_{key}", cost_cents=3.5, ended=ended)
        columns = bids.COLUMNS[:-1]
        conn.execute(f"INSERT INTO bids ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                     row.values()[:-1])
    # A reader before the controller migrated: a bid already gone counts as settled.
    rows = {r.idempotency_key: r for r in bids.read(conn)}
    assert rows["gone"].cost_settled and not rows["live"].cost_settled
    bids.ensure_schema(conn)
    bids.ensure_schema(conn)  # twice is harmless
    rows = {r.idempotency_key: r for r in bids.read(conn)}
    assert rows["gone"].cost_final and not rows["live"].cost_final and rows["gone"].cost_cents == 3.5
    assert bids.unsettled(conn) == []
    rows["live"].ended = 60.0
    bids.save(conn, rows["live"])
    assert [r.idempotency_key for r in bids.unsettled(conn)] == ["live"]


def _backend_on_a_store(tmp_path, reports: list) -> MithrilBackend:
    """The backend's bookkeeping over a real store, its worker replaced by what it reported."""
    from sflow.backends.base import BackendContext
    from sflow.queue import store

    backend = MithrilBackend.__new__(MithrilBackend)
    backend.context = BackendContext(conn=store.open_db(str(tmp_path)), home=str(tmp_path), write=lambda: None,
                                     after_commit=lambda effect: None, partition_max_time=lambda name: None)
    backend.worker = SimpleNamespace(take_reports=lambda: reports, revoke_key=lambda *a: None)
    backend.rows, backend.costing, backend.keys, backend.markets = {}, {}, {}, {}
    return backend


def test_the_worker_s_reports_come_back_as_typed_events(tmp_path):
    from sflow.backends.base import Changed, CostSettled, Preempting, Refused

    running = [{"fid": "a", "status": "STATUS_RUNNING", "ssh": "127.0.0.1:22"}]
    looks = {"k": {"when": 1000.0, "status": "Preempting", "clearing": 800, "capacity": 1,
                   "instances": [{"fid": "a", "status": "STATUS_PREEMPTING", "ssh": "127.0.0.1:22"}]}}
    backend = _backend_on_a_store(tmp_path, [("bids", looks), ("bids", {"k": {**looks["k"], "when": 1360.0}}),
                                             ("create_failed", "q", "mithril: no such instance type", True)])
    backend.rows["k"] = _row(job_id=7, bid_id="bid_7", price_cents=800, started=100.0, accrued_to=100.0,
                             instances=[{**running[0], "running_since": 100.0}])
    backend.rows["q"] = _row(idempotency_key="q", job_id=8, status="Placing")
    for row in backend.rows.values():
        backend._save(row)
    events = backend.events(1400.0)
    # The cost is read once every report is recorded: both looks' time, in both events (the first
    # look alone would say 900 s of it).
    cents = 800 * (1360 - 100) / 3600
    assert events == [CostSettled(7, pytest.approx(cents)), Preempting(7), CostSettled(7, pytest.approx(cents)),
                      Preempting(7), Refused(8, "MithrilRefused: no such instance type")]
    assert not [e for e in events if isinstance(e, Changed)]


def test_a_job_is_bid_as_it_was_planned_at_submission_whatever_the_market_says_now(tmp_path):
    from sflow.backends.base import Pending
    from sflow.mithril.translate import Plan

    backend = _backend_on_a_store(tmp_path, [])
    backend.settings = SimpleNamespace(deadman=None, plan=None)
    created = []
    backend.worker.create = lambda key, spec: created.append(spec)
    backend.context = dataclasses.replace(backend.context, after_commit=lambda effect: effect())
    backend.catalog = None  # no market at hand: the kept plan needs none
    shown = Plan(instance_type_id="it_8", instance_type="8xh100", instance_quantity=2, region="us-east1-b",
                 capacity="spot", gpus_per_instance=8, gpu_type="h100", cpus_per_instance=64,
                 memory_gb_per_instance=900, limit_price_cents=2400, limit_source="given", spot_price_cents=1600,
                 minimum_price_cents=None, time_limit_minutes=60, max_cost_cents=4800, current_cost_cents=3200)
    job = SimpleNamespace(job_id=5, plan=json.loads(json.dumps(dataclasses.asdict(shown))),
                          rec=SimpleNamespace(job_id=5, restart_count=0, array_job_id=None, array_task_id=None,
                                              time_limit=60, partition="gpu"))
    request = parse_sbatch(["--wrap", "true"], env={}, cwd="/", user="u", uid=0, gid=0, host="h").request
    assert backend.allocate(job, request, now=1000.0) == Pending("BidPlacing")
    assert created == [{"name": "sflow-5", "region": "us-east1-b", "type_id": "it_8", "limit_cents": 2400,
                        "quantity": 2}]
