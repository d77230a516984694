"""A person's view of a parsed job request (``flow run --dry-run``)."""

from __future__ import annotations

from tabulate import tabulate

from sflow.records import INFINITE
from sflow.slurm.model import JobRequest
from sflow.slurm.values import format_timelimit_scontrol


def _time(minutes: int | None) -> str:
    if minutes is None:
        return "partition default"
    if minutes == INFINITE:
        return "UNLIMITED"
    return format_timelimit_scontrol(minutes)


def describe_request(req: JobRequest) -> str:
    nodes = str(req.min_nodes) + (f"-{req.max_nodes}" if req.max_nodes and req.max_nodes != req.min_nodes else "")
    gpus = []
    if req.gpus:
        gpus.append(f"{req.gpus} in total")
    if req.gpus_per_node:
        gpus.append(f"{req.gpus_per_node} per node")
    if req.gpus_per_task:
        gpus.append(f"{req.gpus_per_task} per task")
    gpus += [f"gres {g.name}:{g.type + ':' if g.type else ''}{g.count}" for g in req.gres]
    rows = [
        ("job name", req.job_name),
        ("script", req.script_path or "(inline)"),
        ("partition", req.partition or "(default)"),
        ("nodes", nodes),
        ("tasks", req.ntasks if req.ntasks_per_node is None else f"{req.ntasks} ({req.ntasks_per_node} per node)"),
        ("cpus per task", req.cpus_per_task),
        ("memory", f"{req.mem_per_node_mb} MB per node" if req.mem_per_node_mb is not None
         else f"{req.mem_per_cpu_mb} MB per cpu" if req.mem_per_cpu_mb is not None else "(default)"),
        ("gpus", ", ".join(gpus) + (f" of type {req.gpu_type}" if req.gpu_type else "") if gpus else "none"),
        ("time limit", _time(req.time_limit)),
        ("array", req.array.text if req.array else "no"),
        ("dependency", req.dependency.text if req.dependency else "none"),
        ("output", req.stdout_pattern),
        ("error", req.stderr_pattern),
        ("working dir", req.work_dir),
        ("hold", "yes" if req.hold else "no"),
    ]
    cloud = req.cloud
    if cloud.backend or cloud.limit_price or cloud.instance_type or cloud.region:
        rows += [
            ("backend", cloud.backend or "local"),
            ("capacity", cloud.capacity),
            ("limit price", cloud.limit_price or "(default)"),
            ("instance type", cloud.instance_type or "(chosen from the request)"),
            ("region", cloud.region or "(chosen from availability)"),
        ]
    return tabulate(rows, tablefmt="plain")
