"""``seff JOBID``: a finished job's efficiency, in the report layout of SLURM's contrib seff."""

from __future__ import annotations

from sflow.records import JobRecord, StepRecord
from sflow.views.step_usage import job_cpu


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def _kib(kb: float) -> str:
    """KiB as seff shows memory: two decimals in MB, GB or TB."""
    value, unit = kb / 1024, "MB"
    for bigger in ("GB", "TB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.2f} {unit}"


def report(job: JobRecord, steps: list[StepRecord], cluster: str, group: str, now: float,
           node_memory_mb: int = 0) -> str:
    end = job.end_time or now
    wall = max(0, int(end - job.start_time)) if job.start_time else 0
    user, system = job_cpu(steps)
    cpu_used = user + system
    core_wall = wall * job.num_cpus
    # A step's memory is its tasks' high-water marks together; the job's, its largest step's.
    used_kb = max((sum((s.extra.get("usage") or {}).get("task_max_rss") or [0]) for s in steps), default=0)
    per_node_mb = job.min_memory_mb or node_memory_mb
    alloc_kb = per_node_mb * 1024 * job.num_nodes
    lines = [f"Job ID: {job.job_id}"]
    if job.array_job_id is not None and job.array_task_id is not None:
        lines.append(f"Array Job ID: {job.array_job_id}_{job.array_task_id}")
    lines += [f"Cluster: {cluster}", f"User/Group: {job.user}/{group}",
              f"State: {job.state} (exit code {job.exit_code})"]
    if job.num_nodes > 1:
        lines += [f"Nodes: {job.num_nodes}", f"Cores per node: {job.num_cpus // job.num_nodes}"]
    else:
        lines.append(f"Cores: {job.num_cpus}")
    lines += [f"CPU Utilized: {_clock(cpu_used)}",
              f"CPU Efficiency: {100 * cpu_used / core_wall if core_wall else 0:.2f}% of {_clock(core_wall)} core-walltime",
              f"Job Wall-clock time: {_clock(wall)}",
              f"Memory Utilized: {_kib(used_kb)}"]
    efficiency = f"Memory Efficiency: {100 * used_kb / alloc_kb if alloc_kb else 0:.2f}% of {_kib(alloc_kb)}"
    if alloc_kb:
        efficiency += f" ({_kib(per_node_mb * 1024)}/node)"
    lines.append(efficiency)
    if job.state in ("RUNNING", "COMPLETING"):
        lines.append("WARNING: Efficiency statistics may be misleading for RUNNING jobs.")
    return "".join(line + "\n" for line in lines)
