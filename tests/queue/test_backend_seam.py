"""The controller's side of the backend seam, driven in this process by a backend with scripted answers.

A partition ``Backend=fake`` places its jobs with ``sflow.backends.fake``: the test decides each
allocation and pushes the events a market would send, then turns the controller's loop itself.
The fake's nodes carry no address, so an allocated job's batch step is a real local process
(``sleep``): preemption and node loss must end a process that is really there.
"""

from __future__ import annotations

import os
import time

import pytest

from sflow.backends.base import Allocation, Changed, Checked, CostSettled, NodeLost, Pending, Preempting, Refused
from sflow.backends.fake import FakeBackend
from sflow.conf import Cluster, Node, Partition
from sflow.queue import ops
from sflow.queue.controller import Controller
from sflow.queue.recovery import recover
from sflow.records import AllocatedNode

CLUSTER = Cluster("seam", (Node("node1", 2, 4000), Node("far1", 2, 4000)),
                  (Partition("debug", ("node1",), default=True), Partition("far", ("far1",), backend="fake")))


class Script:
    """The fake's answers: a job waits with ``reason`` until the test says it may run."""

    def __init__(self, root: str):
        self.root = root
        self.reason = "Resources"
        self.ready: set[int] = set()

    def __call__(self, job, request):
        if job.job_id not in self.ready:
            return Pending(self.reason)
        return Allocation(job.job_id, [AllocatedNode("far1", 1, root_dir=os.path.join(self.root, "far1"))])


@pytest.fixture
def seam(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith(("SLURM_", "SBATCH_", "SFLOW_"))]:
        monkeypatch.delenv(name)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("SFLOW_HOME", str(home))
    ctl = Controller(str(home), CLUSTER)
    script = Script(str(tmp_path / "nodes"))
    fake = ctl.add_backend(FakeBackend(script))
    ctl.load()
    recover(ctl)
    ctl.backends_recover()
    ctl.commit()
    driver = Driver(ctl, fake, script, str(work))
    yield driver
    for job in list(ctl.jobs.values()):  # nothing a test started outlives it
        if job.pgid:
            from sflow.queue import launch

            launch.terminate(job.pgid)
    ctl.conn.close()


class Driver:
    def __init__(self, ctl: Controller, fake: FakeBackend, script: Script, work: str):
        self.ctl, self.fake, self.script, self.work = ctl, fake, script, work

    def submit(self, *argv: str) -> int:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SFLOW_HOME": self.ctl.home}
        reply = ops.submit(self.ctl, {"argv": ["-p", "far", "-o", "/dev/null", *argv], "env": env,
                                      "cwd": self.work, "user": "u", "uid": os.getuid(), "gid": os.getgid(),
                                      "host": "h"})
        assert reply["ok"], reply
        self.turn()
        return reply["job_id"]

    def turn(self) -> None:
        self.ctl.turn(0.01)

    def until(self, job_id: int, check, what: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.turn()
            rec = self.ctl.record_of(job_id)
            if check(rec):
                return rec
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} never {what}: {self.ctl.record_of(job_id)}")

    def running(self, job_id: int):
        """Let the fake allocate the job; its batch step's process is up."""
        self.script.ready.add(job_id)
        self.ctl.schedule_wanted = True
        self.until(job_id, lambda rec: rec.state == "RUNNING", "ran")
        job = self.ctl.jobs[job_id]
        self.until(job_id, lambda rec: job.launch == "launched" and job.pgid, "started its batch step")
        return job


def test_a_job_waits_with_the_backends_reason_and_runs_when_allocated(seam):
    seam.script.reason = "FakeMarket: closed"
    job_id = seam.submit("--wrap", "true")
    rec = seam.ctl.record_of(job_id)
    assert (rec.state, rec.reason, rec.backend) == ("PENDING", "FakeMarket: closed", "fake")
    seam.script.ready.add(job_id)
    seam.fake.push(Changed(job_id))  # the backend says the placement moved: planned again
    rec = seam.until(job_id, lambda rec: rec.state == "COMPLETED", "completed")
    assert rec.nodelist == "far1" and rec.exit_code == 0
    assert job_id not in seam.fake.held  # its allocation was given back
    assert (job_id, 0, "COMPLETED") in seam.fake.outcomes


def test_preempting_signals_the_job_and_requeues_it(seam):
    job_id = seam.submit("--requeue", "--wrap", "sleep 300")
    seam.running(job_id)
    seam.fake.push(Preempting(job_id, notice_seconds=30))
    rec = seam.until(job_id, lambda rec: rec.state == "PENDING", "requeued")
    assert rec.restart_count == 1  # SLURM_RESTART_COUNT of its next run
    assert (job_id, 0, "PREEMPTED") in seam.fake.outcomes


def test_preempting_without_requeue_ends_the_job_preempted(seam):
    job_id = seam.submit("--no-requeue", "--wrap", "sleep 300")
    seam.running(job_id)
    seam.fake.push(Preempting(job_id))
    rec = seam.until(job_id, lambda rec: rec.state != "RUNNING", "ended")
    assert (rec.state, rec.restart_count) == ("PREEMPTED", 0)


