"""flow burst status, costs and unit; the capacity layer's whole-machine allocation."""

from __future__ import annotations

import os
import sqlite3

from click.testing import CliRunner

from .burst_harness import settings_toml
from sflow.backends.base import BackendContext
from sflow.backends.mithril import MithrilBackend
from sflow.burst import store
from sflow.cli.flow import cli
from sflow.mithril import bids
from sflow.mithril.fetch import Settings


def populated(tmp_path):
    state = str(tmp_path / "state")
    config = tmp_path / "burst.toml"
    config.write_text(settings_toml(state, "http://127.0.0.1:9"))
    conn = store.open_store(state)
    conn.execute("BEGIN")
    for job, user, account, cents, state_ in ((41, "alice", "physics", 123.0, "released"),
                                              (42, "bob", "physics", 77.0, "released"),
                                              (41, "alice", "physics", 100.0, "preempted"),
                                              (43, "carol", "bio", None, "bidding")):
        group = store.Group(0, "gpu", job, [f"mithril-gpu-{job - 40}"], 1, 0.0, state_, None, "$30.00/hr",
                            cents, user, account)
        store.new_group(conn, group)
    store.save_node(conn, store.Node("mithril-gpu-3", "gpu", "resuming", 0.0, 43, 4,
                                     reason="BidOpen: limit $30.00/hr below spot $31.00/hr"))
    conn.execute("COMMIT")
    conn.close()
    return str(config)


def test_costs_by_job_user_and_account(tmp_path):
    config = populated(tmp_path)
    out = CliRunner().invoke(cli, ["burst", "costs", "--config", config]).output.splitlines()
    assert out[0].split() == ["JOB", "USER", "ACCOUNT", "BIDS", "COST"]
    assert out[1].split() == ["41", "alice", "physics", "2", "$2.23"]
    assert out[2].split() == ["42", "bob", "physics", "1", "$0.77"]
    assert out[3].split() == ["total", "3", "$3.00"]
    out = CliRunner().invoke(cli, ["burst", "costs", "--config", config, "--by", "account"]).output.splitlines()
    assert [line.split() for line in out] == [["ACCOUNT", "BIDS", "COST"], ["physics", "3", "$3.00"],
                                              ["total", "3", "$3.00"]]


def test_status_shows_each_node_its_bid_and_why(tmp_path):
    config = populated(tmp_path)
    out = CliRunner().invoke(cli, ["burst", "status", "--config", config]).output.splitlines()
    assert out[0].split()[:4] == ["NODE", "PARTITION", "STATE", "JOB"]
    assert out[1].split()[:7] == ["mithril-gpu-3", "gpu", "resuming", "43", "4", "(bidding)", "-"]
    assert out[1].endswith("BidOpen: limit $30.00/hr below spot $31.00/hr")


def test_a_missing_config_is_one_line(tmp_path):
    done = CliRunner().invoke(cli, ["burst", "status", "--config", str(tmp_path / "none.toml")])
    assert done.exit_code == 1
    assert done.output.startswith("flow: error: cannot read ") and done.output.count("\n") == 1


def test_unit_runs_the_service_as_slurm_user(tmp_path):
    out = CliRunner().invoke(cli, ["burst", "unit", "--config", "/etc/sflow/burst.toml", "--user", "slurm"]).output
    assert "User=slurm\n" in out
    assert " -m sflow.burst.service --config /etc/sflow/burst.toml\n" in out


def test_allocate_without_a_request_gives_whole_machines(tmp_path):
    conn = sqlite3.connect(":memory:", isolation_level=None)
    bids.ensure_schema(conn)
    context = BackendContext(conn, str(tmp_path), lambda: None, lambda effect: None, lambda name: None)
    backend = MithrilBackend(context, Settings(deadman=None), api_key="k")
    try:
        row = bids.BidRow("key", 7, 0, "Allocated", {"quantity": 2, "gpus": 8, "cpus": 32, "memory_gb": 200,
                                                    "type_name": "8xh100", "region": "r", "name": "sflow-7"},
                          3000, 0.0, bid_id="bid_1",
                          instances=[{"fid": f"inst_{i}", "name": f"sflow-7-{i}", "status": "STATUS_RUNNING",
                                      "ssh": f"10.0.0.{i}"} for i in (1, 2)])
        job = type("Job", (), {"job_id": 7})()
        allocation = backend._allocation(job, None, row)
        assert [(n.instance, n.tasks, n.gpu_indices, n.address) for n in allocation.nodes] == [
            ("inst_1", 1, tuple(range(8)), "10.0.0.1"), ("inst_2", 1, tuple(range(8)), "10.0.0.2")]
    finally:
        backend.close()
