"""The commands: ``flow`` and the drop-in SLURM commands (``sflow.cli.shims``).

Public names load lazily (``sflow._surface``).
"""

from __future__ import annotations

from sflow._surface import lazy_surface

_HOMES = {
    "sacct": "sflow.cli.shims",
    "salloc": "sflow.cli.shims",
    "sbatch": "sflow.cli.shims",
    "scancel": "sflow.cli.shims",
    "scontrol": "sflow.cli.shims",
    "seff": "sflow.cli.shims",
    "sinfo": "sflow.cli.shims",
    "squeue": "sflow.cli.shims",
    "srun": "sflow.cli.shims",
    "sstat": "sflow.cli.shims",
}

__all__ = sorted(_HOMES)

__getattr__, __dir__ = lazy_surface(__name__, _HOMES, globals())
