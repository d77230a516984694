"""srun's checks of -m and --gpu-bind, and what srun -v says of the tasks and GPUs it binds.

Pure text in, text (or SLURM's refusal) out.
"""

from __future__ import annotations

from sflow.errors import SlurmError
from sflow.slurm.indexset import IndexSet

_LEVELS = ("*", "block", "cyclic", "fcyclic")


def check_distribution(raw: str, plane_env: str | None = None) -> tuple[str, int | None]:
    """``-m`` as SLURM_DISTRIBUTION will show it (``*`` filled in), and the plane size."""
    bad = SlurmError("Invalid --distribution specification", 255)
    text, _, pack = raw.partition(",")
    if _ and pack not in ("pack", "nopack"):
        raise bad
    if text in ("pack", "nopack") and not _:
        return text, None
    first, *levels = text.split(":")
    if first.startswith("plane"):
        size_text = first[len("plane="):] if first.startswith("plane=") else (plane_env or "")
        if (first != "plane" and not first.startswith("plane=")) or not size_text.isdecimal() or int(size_text) < 1:
            raise SlurmError("Invalid plane size or size not specified\nInvalid --distribution specification", 255)
        if levels:
            raise bad
        return "plane" + (f",{pack}" if pack else ""), int(size_text)
    if first not in ("*", "block", "cyclic", "arbitrary") or len(levels) > 2:
        raise bad
    if any(level not in _LEVELS for level in levels):
        raise bad
    node = "block" if first == "*" else first
    parts = [node]
    if levels:
        socket = "cyclic" if levels[0] == "*" else levels[0]
        parts.append(socket)
        if len(levels) > 1:
            parts.append(socket if levels[1] == "*" else levels[1])
    return ":".join(parts) + (f",{pack}" if pack else ""), None


_BIND_TYPES = ("closest", "none")
_BIND_LISTS = {"map_gpu": "0123456789", "mask_gpu": "0123456789abcdefABCDEFxX"}


def check_gpu_bind(raw: str | None) -> None:
    """``--gpu-bind``: [verbose,]closest|none|map_gpu:<list>|mask_gpu:<list>|per_task:<n>|single:<n>."""
    text = raw or ""
    rest = text[len("verbose,"):] if text.startswith("verbose,") else text
    kind, _, arg = rest.partition(":")
    ok = rest in _BIND_TYPES  # "verbose" alone names no binding: refused
    if kind in _BIND_LISTS and arg:
        for item in arg.split(","):
            value, _, repeat = item.partition("*")
            allowed = _BIND_LISTS[kind]
            for char in value + repeat:
                if char not in allowed:
                    raise SlurmError(f"Failed to validate {item}, offending character is {char}\n"
                                     f"Invalid --gpu-bind argument: gpu:{text}", 255)
            if not value:
                raise SlurmError(f"Invalid --gpu-bind argument: gpu:{text}", 255)
        ok = True
    elif kind in ("per_task", "single"):
        ok = arg.isdecimal() and int(arg) > 0
    if not ok:
        raise SlurmError(f"Invalid --gpu-bind argument: gpu:{text}", 255)


def gpu_bind_note(bound: tuple[int, ...], step_gpus: tuple[int, ...]) -> str:
    """--gpu-bind=verbose: the line a task prints of the GPUs bound to it, as bitmaps over the node's GPUs."""
    def mask(gpus: tuple[int, ...]) -> str:
        return f"0x{sum(1 << g for g in gpus):X}"

    listed = ",".join(map(str, bound))
    return (f"gpu-bind: usable_gres={mask(bound)}; bit_alloc={mask(step_gpus)}; local_inx=0; "
            f"global_list={listed}; local_list={listed}")


def task_list(ranks: list[int]) -> str:
    """``0`` for one task, ``[0-2]`` or ``[0,2]`` for more, as srun's launch lines show them."""
    text = IndexSet.of(ranks).ranges_text()
    return text if len(ranks) == 1 else f"[{text}]"


__all__ = ["check_distribution", "check_gpu_bind", "gpu_bind_note", "task_list"]
