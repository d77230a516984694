"""``flow run``, ``flow ssh`` and ``flow grab`` on Mithril: the real commands against the in-process emulator.

As in test_backend_e2e, the emulator runs here with a fast auction and a real
SSH server per instance on loopback; the commands run as installed, the
controller is started by the first of them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import asyncssh
import pytest

from mithril_harness import REGION, site_fixture, slurm_conf
from sflow.mithril import startup
from sflow.queue import store
from sflow.mithril.bids import BidRow
from sflow.records import JobRecord
from sflow.views.costs import billed

KEY = "fkey_flow_5ecret_value_7"
CONF = slurm_conf("flowtest")


site = site_fixture("flow-mithril", CONF, KEY, drop=("SFLOW_BACKEND", "SFLOW_MITHRIL_INSTALL"),
                    stdin=subprocess.DEVNULL)


def _flow_lines(stderr: str) -> list[str]:
    return [line[len("flow: "):] for line in stderr.splitlines() if line.startswith("flow: ")]


def _read_until(proc: subprocess.Popen, pattern: str, timeout: float = 40.0) -> list[str]:
    """stderr lines up to the first matching ``pattern`` (the process keeps running)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"never saw {pattern!r}; stderr so far:\n" + "\n".join(lines))


# ---------------------------------------------------------------- the startup script


def test_the_startup_script_fits_mithrils_limit_and_quotes_every_value(tmp_path):
    default = startup.script()
    assert len(default) <= startup.MAX_CHARS
    assert f"SFLOW_PACKAGE=sflow=={startup.version()}\n" in default
    nasty = "https://example.com/sflow.whl?a=1&b='$(touch pwned)'"
    text = startup.script(nasty)
    assert f"SFLOW_PACKAGE={shlex.quote(nasty)}\n" in text and len(text) <= startup.MAX_CHARS
    path = tmp_path / "startup.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    # The assignment alone, run by bash, gives back the value unchanged: it is quoted once.
    line = next(line for line in text.splitlines() if line.startswith("SFLOW_PACKAGE="))
    echoed = subprocess.run(["bash", "-c", f"{line}\nprintf %s \"$SFLOW_PACKAGE\""], capture_output=True, text=True,
                            cwd=tmp_path)
    assert echoed.stdout == nasty and not (tmp_path / "pwned").exists()
    for word in ("none", "false", ""):
        assert startup.script(word) is None


# ---------------------------------------------------------------- flow run


def test_bid_news_follows_the_records():
    from sflow.cli.follow import BidNews

    said: list[str] = []
    news = BidNews(7, say=said.append)
    row = BidRow("k1", 7, 0, "Placing", {"quantity": 2, "type_name": "8xh100", "region": REGION, "gpus": 8},
                 2400, created=1000.0)
    job = JobRecord(7, "j", "u", 0, 0, "gpu", "PENDING", "BidPlacing", 0.0, "/", "j", backend="mithril")
    news.update(job, [row])
    row.status, row.bid_id = "Open", "bid_1"
    for reason in ("BidOpen: limit $24.00/hr below spot $30.00/hr", "BidOpen: limit $24.00/hr below spot $30.00/hr",
                   "BidOpen: waiting for the next auction"):
        job.reason = reason
        news.update(job, [row])
    row.status, row.price_cents = "Allocated", 1600
    job.reason = "BidAllocated: instances starting"
    news.update(job, [row])
    job.state = "RUNNING"
    news.update(job, [row])
    assert said == [f"Bidding for 2 x 8xh100 in {REGION} at up to $24.00/instance-hr ($3.00/GPU-hr)...",
                    "limit $24.00/hr below spot $30.00/hr", "waiting for the next auction",
                    "Won at $16.00/instance-hr ($2.00/GPU-hr); starting 2 instances..."]


def test_flow_run_shows_the_bidding_the_output_and_the_cost(site):
    site.demand(("$30.00", 32))  # every 8xh100 in the region is taken: the bid waits
    script = os.path.join(site.work, "train.sh")
    with open(script, "w") as handle:
        handle.write(f"#!/bin/bash\n#SBATCH -p gpu -N 2 --gpus-per-node=h100:8 -t 10\n"
                     f"#SFLOW --region={REGION} --limit-price=$24.00\necho hello from $SLURMD_NODENAME\nexit 3\n")
    proc = site.start("flow", "run", "train.sh")
    try:
        seen = _read_until(proc, r"\(0 free\)")
        site.demand(("$16.00", 31))  # room for us; the losing $16.00 bid sets the price
        out, err = proc.communicate(timeout=60)
    finally:
        site.demand()
        if proc.poll() is None:
            proc.kill()
    lines = _flow_lines("\n".join(seen) + "\n" + err)
    assert proc.returncode == 3, err + site.log()
    job_id = int(re.match(r"submitted batch job (\d+)", lines[0]).group(1))
    assert lines[1] == f"Bidding for 2 x 8xh100 in {REGION} at up to $24.00/instance-hr ($3.00/GPU-hr)..."
    assert "Won at $16.00/instance-hr ($2.00/GPU-hr); starting 2 instances..." in lines, lines
    won = lines.index("Won at $16.00/instance-hr ($2.00/GPU-hr); starting 2 instances...")
    # Between the bid and the win: the market as the job's reason told it, each change once.
    assert f"waiting for 2 x 8xh100 in {REGION} (0 free)" in lines[2:won], lines
    assert all(line.startswith("waiting for ") for line in lines[2:won]), lines
    running = next(i for i, line in enumerate(lines) if line.startswith(f"job {job_id} running on "))
    assert won < running, lines
    assert lines[-2] == f"job {job_id} FAILED (exit code 3)"
    (row,) = store.read_bids(site.home, job_id)
    cost = re.fullmatch(r"cost (\$\d+\.\d{2,6}) for 2 instances x (\d+):(\d\d):(\d\d)", lines[-1])
    assert cost, lines[-1]
    assert cost.group(1) == billed(site.job(job_id).cost_cents) and row.ended is not None
    assert out.startswith("hello from sflow-")
    # The bid carried the startup script that starts its dead-man switch, then installs sflow; the
    # emulator only keeps it.
    carried = site.market_bid(row.bid_id).launch_specification["startup_script"]
    assert carried.startswith(startup.HEADER + "# sflow: this bid deletes itself")
    assert carried.endswith(startup.script()[len(startup.HEADER):])
    # A finished job has no nodes to log in to.
    gone = site.run("flow", "ssh", str(job_id), "--", "hostname")
    assert (gone.returncode, gone.stderr) == (1, f"flow ssh: error: job {job_id} is FAILED; its nodes are gone\n")
    unknown = site.run("flow", "ssh", "99999")
    assert (unknown.returncode, unknown.stderr) == (1, "flow ssh: error: no job 99999\n")


