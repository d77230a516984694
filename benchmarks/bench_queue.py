"""The drop-in commands' speed, every goal side by side with real SLURM in one run.

    python3 benchmarks/bench_queue.py [--quick] [--only NAME ...] [--no-slurm]

Three sides, run in turn where a figure is a latency (this machine is shared and noisy: a burst
of load then falls on all of them alike), medians of many runs:

- ``native``: the native client (native/sflow-client.c, compiled for the run from this tree),
  which has the warm controller run the command;
- ``shim``: the Python shims, as installed where no C compiler exists;
- ``slurm``: real SLURM 22.05's commands in /usr/bin, when its cluster answers ``sinfo``.

Sections (``--only`` picks some): ``latency`` (held sbatch, squeue, scancel, sacct -j),
``clients`` (submissions per second from 8 parallel clients), ``wait`` (sbatch --wait --wrap
true, submit to COMPLETED), ``execution`` (one-task jobs executed per second), ``listing``
(squeue -r and sacct over 9,000 jobs), ``scale`` (the same with 100,000 jobs in the database,
a submission at each depth, and the controller's memory). Each sflow side uses a private
SFLOW_HOME and a cluster description in slurm.conf syntax. The last lines are the goals, each
with its figures and whether it is met.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import precompile, summary  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "sflow-bench"  # every benchmark job's name: only these are cancelled afterwards
NAME_DONE = "sflow-bench-done"  # the ended jobs sacct lists
REAL = "/usr/bin"
CONF = """ClusterName=bench
FirstJobId=1
NodeName=node[1-4] CPUs=64 RealMemory=64000
PartitionName=debug Nodes=node[1-4] Default=YES MaxTime=INFINITE
"""
SECTIONS = ("latency", "clients", "wait", "execution", "listing", "scale")
SHIM_COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "sinfo", "scontrol")
ARRAY = 1000  # tasks per held array when loading a queue


class Side:
    """One set of commands: where they are and the environment they run in."""

    def __init__(self, label: str, directory: str, env: dict, home: str | None = None):
        self.label, self.directory, self.env, self.home = label, directory, env, home

    def cmd(self, name: str, *args: str) -> list[str]:
        return [os.path.join(self.directory, name), *args]

    def run(self, name: str, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(name, *args), env=self.env, capture_output=True, text=True, **kw)

    def held(self, count: int) -> list[str]:
        """``count`` held jobs' ids."""
        return [self.run("sbatch", "--parsable", "--hold", "-J", NAME, "--wrap", "true").stdout.strip().split(";")[0]
                for _ in range(count)]

    def cancel_all(self) -> None:
        self.run("scancel", "-n", NAME)
        wait_gone(self)


