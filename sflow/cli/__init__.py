"""The commands: ``flow`` and the drop-in SLURM commands (``sflow.cli.shims``).

Its public names can be imported from here. Each loads its own module when first asked
for (``__getattr__``): every drop-in command imports this package, and must not pay for
the modules it does not use.
"""

from __future__ import annotations

from importlib import import_module

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


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
