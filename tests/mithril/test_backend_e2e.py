"""Mithril end to end: the real shims and controller, the emulated API, emulated instances on loopback.

The emulator runs in this process with a fast auction and SSH hosts for its
instances (each one a real SSH server with its own home, on 127.0.0.1); the
controller, started by the first shim, reaches it through MITHRIL_API_URL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from sflow.mithril import sshhost
from sflow.mithril.emulator import start_emulator
from sflow.queue import bids, store

BIN = os.path.dirname(sys.executable)
REGION = "us-central1-a"
KEY = "fkey_e2e_5ecret_value_42"
CONF = """\
ClusterName=e2e
NodeName=node1 CPUs=2 RealMemory=2000
PartitionName=debug Nodes=node1 Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Backend=mithril MaxTime=60 State=UP
"""


class Site:
    def __init__(self, emu, home: str, work: str, env: dict):
        self.emu, self.home, self.work, self.env = emu, home, work, env

    def run(self, *argv: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), cwd=self.work, env=self.env, input=input, capture_output=True, text=True,
                              timeout=timeout)

    def sbatch(self, script: str, name: str = "job.sh") -> int:
        path = os.path.join(self.work, name)
        with open(path, "w") as handle:
            handle.write(script)
        done = self.run("sbatch", "--parsable", name)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())

    def job(self, job_id: int):
        return store.read_jobs(self.home, "job_id = ?", (job_id,))[0]

    def wait(self, job_id: int, test, timeout: float = 40.0, what: str = ""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self.job(job_id)
            if test(rec):
                return rec
            time.sleep(0.05)
        rec = self.job(job_id)
        raise AssertionError(f"job {job_id} never {what}: state {rec.state}, reason {rec.reason}\n"
                             f"{self.log()}")

    def log(self) -> str:
        with open(os.path.join(self.home, "controller.log")) as handle:
            return handle.read()[-4000:]

    def bids(self, job_id: int):
        return bids.of_job(self.home, job_id)

    def settled(self, job_id: int, timeout: float = 15.0):
        """The job's bid records once every deletion is confirmed (the job record has its final cost)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.bids(job_id)
            if rows and all(r.ended is not None for r in rows):
                return rows
            time.sleep(0.05)
        raise AssertionError(f"bids of job {job_id} still live: {self.bids(job_id)}")

    def market_bid(self, bid_id: str):
        with self.emu.service.lock:
            return self.emu.market.bids[bid_id]

    def demand(self, price: str, quantity: int) -> None:
        """Other users' bids for the 8xh100 pool, from now on."""
        with self.emu.service.lock:
            self.emu.service.script({"region": REGION, "instance_type": "8xh100",
                                     "demand": [[0, price, quantity]]}, self.emu.service.clock())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("mithril-e2e")
    home, work = root / "home", root / "work"
    home.mkdir()
    work.mkdir()
    conf = root / "slurm.conf"
    conf.write_text(CONF)
    saved = os.environ.get("SFLOW_HOME")
    os.environ["SFLOW_HOME"] = str(home)  # the emulated instances keep their homes under it
    emu = start_emulator(tick=0.2, startup=0.3, notice=5.0, api_key=KEY, host_factory=sshhost.host_factory)
    env = {**os.environ, "SFLOW_HOME": str(home), "SFLOW_CONF": str(conf),
           "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "SFLOW_CONTROLLER_IDLE": "60",
           "SFLOW_CONFIG": str(root / "no-config.toml"), "MITHRIL_API_URL": emu.url, "MITHRIL_API_KEY": KEY,
           "SFLOW_MITHRIL_POLL": "0.2", "SFLOW_REMOTE_POLL": "0.2", "SFLOW_REQUEUE_DELAY": "0",
           "SFLOW_REMOTE_RECONNECT": "3"}
    for name in [n for n in env if n.startswith(("SLURM_", "SBATCH_"))]:
        del env[name]
    s = Site(emu, str(home), str(work), env)
    yield s
    from sflow.queue import client

    try:
        s.run("scancel", "-u", os.environ.get("USER") or "root", timeout=30)
        time.sleep(0.5)
        client.call(str(home), "shutdown", start=False)
    except Exception:
        pass
    emu.close()
    if saved is None:
        os.environ.pop("SFLOW_HOME", None)
    else:
        os.environ["SFLOW_HOME"] = saved


