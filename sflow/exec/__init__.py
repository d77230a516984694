"""The executor: batch steps, srun steps and the SLURM environment they run in.

Public names load lazily (``sflow._surface``).
"""

from __future__ import annotations

from sflow._surface import lazy_surface

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

__getattr__, __dir__ = lazy_surface(__name__, _HOMES, globals())
