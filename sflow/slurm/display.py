"""How SLURM displays parts of a job request (scontrol, squeue, sacct share these), and the
``-v`` listing of the options sbatch and srun were given."""

from __future__ import annotations

RULE = "-------------------- --------------------\n"

# How srun -v shows a value when it differs from the text given.
_FLAG_WORD = "set"


def _shown(long: str, raw: str | None, count: int) -> str:
    # deferred: values costs ~8 ms at squeue's start, which needs only format_memory_mb from here
    from sflow.slurm.values import format_timelimit_scontrol, parse_time_limit

    if long == "verbose":
        return str(count)
    if raw is None:
        return {"exclusive": "exclusive", "kill-on-bad-exit": "1", "immediate": "1"}.get(long, _FLAG_WORD)
    if long in ("time", "time-min"):
        return format_timelimit_scontrol(parse_time_limit(raw))
    if long == "gres":
        return ",".join(part if part.startswith("gres:") else f"gres:{part}" for part in raw.split(","))
    if long in ("input", "output", "error") and raw.lower() == "none":
        return "/dev/null"
    return raw


def defined_options(given: list[tuple[str, str | None]], verbose: int, command: str = "srun") -> str:
    """``-v``'s listing of the options the command was given, by name, last value winning."""
    values: dict[str, str | None] = {}
    for long, raw in given:
        values[long] = raw
    lines = [f"{command}: defined options\n", f"{command}: {RULE}"]
    for long in sorted(values):
        lines.append(f"{command}: {long:<20}: {_shown(long, values[long], verbose)}\n")
    lines += [f"{command}: {RULE}", f"{command}: end of defined options\n"]
    return "".join(lines)




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
