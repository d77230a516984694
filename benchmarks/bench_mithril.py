"""From allocation to the batch script's first line, on a 4-node emulated Mithril cluster.

    python3 benchmarks/bench_mithril.py [--jobs 7] [--nodes 4] [--no-fanout]

The emulator runs in this process (fast auction, 0.3 s start-up, real SSH
hosts on loopback); each job goes through the real shims and controller.
Per job, from the moment the last instance of its bid is STATUS_RUNNING (the
emulator's billing start):

- seen: until the controller starts the job (the worker's poll, one
  scheduling turn): ``SFLOW_MITHRIL_POLL`` bounds it;
- agent: from the job's start to the script's first line: the agent's
  interpreter start, SSH connections to every node, staging the submit
  directory and the job's files, the environment, the remote wrapper;
- total.

Then the ``srun`` fan-out figure: benchmarks/bench_fanout.py (64 emulated
nodes, sflow against pdsh), run as is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import precompile  # noqa: E402

CONF = """\
ClusterName=bench
NodeName=node1 CPUs=2 RealMemory=2000
PartitionName=debug Nodes=node1 Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Backend=mithril MaxTime=60 State=UP
"""
KEY = "fkey_bench_value_0123456789"


def measure(jobs: int, nodes: int) -> list[dict]:
    from sflow.mithril import sshhost
    from sflow.mithril.emulator import start_emulator
    from sflow.queue import client, store

    root = tempfile.mkdtemp(prefix="bench-mithril-")
    home, work = os.path.join(root, "home"), os.path.join(root, "work")
    os.makedirs(home)
    os.makedirs(work)
    with open(os.path.join(work, "data.txt"), "w") as handle:
        handle.write("x" * 100_000)  # something to stage
    conf = os.path.join(root, "slurm.conf")
    with open(conf, "w") as handle:
        handle.write(CONF)
    os.environ["SFLOW_HOME"] = home  # the emulated instances keep their homes under it
    emu = start_emulator(tick=0.2, startup=0.3, notice=5.0, api_key=KEY, host_factory=sshhost.host_factory)
    env = {**os.environ, "SFLOW_HOME": home, "SFLOW_CONF": conf, "SFLOW_CONFIG": os.path.join(root, "none.toml"),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
           "MITHRIL_API_URL": emu.url, "MITHRIL_API_KEY": KEY, "SFLOW_MITHRIL_POLL": "0.2",
           "SFLOW_REMOTE_POLL": "0.2"}
    for name in [n for n in env if n.startswith(("SLURM_", "SBATCH_"))]:
        del env[name]
    script = os.path.join(work, "job.sh")
    with open(script, "w") as handle:
        handle.write(f"#!/bin/bash\n#SBATCH -p gpu -N {nodes} --gpus-per-node=h100:8 -t 5 -o out-%j.txt\n"
                     "#SFLOW --region=us-central1-a\n"
                     "python3 -c 'import time; print(repr(time.time()))'\n")
    results = []
    try:
        for n in range(jobs + 1):  # the first one warms the controller and the market up
            done = subprocess.run(["sbatch", "--parsable", script], cwd=work, env=env, capture_output=True,
                                  text=True)
            if done.returncode:
                raise SystemExit(done.stderr)
            job_id = int(done.stdout.strip())
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rec = store.read_jobs(home, "job_id = ?", (job_id,))[0]
                if rec.state not in ("PENDING", "RUNNING", "COMPLETING"):
                    break
                time.sleep(0.05)
            with open(os.path.join(work, f"out-{job_id}.txt")) as handle:
                first_line = float(handle.read().split()[0])
            (row,) = store.read_bids(home, job_id)
            ledger = emu.ledger()[row.bid_id]["instances"]
            running = max(ivs[0]["start"] for ivs in ledger.values())
            if n:
                results.append({"seen": rec.start_time - running, "agent": first_line - rec.start_time,
                                "total": first_line - running})
    finally:
        try:
            client.call(home, "shutdown", start=False)
        except Exception:
            pass
        emu.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=7)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--no-fanout", action="store_true")
    args = parser.parse_args()
    precompile()
    results = measure(args.jobs, args.nodes)
    print(f"allocation -> first line of the batch script, {args.nodes} emulated nodes, {len(results)} jobs "
          "(medians; SFLOW_MITHRIL_POLL=0.2):")
    for part, what in (("seen", "instances running -> job started by the controller"),
                       ("agent", "job started -> first line (agent, SSH, staging, env, start)"),
                       ("total", "instances running -> first line")):
        values = sorted(r[part] for r in results)
        print(f"  {what:60s} {statistics.median(values) * 1000:8.0f} ms  "
              f"(min {values[0] * 1000:.0f}, max {values[-1] * 1000:.0f})")
    if not args.no_fanout:
        print("srun fan-out (benchmarks/bench_fanout.py, 64 emulated nodes vs pdsh):", flush=True)
        fanout = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_fanout.py")
        subprocess.run([sys.executable, fanout, "--hosts", "64", "--runs", "5"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
