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
    """TresPerNode / TresPerJob / TresPerTask as scontrol shows them (only those set)."""
    out: dict[str, str] = {}
    per_node = [format_gres(g.name, g.type, g.count) for g in request.gres]
    if request.gpus_per_node:
        per_node.insert(0, format_gres("gpu", request.gpu_type, request.gpus_per_node))
    if per_node:
        out["TresPerNode"] = ",".join(per_node)
    if request.gpus:
        out["TresPerJob"] = format_gres("gpu", request.gpu_type, request.gpus)
    if request.gpus_per_task:
        out["TresPerTask"] = format_gres("gpu", request.gpu_type, request.gpus_per_task)
    return out


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