# ---------------------------------------------------------------- flow grab and flow ssh


def _hostnames(site, job_id: int) -> list[str]:
    """What ``hostname`` prints on each of the job's nodes, in node order (nodes go by instance name)."""
    (row,) = [r for r in store.read_bids(site.home, job_id) if r.ended is None]
    with site.emu.service.lock:
        instances = [site.emu.market.instances[fid] for fid in site.market_bid(row.bid_id).instances]
    return [i.hostname for i in sorted(instances, key=lambda i: i.name)]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="flow ssh runs the system ssh: install openssh-client")
def test_flow_grab_holds_nodes_that_flow_ssh_reaches_until_released(site):
    proc = site.start("flow", "grab", "--backend", "mithril", "-t", "10", "2", "h100")
    try:
        lines = _flow_lines("\n".join(_read_until(proc, r"release it with Ctrl-C")))
        job_id = int(re.match(r"submitted allocation job (\d+) for 2 nodes", lines[0]).group(1))
        assert lines[1].startswith("Bidding for 2 x 8xh100 in ")
        assert any(line.startswith("Won at ") for line in lines)
        assert f"  flow ssh {job_id} --node 1    # " in "\n".join(lines)
        assert site.job(job_id).state == "RUNNING"
        names = _hostnames(site, job_id)

        one = site.run("flow", "ssh", str(job_id), "--node", "1", "--", "hostname")
        assert (one.returncode, one.stdout) == (0, names[1] + "\n"), one.stderr
        zero = site.run("flow", "ssh", str(job_id), "--", "hostname")
        assert (zero.returncode, zero.stdout) == (0, names[0] + "\n"), zero.stderr
        bad = site.run("flow", "ssh", str(job_id), "--node", "2")
        assert (bad.returncode, bad.stderr) == (
            1, f"flow ssh: error: job {job_id} has 2 nodes (nodes 0-1); there is no node 2\n")
        # The step the instructions show runs across the allocation from here.
        step = subprocess.run(["srun", "-N", "2", "hostname"], cwd=site.work, capture_output=True, text=True,
                              env={**site.env, "SLURM_JOB_ID": str(job_id)}, timeout=60, stdin=subprocess.DEVNULL)
        assert (step.returncode, sorted(step.stdout.split())) == (0, sorted(names)), step.stderr

        # A host key other than the pinned one is refused, never learned.
        pins = os.path.join(site.home, "known_hosts")
        with open(pins) as handle:
            kept = handle.read()
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
        changed = "\n".join(f"{line.split(' ', 1)[0]} {other}" if line.strip() else line
                            for line in kept.splitlines()) + "\n"
        try:
            with open(pins, "w") as handle:
                handle.write(changed)
            refused = site.run("flow", "ssh", str(job_id), "--node", "1", "--", "hostname")
        finally:
            with open(pins, "w") as handle:
                handle.write(kept)
        assert refused.returncode == 255 and refused.stdout == ""
        assert "Host key verification failed" in refused.stderr, refused.stderr

        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    end = _flow_lines(err)
    assert end[0] == f"releasing job {job_id}"
    assert re.fullmatch(r"released \(COMPLETED\); bid deleted; cost \$\d+\.\d{2,6} for 2 instances x \d+:\d\d:\d\d",
                        end[1]), end
    (row,) = store.read_bids(site.home, job_id)
    assert row.ended is not None and site.market_bid(row.bid_id).status == "Terminated"


def test_flow_grab_and_flow_ssh_on_the_local_backend(site):
    done = site.run("flow", "grab", "1", "--", "sh", "-c",
                    'echo "$SLURM_JOB_ID $SLURM_JOB_NODELIST"; flow ssh "$SLURM_JOB_ID" -- pwd')
    assert done.returncode == 0, done.stderr
    job_id, nodes = done.stdout.splitlines()[0].split()
    assert nodes == "node1"
    root = os.path.join(site.home, "nodes", "node1")
    assert done.stdout.splitlines()[1] == os.path.realpath(root)
    assert (f"flow: job {job_id} runs on the local backend: node node1 is this machine; running in its working "
            f"root {root}") in done.stderr
    assert site.job(int(job_id)).state == "COMPLETED"