def test_a_lost_node_ends_the_job_node_fail(seam):
    job_id = seam.submit("--no-requeue", "--wrap", "sleep 300")
    seam.running(job_id)
    seam.fake.push(NodeLost(job_id, "far1"))
    rec = seam.until(job_id, lambda rec: rec.state != "RUNNING", "ended")
    assert (rec.state, rec.reason) == ("NODE_FAIL", "NodeDown")


def test_a_lost_node_requeues_a_job_that_allows_it(seam):
    job_id = seam.submit("--requeue", "--wrap", "sleep 300")
    seam.running(job_id)
    seam.fake.push(NodeLost(job_id, "far1"))
    rec = seam.until(job_id, lambda rec: rec.state == "PENDING", "requeued")
    assert rec.restart_count == 1


def test_a_settled_cost_shows_in_the_record(seam):
    job_id = seam.submit("--wrap", "true")
    seam.fake.push(CostSettled(job_id, 123.25))
    seam.turn()
    assert seam.ctl.record_of(job_id).cost_cents == 123.25


def test_a_settled_cost_reaches_a_job_already_over(seam):
    job_id = seam.submit("--wrap", "true")
    seam.script.ready.add(job_id)
    seam.ctl.schedule_wanted = True
    seam.until(job_id, lambda rec: rec.state == "COMPLETED", "completed")
    seam.fake.push(CostSettled(job_id, 7.5))
    seam.turn()
    assert seam.ctl.record_of(job_id).cost_cents == 7.5


def test_a_refused_job_is_held_with_the_backends_reason(seam):
    job_id = seam.submit("--wrap", "true")
    seam.fake.push(Refused(job_id, "FakeRefused: no such machine"))
    seam.turn()
    seam.ctl.schedule_wanted = True
    seam.turn()  # a scheduling pass keeps the reason while the job is held
    rec = seam.ctl.record_of(job_id)
    assert (rec.state, rec.held, rec.reason) == ("PENDING", True, "FakeRefused: no such machine")


def test_a_partitions_backend_is_made_by_name_when_its_first_job_comes(tmp_path, monkeypatch):
    monkeypatch.setenv("SFLOW_HOME", str(tmp_path))
    ctl = Controller(str(tmp_path), CLUSTER)
    ctl.load()
    ctl.backends_recover()
    assert list(ctl.backends) == ["local"]  # nothing made for a partition no job uses
    driver = Driver(ctl, None, None, str(tmp_path))
    job_id = driver.submit("--wrap", "true")
    assert isinstance(ctl.backends["fake"], FakeBackend)
    assert ctl.record_of(job_id).reason == "Resources"  # the fake's answer when none is scripted
    ctl.conn.close()


def test_what_the_backend_planned_at_submission_is_what_it_is_asked_to_place(seam):
    seam.fake.checked = Checked(plan={"machine": "big", "count": 3}, num_nodes=3, limit_price="$1.50",
                                partition_node_limits=False)
    asked = []
    answer = seam.fake.answer
    seam.fake.answer = lambda job, request: asked.append(job.plan) or answer(job, request)
    job_id = seam.submit("-N", "1", "--wrap", "true")
    rec = seam.ctl.record_of(job_id)
    assert (rec.num_nodes, rec.limit_price) == (3, "$1.50")  # as the plan says, not as asked
    seam.ctl.schedule_wanted = True
    seam.turn()
    assert asked and asked[-1] == {"machine": "big", "count": 3}
    # The plan is kept with the job: a controller started again places the same one.
    seam.ctl.conn.close()
    again = Controller(seam.ctl.home, CLUSTER)
    again.load()
    assert again.jobs[job_id].plan == {"machine": "big", "count": 3}
    again.conn.close()


def test_test_only_shows_the_plan_and_queues_nothing(seam):
    seam.fake.checked = Checked(plan={"machine": "big"})
    reply = ops.submit(seam.ctl, {"argv": ["-p", "far", "--test-only", "--wrap", "true"], "env": {},
                                  "cwd": seam.work, "user": "u", "uid": os.getuid(), "gid": os.getgid(),
                                  "host": "h"})
    assert (reply["ok"], reply["job_id"], reply["plan"]) == (True, None, {"machine": "big"})
    assert seam.ctl.jobs == {}


def test_a_new_time_limit_is_planned_again_and_the_old_claim_given_up(seam):
    seam.fake.checked = Checked(plan={"hours": 1})
    job_id = seam.submit("-t", "60", "--wrap", "true")
    seam.fake.checked = Checked(plan={"hours": 2}, limit_price="$3.00")
    reply = ops.update(seam.ctl, {"job_id": str(job_id), "changes": [("TimeLimit", "120")]})
    assert reply["ok"], reply
    job = seam.ctl.jobs[job_id]
    assert seam.fake.checks[-1][1] == 120 and seam.fake.checks[-1][0].time_limit == 120
    assert (job.plan, job.rec.limit_price) == ({"hours": 2}, "$3.00")
    assert seam.fake.withdrawn == [job_id]  # what was claimed with the old plan is given up
    ops.update(seam.ctl, {"job_id": str(job_id), "changes": [("Comment", "x")]})
    assert len(seam.fake.checks) == 2  # nothing a plan is made from: not planned again