def test_refusals_and_plans_at_submission(site):
    done = site.run("sbatch", "-p", "gpu", "-N", "1", "--gpus-per-node=16", "--wrap=true")
    assert done.returncode == 1
    assert done.stderr.startswith("sbatch: error: no Mithril instance type has 16 GPUs per node")
    assert done.stderr.count("\n") == 1
    done = site.run("sbatch", "--test-only", "-p", "gpu", "-N", "2", "--gpus-per-node=h100:8", "-t", "60",
                    "--wrap=true")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("Mithril plan: 2 x 8xh100 in "), done.stderr
    assert "time limit 01:00:00: at most $" in done.stderr
    done = site.run("flow", "run", "--dry-run", "-p", "gpu", "-N", "2", "--gpus-per-node=h100:8", "-t", "60",
                    "--wrap=true")
    assert done.returncode == 0, done.stderr
    assert "Mithril plan: 2 x 8xh100 in " in done.stdout
    with site.emu.service.lock:
        assert not site.emu.market.bids  # neither places anything


def test_multi_node_job_runs_srun_across_instances(site):
    with open(os.path.join(site.work, "input.txt"), "w") as handle:
        handle.write("staged from the submit directory\n")
    job_id = site.sbatch(f"""#!/bin/bash
#SBATCH -p gpu -N 3 --ntasks-per-node=2 --gpus-per-node=h100:8 -t 10 -o out-%j.txt
#SFLOW --region={REGION}
echo "batch $SLURMD_NODENAME $SLURM_JOB_NUM_NODES $SLURM_NTASKS $SLURM_TASKS_PER_NODE"
echo "key=${{MITHRIL_API_KEY:-none}}"
cat input.txt
srun bash -c 'echo "task $SLURM_PROCID/$SLURM_NTASKS node $SLURMD_NODENAME id $SLURM_NODEID host $(hostname)"'
""")
    rec = site.wait(job_id, lambda r: r.state not in ("PENDING", "RUNNING", "COMPLETING"), what="ended")
    with open(os.path.join(site.work, f"out-{job_id}.txt")) as handle:
        out = handle.read()
    assert rec.state == "COMPLETED", out + site.log()
    assert rec.backend == "mithril" and rec.num_nodes == 3
    nodes = rec.nodelist
    (row,) = site.settled(job_id)
    rec = site.job(job_id)
    bid = site.market_bid(row.bid_id)
    with site.emu.service.lock:
        instances = [site.emu.market.instances[fid] for fid in bid.instances]
    names = sorted(i.name for i in instances)
    hosts = {i.name: i.hostname for i in instances}
    lines = out.splitlines()
    assert lines[0] == f"batch {names[0]} 3 6 2(x3)"
    assert lines[1] == "key=none"
    assert lines[2] == "staged from the submit directory"
    tasks = sorted(line.split() for line in lines if line.startswith("task "))
    assert [t[1] for t in sorted(tasks, key=lambda t: int(t[1].split("/")[0]))] == [f"{r}/6" for r in range(6)]
    for _, rank_total, _, node, _, node_id, _, host in tasks:
        rank = int(rank_total.split("/")[0])
        assert node == names[rank // 2] and node_id == str(rank // 2)
        assert host == hosts[node]  # the task ran on that instance
    assert nodes == f"{names[0].rsplit('-', 1)[0]}-[0-2]"

    # The bid is gone, and sflow's cost is the emulator's ledger.
    assert row.ended is not None and row.must_delete is False and row.outcome == "COMPLETED"
    assert bid.status == "Terminated"
    ledger = site.emu.cost_cents(row.bid_id)
    per_second = 800 * 3 / 3600  # 3 x 8xh100 at the reserve price, cents per second
    assert ledger > 0 and abs(row.cost_cents - ledger) <= per_second * 0.6, (row.cost_cents, ledger)
    assert rec.cost_cents == int(row.cost_cents + 0.5)
    sacct = site.run("sacct", "-j", str(job_id), "-n", "-P", "-o", "JobID,State,Cost,NodeList").stdout.splitlines()
    assert sacct[0] == f"{job_id}|COMPLETED|${rec.cost_cents / 100:.2f}|{nodes}"
    assert any(line.startswith(f"{job_id}.0|COMPLETED") for line in sacct), sacct
    status = site.run("flow", "status", str(job_id)).stdout
    assert f"3 x 8xh100 in {REGION}" in status and f"${rec.cost_cents / 100:.2f}" in status

    # The API key went nowhere near the job.
    for path in (os.path.join(site.home, "controller.log"), os.path.join(site.home, "jobs", str(job_id), "agent.log"),
                 os.path.join(site.home, "jobs", str(job_id), "context.json"),
                 os.path.join(site.home, "jobs", str(job_id), "remote.json")):
        with open(path) as handle:
            assert KEY not in handle.read(), path


def test_cancel_while_the_bid_is_open_deletes_it(site):
    site.demand("$30.00", 32)  # every 8xh100 in the region is taken
    try:
        job_id = site.sbatch(f"""#!/bin/sh
#SBATCH -p gpu -N 2 --gpus-per-node=h100:8 -t 5 -o /dev/null
#SFLOW --region={REGION}
echo never
""")
        rec = site.wait(job_id, lambda r: r.reason.endswith("free)"), what="waited on an open bid")
        assert rec.state == "PENDING"
        assert rec.reason == f"BidOpen: waiting for 2 x 8xh100 in {REGION} (0 free)"
        shown = site.run("squeue", "-h", "-j", str(job_id), "-o", "%R").stdout.strip()
        assert shown == f"({rec.reason})"
        (row,) = site.bids(job_id)
        assert site.market_bid(row.bid_id).status == "Open"
        assert site.run("scancel", str(job_id)).returncode == 0
        site.wait(job_id, lambda r: r.state == "CANCELLED", what="cancelled")
        (row,) = site.settled(job_id)
        assert site.market_bid(row.bid_id).status == "Terminated"
        assert row.outcome == "CANCELLED" and row.cost_cents == 0
    finally:
        site.demand("$0.00", 0)


def test_a_controller_killed_before_recording_its_bid_does_not_bid_twice(site):
    site.demand("$30.00", 32)
    try:
        job_id = site.sbatch(f"""#!/bin/sh
#SBATCH -p gpu -N 1 --gpus-per-node=h100:8 -t 5 -o /dev/null
#SFLOW --region={REGION}
true
""")
        site.wait(job_id, lambda r: r.reason.startswith("BidOpen"), what="waited on an open bid")
        (row,) = site.bids(job_id)
        with open(os.path.join(site.home, "ctl.pid")) as handle:
            os.kill(int(handle.read()), signal.SIGKILL)
        time.sleep(0.2)
        # As if it died with the create sent but its answer not yet written down.
        conn = store.open_db(site.home)
        conn.execute("UPDATE bids SET bid_id = NULL, status = 'Placing' WHERE idempotency_key = ?",
                     (row.idempotency_key,))
        conn.close()
        site.run("squeue")  # reads only: no controller yet
        site.run("scontrol", "hold", str(job_id))  # a command that starts one; holding withdraws the bid
        site.wait(job_id, lambda r: r.held, what="held")
        (again,) = site.settled(job_id)
        assert again.bid_id == row.bid_id and again.ended is not None  # found by its key, then deleted
        with site.emu.service.lock:
            placed = [b for b in site.emu.market.bids.values() if b.name == row.name]
        assert len(placed) == 1 and placed[0].status == "Terminated"
        site.run("scancel", str(job_id))
    finally:
        site.demand("$0.00", 0)


def test_preempted_job_is_requeued_and_completes(site):
    job_id = site.sbatch(f"""#!/bin/bash
#SBATCH -p gpu -N 2 --gpus-per-node=h100:8 -t 10 -o pre-%j.out
#SFLOW --region={REGION} --limit-price=$10.00
echo "start restart=${{SLURM_RESTART_COUNT:-0}}"
if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then
  trap 'echo "got TERM"; exit 143' TERM
  while :; do sleep 0.1; done
fi
srun hostname >/dev/null
echo done
""", name="pre.sh")
    out_path = os.path.join(site.work, f"pre-{job_id}.out")

    def output() -> str:
        try:
            with open(out_path) as handle:
                return handle.read()
        except OSError:
            return ""

    deadline = time.monotonic() + 40
    while "start restart=0" not in output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "start restart=0" in output(), site.log()
    site.demand("$20.00", 31)  # outbid: 31 of 32 go to others, our 2 no longer fit
    try:
        rec = site.wait(job_id, lambda r: r.restart_count == 1, what="requeued")
        assert rec.state in ("PENDING", "RUNNING")
        rec = site.wait(job_id, lambda r: r.reason.startswith("BidOpen"), what="waited for a new bid")
        assert rec.restart_count == 1
    finally:
        site.demand("$0.00", 0)
    site.wait(job_id, lambda r: r.state == "COMPLETED", what="completed")
    text = output()
    assert "got TERM" in text and "DUE TO PREEMPTION ***" in text
    assert "start restart=1" in text and text.endswith("done\n"), text
    first, second = site.settled(job_id)
    rec = site.job(job_id)
    assert (first.run, first.outcome, second.run, second.outcome) == (0, "PREEMPTED", 1, "COMPLETED")
    assert first.ended is not None and second.ended is not None
    assert site.market_bid(first.bid_id).status == site.market_bid(second.bid_id).status == "Terminated"
    assert rec.cost_cents == int(first.cost_cents + second.cost_cents + 0.5)


def test_running_job_is_adopted_after_a_crash_signalled_and_cancelled(site):
    job_id = site.sbatch(f"""#!/bin/bash
#SBATCH -N 2 --gpus-per-node=h100:8 -t 10 -o run-%j.out
#SFLOW --backend=mithril --region={REGION}
trap 'echo "got USR1"' USR1
echo started
while :; do sleep 0.1; done
""", name="run.sh")
    out_path = os.path.join(site.work, f"run-{job_id}.out")

    def output() -> str:
        try:
            with open(out_path) as handle:
                return handle.read()
        except OSError:
            return ""

    deadline = time.monotonic() + 40
    while "started" not in output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "started" in output(), site.log()
    assert site.job(job_id).partition == "debug" and site.job(job_id).backend == "mithril"
    with open(os.path.join(site.home, "ctl.pid")) as handle:
        os.kill(int(handle.read()), signal.SIGKILL)
    with open(os.path.join(site.home, "jobs", str(job_id), "pid")) as handle:
        agent = int(handle.read().split()[0])
    time.sleep(0.3)
    os.kill(agent, 0)  # the job's agent outlives its controller
    # The next command starts a controller, which adopts the agent; -b reaches the batch shell only.
    assert site.run("scancel", "-b", "-s", "USR1", str(job_id)).returncode == 0
    deadline = time.monotonic() + 20
    while "got USR1" not in output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "got USR1" in output()
    assert site.job(job_id).state == "RUNNING"
    assert site.run("scancel", str(job_id)).returncode == 0
    rec = site.wait(job_id, lambda r: r.state == "CANCELLED", what="cancelled")
    assert rec.exit_signal == signal.SIGTERM
    (row,) = site.settled(job_id)
    assert site.market_bid(row.bid_id).status == "Terminated"
    assert "CANCELLED AT" in output()
    assert row.outcome == "CANCELLED" and row.cost_cents > 0
    assert site.job(job_id).cost_cents == int(row.cost_cents + 0.5)
