"""A controller killed while a Mithril job's bid is live is started again without a user's command.

The watchdog (sflow.queue.watchdog) restarts it by itself; with the watchdog gone too, the next
read-only command (squeue reads SQLite and never talks to the controller) restarts it.
"""

from __future__ import annotations

import os
import signal
import time

from mithril_harness import REGION, site_fixture, slurm_conf
from sflow.queue import watchdog

KEY = "fkey_supervision_5ecret_77"
site = site_fixture("mithril-supervision", slurm_conf("sup"), KEY)

# The emulated instances are this machine: the job waits for a file the test makes (its own
# directory is a staged copy on the instance).
SCRIPT = """#!/bin/sh
#SBATCH -p gpu -N 1 --gpus-per-node=h100:8 -t 5 -o sup-%j.out
#SFLOW --region={region}
echo started
while [ ! -e {release}-$SLURM_JOB_ID ]; do sleep 0.1; done
echo done
"""


def _pid(site, name: str) -> int:
    with open(os.path.join(site.home, name)) as handle:
        return int(handle.read())


def _release(site) -> str:
    return os.path.join(os.path.dirname(site.home), "go")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _wait(test, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _running_on_a_live_bid(site) -> int:
    job_id = site.sbatch(SCRIPT.format(region=REGION, release=_release(site)), name="sup.sh")
    assert "started" in site.wait_output(f"sup-{job_id}.out", "started"), site.log()
    (row,) = site.bids(job_id)
    assert row.ended is None and site.market_bid(row.bid_id).status == "Allocated"
    return job_id


def _kill(pid: int, signum: int) -> None:
    os.kill(pid, signum)
    _wait(lambda: _gone(pid), f"process {pid} to end")


def _finishes_and_its_bid_is_deleted(site, job_id: int) -> None:
    with open(f"{_release(site)}-{job_id}", "w"):
        pass
    site.wait(job_id, lambda r: r.state == "COMPLETED", what="completed")
    (row,) = site.settled(job_id, timeout=30)
    assert site.market_bid(row.bid_id).status == "Terminated"
    assert site.output(f"sup-{job_id}.out").endswith("done\n")


def test_the_watchdog_restarts_a_controller_killed_with_a_live_bid(site):
    job_id = _running_on_a_live_bid(site)
    dead = _pid(site, "ctl.pid")
    keeper = _pid(site, watchdog.WATCHDOG_PID)
    assert not _gone(keeper)
    _kill(dead, signal.SIGKILL)
    # No command runs from here on: the store and the emulator are read directly.
    _wait(lambda: _pid(site, "ctl.pid") != dead and watchdog.controller_answers(site.home),
          "a controller started by the watchdog")
    assert "the controller died with jobs or bids live: starting it again" in site.log()
    _finishes_and_its_bid_is_deleted(site, job_id)


def test_squeue_restarts_a_controller_killed_with_a_live_bid_when_no_watchdog_is_left(site):
    job_id = _running_on_a_live_bid(site)
    _kill(_pid(site, watchdog.WATCHDOG_PID), signal.SIGTERM)
    _kill(_pid(site, "ctl.pid"), signal.SIGKILL)
    time.sleep(0.5)
    assert not watchdog.controller_answers(site.home)  # nothing else brings it back
    done = site.run("squeue")
    assert done.returncode == 0 and f"{job_id}" in done.stdout, done.stderr
    _wait(lambda: watchdog.controller_answers(site.home), "a controller started by squeue")
    _finishes_and_its_bid_is_deleted(site, job_id)


def test_a_controller_stopped_on_purpose_is_left_stopped(site, tmp_path):
    from sflow.queue import client

    job_id = _running_on_a_live_bid(site)
    keeper = _pid(site, watchdog.WATCHDOG_PID)
    client.call(site.home, "shutdown", start=False)
    _wait(lambda: _gone(keeper), "the watchdog to leave")
    assert not watchdog.controller_answers(site.home)
    site.run("scancel", str(job_id))  # a command that talks to it starts it again
    site.wait(job_id, lambda r: r.state == "CANCELLED", what="cancelled")
    site.settled(job_id, timeout=30)
