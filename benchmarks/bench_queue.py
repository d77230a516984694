"""The local cluster's speed, side by side with real SLURM where it is installed.

    python3 benchmarks/bench_queue.py [--quick]

Medians of many runs (this machine is shared and noisy):
- sbatch latency (one submission, controller already running) against bare ``python3 -c pass``;
- squeue with 10,000 jobs queued;
- submissions per second from 8 parallel clients;
- submit-to-completion of ``sbatch --wrap true``;
- jobs executed per second.

``--native`` compares instead, side by side and run in turn, the Python shims, the native
client (native/sflow-client.c, compiled for the run) and real SLURM: a held sbatch, squeue,
scancel and sacct -j, and submissions per second from 8 parallel clients.
Each sflow figure uses a private SFLOW_HOME and a cluster description in slurm.conf syntax.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import precompile, summary, time_command, time_interleaved  # noqa: E402

BIN = os.path.dirname(sys.executable)
NAME = "sflow-bench"  # every benchmark job's name: only these are cancelled afterwards
REAL = "/usr/bin"
CONF = """ClusterName=bench
FirstJobId=1
NodeName=node[1-4] CPUs=64 RealMemory=64000
PartitionName=debug Nodes=node[1-4] Default=YES MaxTime=INFINITE
"""


def sflow_env(home: str) -> dict:
    conf = os.path.join(home, "slurm.conf")
    with open(conf, "w") as handle:
        handle.write(CONF)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env.update(SFLOW_HOME=home, SFLOW_CONF=conf, PATH=BIN + os.pathsep + env.get("PATH", ""))
    return env


def real_slurm() -> bool:
    return os.path.exists(f"{REAL}/sbatch") and subprocess.run(
        [f"{REAL}/sinfo", "-h"], capture_output=True).returncode == 0


def wait_idle(env: dict, squeue: str, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run([squeue, "-h", "-n", NAME, "-o", "%i"], env=env, capture_output=True,
                             text=True).stdout
        if not out.strip():
            return
        time.sleep(0.2)


def bench_latency(env, runs, label, sbatch):
    """A held submission, in turn with a bare ``python3 -c pass`` (returned: both medians)."""
    base, samples = time_interleaved([[sys.executable, "-c", "pass"], [sbatch, "--hold", "-J", NAME, "--wrap", "true"]],
                                     runs, env=env)
    print(f"{label:34s}{summary(samples)}")
    return statistics.median(samples), statistics.median(base)


def bench_squeue(env, runs, label, squeue, sbatch, count):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: subprocess.run([sbatch, "--hold", "--array=0-999", "-J", NAME, "--wrap", "true"],
                                               env=env, capture_output=True), range(count // 1000)))
    # A real SLURM stops at MaxJobCount (10,000 by default, other users' jobs included): say what was listed.
    rows = subprocess.run([squeue, "-h", "-r"], env=env, capture_output=True, text=True).stdout.count("\n")
    samples = time_command([squeue, "-r"], runs, env=env)
    print(f"{label + f', {rows} jobs':34s}{summary(samples)}")
    return statistics.median(samples)


def bench_throughput(env, label, sbatch, clients=8, per_client=50):
    def client(_):
        for _ in range(per_client):
            subprocess.run([sbatch, "--hold", "-J", NAME, "--wrap", "true"], env=env, capture_output=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    rate = clients * per_client / (time.perf_counter() - start)
    print(f"{label:34s}{rate:8.0f} submissions/s ({clients} clients x {per_client})")
    return rate


def bench_roundtrip(env, runs, label, sbatch):
    samples = time_command([sbatch, "--wait", "-J", NAME, "--wrap", "true"], runs, env=env)
    print(f"{label:34s}{summary(samples)}")


def bench_execution(env, label, sbatch, squeue, count):
    start = time.perf_counter()
    subprocess.run([sbatch, f"--array=0-{count - 1}", "-o", "/dev/null", "-J", NAME, "--wrap", "true"], env=env, capture_output=True)
    wait_idle(env, squeue)
    rate = count / (time.perf_counter() - start)
    print(f"{label:34s}{rate:8.0f} jobs/s ({count} one-task jobs)")


def _native_dir() -> str:
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("_native", os.path.join(root, "native", "__init__.py"))
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    directory = tempfile.mkdtemp(prefix="sflow-native-")
    binary = native.compile_client(os.path.join(directory, native.BINARY))
    if binary is None:
        sys.exit("no C compiler: nothing to compare")
    return native.command_dir(directory, binary)


def _held(env, sbatch: str, count: int) -> list[str]:
    """``count`` held jobs to cancel one by one."""
    return [subprocess.run([sbatch, "--parsable", "--hold", "-J", NAME, "--wrap", "true"], env=env,
                           capture_output=True, text=True).stdout.strip().split(";")[0] for _ in range(count)]


def bench_native(runs: int) -> None:
    home = tempfile.mkdtemp(prefix="sflow-bench-")
    env = sflow_env(home)
    native = _native_dir()
    sides = [("python shim", BIN), ("native", native)] + ([("slurm", REAL)] if real_slurm() else [])
    try:
        for _, directory in sides:
            subprocess.run([os.path.join(directory, "sbatch"), "--hold", "-J", NAME, "--wrap", "true"], env=env,
                           capture_output=True)  # starts the controller; gives sacct -j a job
        known = {label: _held(env, os.path.join(d, "sbatch"), 1)[0] for label, d in sides}
        victims = {label: _held(env, os.path.join(d, "sbatch"), runs + 1) for label, d in sides}
        forms = [("sbatch --hold", lambda d, label: ["sbatch", "--hold", "-J", NAME, "--wrap", "true"]),
                 ("squeue", lambda d, label: ["squeue"]),
                 ("sacct -j", lambda d, label: ["sacct", "-j", known[label]]),
                 ("scancel JOB", lambda d, label: ["scancel", victims[label].pop()])]
        for title, argv_of in forms:
            samples = {label: [] for label, _ in sides}
            for run in range(runs + 1):  # the first round warms up
                for label, directory in sides:
                    argv = argv_of(directory, label)
                    argv[0] = os.path.join(directory, argv[0])
                    start = time.perf_counter()
                    subprocess.run(argv, env=env, capture_output=True)
                    if run:
                        samples[label].append(time.perf_counter() - start)
            for label, _ in sides:
                print(f"{title + ', ' + label:34s}{summary(samples[label])}")
        for label, directory in sides:
            bench_throughput(env, f"{label}, 8 parallel clients", os.path.join(directory, "sbatch"))
    finally:
        if real_slurm():
            subprocess.run([f"{REAL}/scancel", "-n", NAME], capture_output=True)
        from sflow.queue import client

        try:
            client.call(home, "shutdown", start=False)
        except Exception:
            pass
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(native, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer runs and jobs")
    parser.add_argument("--native", action="store_true", help="the native client beside the shims and SLURM")
    args = parser.parse_args()
    precompile()
    runs = 10 if args.quick else 30
    if args.native:
        bench_native(runs)
        return
    home = tempfile.mkdtemp(prefix="sflow-bench-")
    env = sflow_env(home)
    sb, sq = os.path.join(BIN, "sbatch"), os.path.join(BIN, "squeue")
    try:
        subprocess.run([sb, "--hold", "-J", NAME, "--wrap", "true"], env=env, capture_output=True)  # start the controller
        latency, base = bench_latency(env, runs, "sflow sbatch (held)", sb)
        print(f"{'':34s}= python3 -c pass ({base * 1000:.1f} ms, run in turn) + {(latency - base) * 1000:.1f} ms")
        if real_slurm():
            bench_latency(dict(os.environ), runs, "slurm sbatch (held)", f"{REAL}/sbatch")
            subprocess.run([f"{REAL}/scancel", "-n", NAME])
        bench_throughput(env, "sflow, 8 parallel clients", sb)
        if real_slurm():
            bench_throughput(dict(os.environ), "slurm, 8 parallel clients", f"{REAL}/sbatch")
            subprocess.run([f"{REAL}/scancel", "-n", NAME])
        subprocess.run([os.path.join(BIN, "scancel"), "-n", NAME], env=env)
        bench_roundtrip(env, runs, "sflow sbatch --wait --wrap true", sb)
        if real_slurm():
            bench_roundtrip(dict(os.environ), min(runs, 5), "slurm sbatch --wait --wrap true", f"{REAL}/sbatch")
        bench_execution(env, "sflow execution rate", sb, sq, 200 if args.quick else 1000)
        count = 2000 if args.quick else 10000
        sflow_squeue = bench_squeue(env, runs, "sflow squeue -r", sq, sb, count)
        if real_slurm():
            real = bench_squeue(dict(os.environ), runs, "slurm squeue -r", f"{REAL}/squeue",
                                f"{REAL}/sbatch", count)
            print(f"{'':34s}sflow/slurm = {sflow_squeue / real:.2f}")
            subprocess.run([f"{REAL}/scancel", "-n", NAME])
    finally:
        subprocess.run([os.path.join(BIN, "scancel"), "-n", NAME], env=env, capture_output=True)
        from sflow.queue import client

        try:
            client.call(home, "shutdown", start=False)
        except Exception:
            pass
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
