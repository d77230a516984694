"""Time limits, --signal and KillWait, with the controller driven in this process on a chosen clock.

Limits are minutes; instead of waiting for them, the test hands the
controller's timer check the moment it wants to test, and lets real batch
steps react to the signals it sends.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from sflow.queue import ops
from sflow.queue.controller import Controller
from sflow.queue.recovery import recover
from queue_harness import queue  # noqa: F401  (the fixture)


class Driver:
    def __init__(self, queue):
        self.queue = queue
        self.ctl = Controller(queue.home)
        self.ctl.load()
        recover(self.ctl)
        self.ctl.commit()

    def submit(self, *argv: str) -> int:
        reply = ops.submit(self.ctl, {"argv": list(argv), "env": self.queue.env, "cwd": self.queue.work,
                                      "user": "u", "uid": os.getuid(), "gid": os.getgid(), "host": "h"})
        assert reply["ok"], reply
        self.step(time.time())
        return reply["job_id"]

    def step(self, now: float) -> None:
        self.ctl.check_running(now)
        self.ctl.schedule(now)
        self.ctl.commit()
        self.ctl.launch_started()

    def until(self, job_id: int, state: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ctl.turn(0.05)
            rec = self.ctl.record_of(job_id)
            if rec.state == state:
                return rec
        raise AssertionError(f"job {job_id} never reached {state}: {self.ctl.record_of(job_id)}")

    def close(self) -> None:
        for job in list(self.ctl.jobs.values()):
            if job.pgid:
                try:
                    os.killpg(job.pgid, signal.SIGKILL)
                except OSError:
                    pass
        self.ctl.conn.close()


@pytest.fixture
def driver(queue):
    d = Driver(queue)
    yield d
    d.close()


def _lines(path: str) -> list[str]:
    try:
        with open(path) as handle:
            return handle.read().split()
    except FileNotFoundError:
        return []


def test_time_limit_ends_a_job_as_timeout(driver, queue):
    job_id = driver.submit("-t", "2", "--wrap", "sleep 60")
    rec = driver.ctl.record_of(job_id)
    assert rec.state == "RUNNING"
    driver.step(rec.start_time + 119)  # a second early: nothing happens
    assert driver.ctl.record_of(job_id).state == "RUNNING"
    driver.step(rec.start_time + 120)
    assert driver.ctl.record_of(job_id).state == "COMPLETING"
    rec = driver.until(job_id, "TIMEOUT")
    assert (rec.reason, rec.exit_code, rec.exit_signal) == ("TimeLimit", 0, signal.SIGTERM)
    with open(rec.stderr) as handle:
        assert f"*** JOB {job_id} ON n1 CANCELLED AT " in handle.read().split(" DUE TO TIME LIMIT ***")[0]


def test_kill_wait_then_sigkill_for_a_job_ignoring_term(driver, queue):
    ready = os.path.join(queue.work, "ready")
    job_id = driver.submit("-t", "1", "--wrap", f"trap '' TERM; touch {ready}; while :; do sleep 0.1; done")
    queue.wait_for(lambda: os.path.exists(ready), what="trap installed")
    start = driver.ctl.record_of(job_id).start_time
    driver.step(start + 60)
    for _ in range(10):
        driver.ctl.turn(0.05)
    assert driver.ctl.record_of(job_id).state == "COMPLETING"  # TERM ignored: still there
    driver.step(start + 60 + 1)  # KillWait=1 in the test cluster
    rec = driver.until(job_id, "TIMEOUT")
    assert rec.exit_signal == signal.SIGKILL


def test_signal_before_the_limit_reaches_the_batch_shell_with_b(driver, queue):
    log = os.path.join(queue.work, "usr1.log")
    script = f"trap 'echo USR1 >> {log}' USR1; echo up >> {log}; while :; do sleep 0.1; done"
    job_id = driver.submit("-t", "5", "--signal=B:USR1@120", "--wrap", script)
    queue.wait_for(lambda: "up" in _lines(log), what="script start")
    start = driver.ctl.record_of(job_id).start_time
    driver.step(start + 179)
    time.sleep(0.3)
    assert _lines(log) == ["up"]
    driver.step(start + 180)
    queue.wait_for(lambda: "USR1" in _lines(log), what="USR1")
    driver.step(start + 200)  # once only
    time.sleep(0.3)
    assert _lines(log) == ["up", "USR1"]
    assert driver.ctl.record_of(job_id).state == "RUNNING"


def test_signal_without_b_spares_the_batch_shell(driver, queue):
    log = os.path.join(queue.work, "steps.log")
    script = f"trap 'echo USR1 >> {log}' USR1; echo up >> {log}; while :; do sleep 0.1; done"
    job_id = driver.submit("-t", "5", "--signal=USR1@60", "--wrap", script)
    queue.wait_for(lambda: "up" in _lines(log), what="script start")
    driver.step(driver.ctl.record_of(job_id).start_time + 240)
    time.sleep(0.3)
    assert _lines(log) == ["up"]  # no srun step to signal; the shell is left alone, as in SLURM
    assert driver.ctl.record_of(job_id).state == "RUNNING"


def test_raising_the_limit_of_a_running_job_moves_the_deadline(driver, queue):
    job_id = driver.submit("-t", "1", "--wrap", "sleep 60")
    start = driver.ctl.record_of(job_id).start_time
    reply = ops.update(driver.ctl, {"job_id": str(job_id), "changes": {"TimeLimit": "3"}})
    assert reply["ok"]
    driver.step(start + 61)
    assert driver.ctl.record_of(job_id).state == "RUNNING"
    driver.step(start + 180)
    assert driver.until(job_id, "TIMEOUT").time_limit == 3
