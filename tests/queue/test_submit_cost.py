"""What a submission spares the controller, without changing what it answers."""

from __future__ import annotations

import dataclasses
import os

import pytest

from sflow.backends.local import LocalBackend, Need
from sflow.conf import Cluster, Node, Partition
from sflow.errors import SlurmError
from sflow.queue import ops, store
from sflow.queue.controller import Controller

CLUSTER = Cluster("cost", (Node("node1", 2, 4000), Node("node2", 2, 4000)),
                  (Partition("debug", ("node1", "node2"), default=True),),
                  config={"JobRequeue": "0", "jobrequeue": "1"})


@pytest.fixture
def ctl(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith(("SLURM_", "SBATCH_", "SFLOW_"))]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SFLOW_HOME", str(home))
    controller = Controller(str(home), CLUSTER)
    controller.load()
    controller.commit()
    yield controller
    controller.conn.close()


def _submit(ctl, tmp_path, *argv: str) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SFLOW_HOME": ctl.home}
    reply = ops.submit(ctl, {"argv": ["-o", "/dev/null", *argv], "env": env, "cwd": str(tmp_path),
                             "user": "u", "uid": os.getuid(), "gid": os.getgid(), "host": "h"})
    assert reply["ok"], reply
    ctl.commit()
    return reply


def test_a_held_submission_wants_no_scheduling_pass(ctl, tmp_path):
    ctl.schedule_wanted = False
    held = _submit(ctl, tmp_path, "--hold", "--wrap", "true")["job_id"]
    assert not ctl.schedule_wanted  # nothing a pass decides changes for a job that waits for a release
    assert (ctl.record_of(held).state, ctl.record_of(held).reason) == ("PENDING", "JobHeldUser")
    _submit(ctl, tmp_path, "--wrap", "true")
    assert ctl.schedule_wanted


def test_job_ids_and_submission_order_advance_together_past_every_stored_job(ctl, tmp_path):
    first = _submit(ctl, tmp_path, "--hold", "--wrap", "true")["job_id"]
    second = _submit(ctl, tmp_path, "--hold", "--wrap", "true")["job_id"]
    assert second == first + 1
    assert [ctl.jobs[first].seq, ctl.jobs[second].seq] == [1, 2]
    ctl.write()
    store.set_meta(ctl.conn, "next_job_id", 1)  # a counter behind the jobs stored never hands out one of their ids
    assert store.next_job_id_and_seq(ctl.conn, 1) == (second + 1, 3)
    assert (store.get_meta(ctl.conn, "next_job_id"), store.get_meta(ctl.conn, "submit_seq")) == (str(second + 2), "3")
    ctl.rollback()


def test_slurm_conf_keys_are_found_whatever_their_case_the_first_spelling_winning(ctl):
    assert ctl.config_value("JOBREQUEUE") == "0"
    assert ctl.config_value("EnforcePartLimits", "NO") == "NO"
    ctl.cluster = dataclasses.replace(CLUSTER, config={"EnforcePartLimits": "ALL"})
    assert ctl.config_value("enforcepartlimits") == "ALL"  # a new configuration is read afresh


def test_the_backends_kept_check_follows_the_partition_and_refuses_each_time():
    backend = LocalBackend(CLUSTER, "/nonexistent")
    small = Need(ntasks=4)
    debug = CLUSTER.partitions[0]
    assert backend.check_need(small, debug) is None
    assert backend.check_need(Need(min_nodes=2, nodes_given=True), dataclasses.replace(debug, max_nodes=1)) \
        == "PartitionNodeLimit"
    assert backend.check_need(Need(min_nodes=2, nodes_given=True), debug) is None
    for _ in range(2):
        with pytest.raises(SlurmError):
            backend.check_need(Need(nodelist=("node9",)), debug)