def sflow_env(home: str, directory: str) -> dict:
    conf = os.path.join(home, "slurm.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as handle:
            handle.write(CONF)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SFLOW_"))}
    env.update(SFLOW_HOME=home, SFLOW_CONF=conf, PATH=directory + os.pathsep + env.get("PATH", ""))
    return env


def real_slurm() -> bool:
    return os.path.exists(f"{REAL}/sbatch") and subprocess.run(
        [f"{REAL}/sinfo", "-h"], capture_output=True).returncode == 0


def native_dir() -> str:
    """The native client compiled from this tree, under each command's name."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_native", os.path.join(ROOT, "native", "__init__.py"))
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    directory = tempfile.mkdtemp(prefix="sflow-native-")
    binary = native.compile_client(os.path.join(directory, native.BINARY))
    if binary is None:
        sys.exit("no C compiler: no native client to measure")
    return native.command_dir(directory, binary)


def shim_dir() -> str:
    """The Python shims, as console scripts (what a machine without a compiler installs)."""
    directory = tempfile.mkdtemp(prefix="sflow-shims-")
    for name in SHIM_COMMANDS:
        path = os.path.join(directory, name)
        with open(path, "w") as handle:
            handle.write(f"#!{sys.executable}\nimport sys\nfrom sflow.cli.shims import {name}\nsys.exit({name}())\n")
        os.chmod(path, 0o755)
    return directory


def wait_gone(side: Side, timeout: float = 900) -> None:
    """Until no benchmark job is left in ``side``'s queue."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not side.run("squeue", "-h", "-n", NAME, "-o", "%i").stdout.strip():
            return
        time.sleep(0.1)


def in_turn(sides: list[Side], argv_of, runs: int) -> dict[str, list[float]]:
    """Seconds of ``runs`` executions on each side, in turn, after a warm-up round."""
    samples = {side.label: [] for side in sides}
    for run in range(runs + 1):
        for side in sides:
            argv = argv_of(side)
            start = time.perf_counter()
            subprocess.run(argv, env=side.env, capture_output=True)
            if run:
                samples[side.label].append(time.perf_counter() - start)
    return samples


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


class Report:
    """The figures as they come, then the goals."""

    def __init__(self, small: str, big: str):
        self.figures: dict[tuple[str, str], float] = {}
        self.small, self.big = small, big  # the listings' queue sizes, as their titles say them

    def timing(self, title: str, samples: dict[str, list[float]]) -> None:
        for label, values in samples.items():
            self.figures[(title, label)] = median_ms(values)
            print(f"{title + ', ' + label:44s}{summary(values)}", flush=True)

    def value(self, title: str, label: str, value: float, unit: str, note: str = "") -> None:
        self.figures[(title, label)] = value
        print(f"{title + ', ' + label:44s}{value:9.1f} {unit}{note}", flush=True)

    def get(self, title: str, label: str) -> float | None:
        return self.figures.get((title, label))

    def goals(self) -> None:
        print("\ngoals (sflow = the native client):")
        rows = []
        for title in ("sbatch --hold", "squeue", "scancel JOB", "sacct -j JOB"):
            rows.append((f"{title} latency <= slurm's", title, "ms", lambda s, r: s <= r))
        rows += [
            ("8 parallel clients >= 2x slurm's rate", "8 parallel clients", "/s", lambda s, r: s >= 2 * r),
        ]
        for listing in ("squeue -r", "squeue -r -o '%i %T'", "sacct", "sacct -X"):
            title = f"{listing}, {self.small}"
            rows.append((f"{title} <= 0.5x slurm's", title, "ms", lambda s, r: s <= 0.5 * r))
        for goal, title, unit, met in rows:
            mine, real = self.get(title, "native"), self.get(title, "slurm")
            if mine is None:
                continue
            verdict = "(no slurm)" if real is None else ("met" if met(mine, real) else "NOT met")
            against = "" if real is None else f" vs {real:.1f} {unit} (x{mine / real:.2f})"
            print(f"  {goal:50s}{mine:9.1f} {unit}{against}  {verdict}")
        absolute = [("one-task jobs executed >= 1,000/s", "execution", "/s", lambda v: v >= 1000),
                    ("sbatch --wait --wrap true <= 50 ms", "sbatch --wait --wrap true", "ms", lambda v: v <= 50)]
        for goal, title, unit, met in absolute:
            mine = self.get(title, "native")
            if mine is not None:
                print(f"  {goal:50s}{mine:9.1f} {unit}  {'met' if met(mine) else 'NOT met'}")
        for title in ("squeue", "sacct -j JOB"):
            small, big = self.get(f"{title}, {self.small}", "native"), self.get(f"{title}, {self.big}", "native")
            if small is not None and big is not None:
                print(f"  {title + f' at {self.big} <= 2x':50s}{big:9.1f} ms vs {small:.1f} ms "
                      f"(x{big / small:.2f})  {'met' if big <= 2 * small else 'NOT met'}")
        depths = [(label, value) for (title, label), value in self.figures.items() if title == "sbatch --hold at depth"]
        if depths:
            print(f"  {'sbatch --hold at any queue depth':50s}" + ", ".join(f"{v:.1f} ms at {d}" for d, v in depths))
        rss = [(label, value) for (title, label), value in self.figures.items() if title == "controller RSS"]
        if rss:
            print(f"  {'controller RSS':50s}" + ", ".join(f"{v:.0f} MiB at {d}" for d, v in rss))


# ------------------------------------------------------------------ sections


def bench_latency(sides: list[Side], runs: int, report: Report) -> None:
    known = {side.label: side.held(1)[0] for side in sides}  # sacct -j's job
    victims = {side.label: side.held(runs + 1) for side in sides}
    forms = [("sbatch --hold", lambda side: side.cmd("sbatch", "--hold", "-J", NAME, "--wrap", "true")),
             ("squeue", lambda side: side.cmd("squeue")),
             ("sacct -j JOB", lambda side: side.cmd("sacct", "-j", known[side.label])),
             ("scancel JOB", lambda side: side.cmd("scancel", victims[side.label].pop()))]
    for title, argv_of in forms:
        report.timing(title, in_turn(sides, argv_of, runs))
    for side in sides:
        side.cancel_all()


def bench_clients(sides: list[Side], report: Report, clients: int = 8, per_client: int = 50) -> None:
    for side in sides:
        def client(_):
            for _ in range(per_client):
                side.run("sbatch", "--hold", "-J", NAME, "--wrap", "true")

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        rate = clients * per_client / (time.perf_counter() - start)
        report.value("8 parallel clients", side.label, rate, "submissions/s", f" ({clients} clients x {per_client})")
        side.cancel_all()


def bench_wait(sides: list[Side], runs: int, report: Report) -> None:
    # Real SLURM takes seconds per run (its scheduler and slurmd): fewer runs there.
    for side in sides:
        count = min(runs, 5) if side.label == "slurm" else runs
        report.timing("sbatch --wait --wrap true", in_turn([side], lambda s: s.cmd(
            "sbatch", "--wait", "-J", NAME, "-o", "/dev/null", "--wrap", "true"), count))


def bench_execution(sides: list[Side], count: int, report: Report) -> None:
    for side in sides:
        if side.label == "shim":
            continue  # the same controller runs the jobs whichever client submitted them
        # Real SLURM's 4 nodes have 8 CPUs in all and slurmd per job: a smaller array tells its rate.
        jobs = max(50, count // 10) if side.label == "slurm" else count
        start = time.perf_counter()
        side.run("sbatch", f"--array=0-{jobs - 1}", "-o", "/dev/null", "-J", NAME, "--wrap", "true")
        wait_gone(side)
        report.value("execution", side.label, jobs / (time.perf_counter() - start), "jobs/s", f" ({jobs} one-task jobs)")


def load_held(side: Side, count: int) -> None:
    """``count`` held array tasks in ``side``'s queue, by arrays of ARRAY."""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: side.run("sbatch", "--hold", f"--array=0-{ARRAY - 1}", "-J", NAME, "--wrap", "true"),
                      range(count // ARRAY)))


def load_cancelled(side: Side, count: int) -> None:
    """``count`` ended jobs in ``side``'s accounting: jobs pending behind one that holds every node,
    then cancelled. Real SLURM's few nodes would take half an hour to run as many; a job cancelled
    while eligible is a whole record all the same (one cancelled while held is left out of
    sacct's window by SLURM, so these are not held)."""
    wide = ("-N", "4", "--exclusive", "-J", NAME_DONE, "-o", "/dev/null")
    side.run("sbatch", *wide, "--wrap", "sleep 3600")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: [side.run("sbatch", *wide, "--wrap", "true") for _ in range(count // 8)], range(8)))
    side.run("scancel", "-n", NAME_DONE)


def jobs_title(count: int) -> str:
    return f"{count:,} jobs"


def bench_listing(sides: list[Side], runs: int, count: int, report: Report) -> None:
    """squeue over ``count`` pending array tasks, then sacct over ``count`` ended jobs. The native
    side's queue is left loaded for ``bench_scale``."""
    listed = [side for side in sides if side.label != "shim"]
    size = jobs_title(count)
    for side in listed:
        side.cancel_all()
        load_held(side, count)
        rows = side.run("squeue", "-h", "-r", "-n", NAME, "-o", "%i").stdout.count("\n")
        print(f"{side.label}: {rows} pending array tasks listed", flush=True)
    for title, argv_of in [(f"squeue -r, {size}", lambda s: s.cmd("squeue", "-r")),
                           (f"squeue -r -o '%i %T', {size}", lambda s: s.cmd("squeue", "-r", "-o", "%i %T")),
                           (f"squeue, {size}", lambda s: s.cmd("squeue"))]:
        report.timing(title, in_turn(listed, argv_of, runs))
    slurm = next((side for side in listed if side.label == "slurm"), None)
    if slurm is not None:
        slurm.cancel_all()  # its MaxJobCount (10,000) counts the ended jobs still held in memory too
    # sacct's window starts here on both sides: the same jobs listed, whatever else ran today.
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    for side in listed:
        load_cancelled(side, count)
        deadline = time.time() + 120  # real SLURM's accounting arrives a little late
        while True:
            rows = side.run("sacct", "-X", "-n", "-S", since, "-o", "JobID").stdout.count("\n")
            if rows >= count or time.time() > deadline:
                break
            time.sleep(1)
        print(f"{side.label}: {rows} jobs in sacct -X -S {since}", flush=True)
    known = {side.label: side.held(1)[0] for side in listed}
    report.timing(f"sacct, {size}", in_turn(listed, lambda s: s.cmd("sacct", "-S", since), max(5, runs // 3)))
    report.timing(f"sacct -X, {size}", in_turn(listed, lambda s: s.cmd("sacct", "-X", "-S", since), max(5, runs // 3)))
    report.timing(f"sacct -j JOB, {size}", in_turn(listed, lambda s: s.cmd("sacct", "-j", known[s.label]), runs))
    depth = in_turn(listed, lambda s: s.cmd("sbatch", "--hold", "-J", NAME, "--wrap", "true"), runs)
    report.timing(f"sbatch --hold, {size}", depth)
    report.figures[("sbatch --hold at depth", size)] = median_ms(depth["native"])
    native = next((side for side in listed if side.label == "native"), None)
    if native is not None:
        report.value("controller RSS", size, controller_rss(native.home), "MiB")
    if slurm is not None:
        slurm.cancel_all()


def controller_rss(home: str) -> float:
    """The controller's resident memory, MiB."""
    from sflow.queue import client

    pid = client.call(home, "ping", start=False).get("pid")
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return float("nan")


def add_finished(home: str, count: int) -> None:
    """``count`` COMPLETED jobs, each with its batch step, written straight into the stopped
    controller's store: copies of one job that really ran, ended today before MinJobAge."""
    from sflow.queue import client, store

    pid = client.call(home, "ping", start=False).get("pid")
    client.call(home, "shutdown", start=False)
    deadline = time.time() + 60
    while time.time() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    template = store.read_jobs(home, "state = 'COMPLETED'")[0]
    step = next(s for s in store.read_steps(home, [template.job_id]) if s.step_id == "batch")
    conn = store.open_db(home)
    first = int(store.get_meta(conn, "next_job_id"))
    now = time.time()
    conn.execute("BEGIN")
    for number in range(count):
        job_id = first + number
        end = now - 600 - (count - number) * 0.01
        store.insert_job(conn, dataclasses.replace(
            template, job_id=job_id, array_job_id=None, array_task_id=None, array_task_str=None,
            submit_time=end - 2, eligible_time=end - 2, start_time=end - 1, end_time=end), seq=job_id)
        store.save_step(conn, dataclasses.replace(step, job_id=job_id, start_time=end - 1, end_time=end))
    store.set_meta(conn, "next_job_id", first + count)
    conn.execute("COMMIT")
    conn.close()


def bench_scale(sides: list[Side], runs: int, report: Report, loaded: int, total: int) -> None:
    """The native side only (real SLURM stops at MaxJobCount, 10,000): the queue ``bench_listing``
    left (``loaded`` pending tasks, ``loaded`` ended jobs) grown to ``total`` jobs by finished ones."""
    native = next(side for side in sides if side.label == "native")
    native.run("sbatch", "--wait", "-J", NAME_DONE, "-o", "/dev/null", "--wrap", "true")  # one that really ran
    start = time.perf_counter()
    add_finished(native.home, total - 2 * loaded)
    print(f"native: {total - 2 * loaded} finished jobs added in {time.perf_counter() - start:.1f} s", flush=True)
    native.run("squeue", "-h")  # starts the controller again
    known = native.held(1)[0]
    size = jobs_title(total)
    report.timing(f"squeue, {size}", in_turn([native], lambda s: s.cmd("squeue"), runs))
    report.timing(f"squeue -r, {size}", in_turn([native], lambda s: s.cmd("squeue", "-r"), runs))
    report.timing(f"sacct -j JOB, {size}", in_turn([native], lambda s: s.cmd("sacct", "-j", known), runs))
    report.figures[("sbatch --hold at depth", size)] = median_ms(in_turn([native], lambda s: s.cmd(
        "sbatch", "--hold", "-J", NAME, "--wrap", "true"), runs)["native"])
    print(f"{'sbatch --hold, ' + size + ', native':44s}{report.figures[('sbatch --hold at depth', size)]:9.1f} ms")
    report.value("controller RSS", size, controller_rss(native.home), "MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer runs and jobs")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="these sections only")
    parser.add_argument("--no-slurm", action="store_true", help="leave real SLURM out even where it runs")
    args = parser.parse_args()
    wanted = set(args.only or SECTIONS)
    precompile()
    runs = 10 if args.quick else 30
    home = tempfile.mkdtemp(prefix="sflow-bench-")
    native, shims = native_dir(), shim_dir()
    sides = [Side("native", native, sflow_env(home, native), home), Side("shim", shims, sflow_env(home, shims), home)]
    if not args.no_slurm and real_slurm():
        sides.append(Side("slurm", REAL, dict(os.environ)))
    small, big = (2000, 20_000) if args.quick else (9000, 100_000)
    report = Report(jobs_title(small), jobs_title(big))
    try:
        for side in sides:
            side.run("sbatch", "--hold", "-J", NAME, "--wrap", "true")  # starts the controller
            side.cancel_all()
        if "native" in [side.label for side in sides]:
            report.figures[("sbatch --hold at depth", "0 jobs")] = median_ms(in_turn(sides[:1], lambda s: s.cmd(
                "sbatch", "--hold", "-J", NAME, "--wrap", "true"), runs)["native"])
            report.value("controller RSS", "0 jobs", controller_rss(home), "MiB")
            sides[0].cancel_all()
        if "latency" in wanted:
            bench_latency(sides, runs, report)
        if "clients" in wanted:
            bench_clients(sides, report)
        if "wait" in wanted:
            bench_wait(sides, runs, report)
        if "execution" in wanted:
            bench_execution(sides, 200 if args.quick else 1000, report)
        if wanted & {"listing", "scale"}:
            bench_listing(sides, runs, small, report)
        if "scale" in wanted:
            bench_scale(sides, runs, report, small, big)
        report.goals()
    finally:
        for side in sides:
            side.run("scancel", "-n", NAME)
            side.run("scancel", "-n", NAME_DONE)
        from sflow.queue import client

        try:
            client.call(home, "shutdown", start=False)
        except Exception:
            pass
        for directory in (home, native, shims):
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
