"""Shim start-up and parse speed.

    python3 benchmarks/bench_language.py [--runs N]

Reports medians: a bare ``python3 -c pass``, ``sbatch --help`` and an
option-error path through the sflow shim (and through real SLURM's sbatch when
/usr/bin/sbatch exists), and the in-process parse time per example script.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import precompile, summary, time_interleaved  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    precompile()

    sbatch = shutil.which("sbatch")
    if sbatch is None or not open(sbatch, "rb").read(2) == b"#!":
        sbatch = None
    print("== start-up (wall clock per call; the commands run in turn, so load falls on all alike)")
    shim = [sys.executable, "-c", "from sflow.cli.shims import sbatch; sbatch()"]
    cases = (("sbatch --help", ["--help"]), ("sbatch --bogus (error)", ["--bogus"]))
    commands = [[sys.executable, "-c", "pass"]] + [shim + extra for _, extra in cases]
    if os.path.exists("/usr/bin/sbatch"):
        commands += [["/usr/bin/sbatch", *extra] for _, extra in cases]
    results = time_interleaved(commands, args.runs)
    base = results[0]
    print(f"python3 -c pass             {summary(base)}")
    for i, (label, _) in enumerate(cases):
        samples = results[1 + i]
        ratio = statistics.median(samples) / statistics.median(base)
        delta = (statistics.median(samples) - statistics.median(base)) * 1000
        print(f"sflow {label:22s}{summary(samples)}  (+{delta:.1f} ms, x{ratio:.2f} of python3 -c pass)")
        if len(results) > 1 + len(cases):
            print(f"slurm {label:22s}{summary(results[1 + len(cases) + i])}")

    print("== parse time per example script (in process, warm)")
    from sflow.slurm.request import parse_sbatch

    ident = dict(user="u", uid=1000, gid=1000, host="h")
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "slurm", "*.slurm"))):
        parse_sbatch([path], env={}, cwd=ROOT, **ident)
        samples = []
        for _ in range(200):
            start = time.perf_counter()
            parse_sbatch([path], env={}, cwd=ROOT, **ident)
            samples.append(time.perf_counter() - start)
        print(f"{os.path.basename(path):24s}{summary(samples)}")


if __name__ == "__main__":
    main()
