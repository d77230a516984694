"""A step's measured usage (``sflow.exec.usage``) as sacct, sstat and seff show it."""

from __future__ import annotations

from sflow.records import StepRecord
from sflow.slurm.values import format_elapsed_sacct

# The usage fields of a step; the job's line shows only its CPU times, summed over its steps.
STEP_USAGE = frozenset({"MaxRSS", "AveRSS", "MaxVMSize", "AveVMSize", "MaxRSSNode", "MaxRSSTask",
                        "MaxVMSizeNode", "MaxVMSizeTask", "TotalCPU", "UserCPU", "SystemCPU", "AveCPU",
                        "MinCPU", "MinCPUNode", "MinCPUTask"})


def usage_value(name: str, used: dict | None, ntasks: int = 1, live: bool = False) -> str:
    """A usage field of one step from what was measured (``sflow.exec.usage``); sstat (``live``) shows
    the current mean for AveRSS and AveVMSize, sacct the tasks' mean high-water mark."""
    if used is None:
        return ""
    from sflow.exec.usage import format_cpu, format_kb  # deferred: ~0.45 ms at sacct's and seff's start

    user, system = used.get("user_cpu", 0.0), used.get("sys_cpu", 0.0)
    per_task = (user + system) / max(1, ntasks)
    values = {
        "MaxRSS": lambda: format_kb(used.get("max_rss")),
        "AveRSS": lambda: format_kb(used.get("cur_rss" if live else "ave_rss")),
        "MaxVMSize": lambda: format_kb(used.get("max_vmsize")),
        "AveVMSize": lambda: format_kb(used.get("cur_vmsize" if live else "ave_vmsize")),
        "MaxRSSNode": lambda: used.get("max_rss_node", ""),
        "MaxVMSizeNode": lambda: used.get("max_vmsize_node", ""),
        "MinCPUNode": lambda: used.get("max_rss_node", ""),
        "MaxRSSTask": lambda: str(used.get("max_rss_task", 0)),
        "MaxVMSizeTask": lambda: str(used.get("max_vmsize_task", 0)),
        "MinCPUTask": lambda: "0",
        "TotalCPU": lambda: format_cpu(user + system),
        "UserCPU": lambda: format_cpu(user),
        "SystemCPU": lambda: format_cpu(system),
        # Per task, whole seconds, as SLURM's AveCPU and MinCPU (sflow keeps the step's total).
        "AveCPU": lambda: format_elapsed_sacct(int(per_task)),
        "MinCPU": lambda: format_elapsed_sacct(int(per_task)),
    }
    return values[name]()


def job_cpu(steps: list[StepRecord]) -> tuple[float, float]:
    """(user, system) seconds of a job: its steps' together."""
    user = system = 0.0
    for step in steps:
        used = step.extra.get("usage") or {}
        user += used.get("user_cpu", 0.0)
        system += used.get("sys_cpu", 0.0)
    return user, system
