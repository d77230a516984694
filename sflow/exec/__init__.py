"""The executor: batch steps, srun steps and the SLURM environment they run in.

Its public names can be imported from here. Each loads its own module when first asked
for (``__getattr__``): every drop-in command imports this package, and must not pay for
the modules it does not use.
"""

from __future__ import annotations

from importlib import import_module

_HOMES = {
    "JobContext": "sflow.exec.env",
    "StepContext": "sflow.exec.env",
    "batch_environment": "sflow.exec.env",
    "task_environment": "sflow.exec.env",
    "job_context": "sflow.exec.context",
    "BatchProcess": "sflow.exec.batch",
    "launch_batch": "sflow.exec.batch",
    "output_paths": "sflow.exec.batch",
    "start_batch": "sflow.exec.batch",
    "start_remote_batch": "sflow.exec.remote_batch",
    "StepRequest": "sflow.exec.srun",
    "StepRunner": "sflow.exec.srun",
    "load_context": "sflow.exec.srun",
    "plan_step": "sflow.exec.srun",
    "block_layout": "sflow.exec.layout",
    "ranks_by_node": "sflow.exec.layout",
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
