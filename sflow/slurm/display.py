"""How SLURM displays parts of a job request (scontrol, squeue, sacct share these)."""

from __future__ import annotations


def format_memory_mb(mb: int) -> str:
    """``4096`` -> ``4G``, ``512`` -> ``512M``, as scontrol's MinMemoryNode shows sizes."""
    for suffix, factor in (("T", 1024 * 1024), ("G", 1024)):
        if mb and mb % factor == 0:
            return f"{mb // factor}{suffix}"
    return f"{mb}M"


def format_gres(name: str, gtype: str | None, count: int) -> str:
    return f"gres:{name}:{gtype}:{count}" if gtype else f"gres:{name}:{count}"


def tres_per(request) -> dict[str, str]:
    """CpusPerTres, MemPerTres, TresBind, TresFreq and TresPer{Job,Node,Socket,Task} as scontrol
    shows them, in its order (only those set)."""
    out: dict[str, str] = {}
    if request.cpus_per_gpu:
        out["CpusPerTres"] = f"gres:gpu:{request.cpus_per_gpu}"
    if request.mem_per_gpu_mb is not None:
        out["MemPerTres"] = f"gres:gpu:{request.mem_per_gpu_mb}"
    if request.gpu_bind:
        out["TresBind"] = f"gpu:{request.gpu_bind}"
    if request.gpu_freq:
        out["TresFreq"] = f"gpu:{request.gpu_freq}"
    if request.gpus:
        out["TresPerJob"] = format_gres("gpu", request.gpu_type, request.gpus)
    per_node = [format_gres(g.name, g.type, g.count) for g in request.gres]
    if request.gpus_per_node:
        per_node.insert(0, format_gres("gpu", request.gpu_type, request.gpus_per_node))
    if per_node:
        out["TresPerNode"] = ",".join(per_node)
    if request.gpus_per_socket:
        out["TresPerSocket"] = f"gres:gpu:{request.gpus_per_socket}"
    if request.gpus_per_task:
        out["TresPerTask"] = format_gres("gpu", request.gpu_type, request.gpus_per_task)
    return out


def requested_gpus(request) -> int:
    """The GPUs a job counts in its TRES: the job's total, else per node (or per socket, one
    socket a node as sflow's nodes have) times the nodes, else per task times the tasks."""
    if request.gpus:
        return request.gpus
    per_node = request.gpus_per_node or sum(g.count for g in request.gres if g.name == "gpu")
    if not per_node and (request.gpus_per_socket or "").isdecimal():
        per_node = int(request.gpus_per_socket)
    if per_node:
        return per_node * request.min_nodes
    return (request.gpus_per_task or 0) * request.ntasks


def format_dependency(dependency, states: dict[str, str] | None = None) -> str:
    """``afterok:12(unfulfilled),afterany:13(unfulfilled)``; ``?`` joins any-of lists.

    ``states`` maps an item's text (``afterok:12``) to its state word when known.
    """
    if dependency is None:
        return "(null)"
    parts = []
    for item in dependency.items:
        if item.kind == "singleton":
            text = "singleton"
        else:
            text = f"{item.kind}:{item.job_id}" + (f"+{item.delay_minutes}" if item.delay_minutes else "")
        parts.append(f"{text}({(states or {}).get(text, 'unfulfilled')})")
    return ("?" if dependency.any_of else ",").join(parts)
