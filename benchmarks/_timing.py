"""Shared timing helpers: medians of many runs, because this machine is noisy."""

from __future__ import annotations

import os
import statistics
import subprocess
import time


def precompile() -> None:
    """Byte-compile the package once, as a regular install does: an editable install under
    PYTHONDONTWRITEBYTECODE would otherwise recompile every module on every call."""
    import compileall

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    compileall.compile_dir(os.path.join(root, "sflow"), quiet=1)


def time_command(argv: list[str], runs: int = 30, env: dict | None = None, stdin: bytes | None = None) -> list[float]:
    """Wall-clock seconds of ``runs`` executions of argv (after one warm-up)."""
    full_env = {**os.environ, **(env or {})}
    subprocess.run(argv, env=full_env, input=stdin, capture_output=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=full_env, input=stdin, capture_output=True)
        samples.append(time.perf_counter() - start)
    return samples


def time_interleaved(commands: list[list[str]], runs: int = 30, env: dict | None = None) -> list[list[float]]:
    """Like time_command for several commands, run in turn (A B C A B C ...): on a shared,
    noisy machine a burst of load then falls on all of them alike, so their difference holds."""
    full_env = {**os.environ, **(env or {})}
    for argv in commands:
        subprocess.run(argv, env=full_env, capture_output=True)
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for argv, mine in zip(commands, samples):
            start = time.perf_counter()
            subprocess.run(argv, env=full_env, capture_output=True)
            mine.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q1, med, q3 = statistics.quantiles(ms, n=4) if len(ms) > 1 else (ms[0],) * 3
    return f"median {med:7.2f} ms  (IQR {q1:.2f}-{q3:.2f}, n={len(ms)})"
