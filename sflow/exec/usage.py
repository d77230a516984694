"""What a step's processes used: memory sampled from /proc, CPU times from the kernel.

SLURM's jobacct_gather/linux reads each task's processes from /proc every
JobAcctGatherFrequency seconds and sums their RSS and virtual size; sflow does
the same. CPU times are exact: a waited-for process's rusage (wait4, or the
shell's ``times`` for the batch step) holds its own and its waited-for
descendants' user and system time.

A step's usage is a small dict, kept in the step's ``extra`` and in files under
the job's directory while it runs (so ``sstat`` sees it and a restarted
controller continues it):

    max_rss, max_vmsize: KiB, the largest sum over one task's processes seen
    ave_rss, ave_vmsize: KiB, the tasks' mean of those largest sums
    cur_rss, cur_vmsize: KiB, the tasks' mean at the last sample (sstat's AveRSS)
    max_rss_task, max_vmsize_task: the task that had the largest
    max_rss_node, max_vmsize_node: where the largest was seen
    user_cpu, sys_cpu: seconds (float)
"""

from __future__ import annotations

import json
import os
import re

DEFAULT_FREQUENCY = 30  # SLURM's JobAcctGatherFrequency default, seconds
_TASK_FREQ = re.compile(r"(?:^|,)\s*(?:task=)?(\d+)\s*(?:,|$)")


def frequency(text: str | None, default: int = DEFAULT_FREQUENCY) -> int:
    """Seconds between samples from ``JobAcctGatherFrequency`` or ``--acctg-freq`` (``30``, ``task=5``,
    ``task=5,energy=0``); 0 turns sampling off, as in SLURM."""
    if not text:
        return default
    found = _TASK_FREQ.search(text.strip())
    return int(found.group(1)) if found else default


def children_map() -> dict[int, list[int]]:
    """Each process's children, from one pass over /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                ppid = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    return children


def tree(root: int, children: dict[int, list[int]], skip=lambda pid: False) -> list[int]:
    """``root`` and its descendants, leaving out any subtree whose top ``skip`` names."""
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if skip(pid):
            continue
        found.append(pid)
        stack += children.get(pid, [])
    return found


def memory_kb(pids) -> tuple[int, int]:
    """(RSS, virtual size) in KiB summed over ``pids``: what jobacct_gather/linux adds up per task."""
    rss = vsize = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith(b"VmSize:"):
                        vsize += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return rss, vsize


class Gauge:
    """One step's memory high-water marks, task by task, and its CPU times."""

    def __init__(self, ntasks: int = 1, nodes: list[str] | None = None, saved: dict | None = None):
        saved = saved or {}
        self.nodes = list(saved.get("task_nodes") or nodes or [""] * ntasks)  # each task's node
        self.max_rss = list(saved.get("task_max_rss") or [0] * ntasks)
        self.max_vmsize = list(saved.get("task_max_vmsize") or [0] * ntasks)
        self.cur_rss = list(saved.get("task_cur_rss") or [0] * ntasks)
        self.cur_vmsize = list(saved.get("task_cur_vmsize") or [0] * ntasks)
        self.user_cpu = float(saved.get("user_cpu", 0.0))
        self.sys_cpu = float(saved.get("sys_cpu", 0.0))

    def sample(self, task: int, pids) -> None:
        rss, vsize = memory_kb(pids)
        if not pids:
            return
        self.cur_rss[task], self.cur_vmsize[task] = rss, vsize
        self.max_rss[task] = max(self.max_rss[task], rss)
        self.max_vmsize[task] = max(self.max_vmsize[task], vsize)

    def ended(self, task: int) -> None:
        """A task ended: nothing of it is resident any more (sstat's current values)."""
        self.cur_rss[task] = self.cur_vmsize[task] = 0

    def add_cpu(self, user: float, system: float) -> None:
        self.user_cpu += max(0.0, user)
        self.sys_cpu += max(0.0, system)

    def to_dict(self) -> dict:
        n = max(1, len(self.max_rss))
        top_rss = max(range(len(self.max_rss)), key=self.max_rss.__getitem__, default=0)
        top_vm = max(range(len(self.max_vmsize)), key=self.max_vmsize.__getitem__, default=0)
        return {
            "task_nodes": self.nodes,
            "max_rss_node": self.nodes[top_rss] if top_rss < len(self.nodes) else "",
            "max_vmsize_node": self.nodes[top_vm] if top_vm < len(self.nodes) else "",
            "user_cpu": round(self.user_cpu, 6), "sys_cpu": round(self.sys_cpu, 6),
            "max_rss": max(self.max_rss, default=0), "max_rss_task": top_rss,
            "max_vmsize": max(self.max_vmsize, default=0), "max_vmsize_task": top_vm,
            "ave_rss": sum(self.max_rss) // n, "ave_vmsize": sum(self.max_vmsize) // n,
            "cur_rss": sum(self.cur_rss) // n, "cur_vmsize": sum(self.cur_vmsize) // n,
            "task_max_rss": self.max_rss, "task_max_vmsize": self.max_vmsize,
            "task_cur_rss": self.cur_rss, "task_cur_vmsize": self.cur_vmsize,
        }


def usage_path(home: str, job_id: int, step_id) -> str:
    return os.path.join(home, "jobs", str(job_id), f"usage-{step_id}.json")


def save(path: str, usage: dict) -> None:
    """Atomically: a reader (sstat, a restarted controller) sees the last sample or the one before."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as handle:
            json.dump(usage, handle)
        os.replace(tmp, path)
    except OSError:  # a full disk loses a sample, never the step
        try:
            os.unlink(tmp)
        except OSError:
            pass


def load(path: str) -> dict | None:
    try:
        with open(path) as handle:
            usage = json.load(handle)
    except (OSError, ValueError):
        return None
    return usage if isinstance(usage, dict) else None


_TIMES = re.compile(r"(\d+)m([\d.]+)s")


def parse_times(text: str) -> tuple[float, float] | None:
    """(user, system) seconds of the waited-for children from the output of the shell's ``times``."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    found = _TIMES.findall(lines[1])
    if len(found) < 2:
        return None
    return tuple(int(m) * 60 + float(s) for m, s in found[:2])  # type: ignore[return-value]


# ------------------------------------------------------------------ how sacct and sstat print them


def format_kb(kb: int | None) -> str:
    """Memory as sacct prints it: KiB with a unit, moved up only while it divides exactly (``318492K``,
    ``2M``), ``0`` for none."""
    if not kb:
        return "0"
    units = "KMGTP"
    unit = 0
    while kb % 1024 == 0 and unit < len(units) - 1:
        kb //= 1024
        unit += 1
    return f"{kb}{units[unit]}"


def format_cpu(seconds: float | None) -> str:
    """TotalCPU, UserCPU and SystemCPU: ``MM:SS.mmm`` under an hour, ``HH:MM:SS`` and ``D-HH:MM:SS`` above."""
    seconds = max(0.0, seconds or 0.0)
    whole = int(seconds)
    millis = int(round((seconds - whole) * 1000))
    if millis == 1000:
        whole, millis = whole + 1, 0
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}.{millis:03d}"
