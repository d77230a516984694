"""What the queue stores and every view (squeue, sacct, scontrol, flow) reads, and the
nodes a job was given, as backends hand them out and the executor runs on them.

Plain dataclasses, cheap to import: the read-only commands build these straight
from SQLite rows without touching pydantic. Times are epoch seconds (float) or
None; time limits are minutes with ``INFINITE`` for UNLIMITED and None for the
partition default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

INFINITE = 0xFFFFFFFE  # SLURM's UNLIMITED time limit, in minutes

# On a node reached over SSH, under its user's home: sflow's own files, and the lease the job's
# agent renews while the controller lives (a backend's watcher on the node reads its age).
NODE_STATE_DIR = ".sflow"
NODE_LEASE = f"{NODE_STATE_DIR}/lease"

# SLURM's job states, in its own words (squeue -t accepts these and their short forms).
JOB_STATES = {
    "PENDING": "PD", "RUNNING": "R", "SUSPENDED": "S", "COMPLETING": "CG",
    "COMPLETED": "CD", "CANCELLED": "CA", "FAILED": "F", "TIMEOUT": "TO",
    "NODE_FAIL": "NF", "PREEMPTED": "PR", "BOOT_FAIL": "BF", "DEADLINE": "DL",
    "OUT_OF_MEMORY": "OOM", "REQUEUED": "RQ", "REQUEUE_HOLD": "RH",
    "RESV_DEL_HOLD": "RD", "SPECIAL_EXIT": "SE", "REVOKED": "RV", "CONFIGURING": "CF",
    "RESIZING": "RS", "SIGNALING": "SI", "STAGE_OUT": "SO", "STOPPED": "ST",
}
FINISHED_STATES = frozenset({
    "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "REVOKED",
})


@dataclass
class JobRecord:
    """One job as the controller keeps it (an array's pending remainder is one record too)."""

    job_id: int  # unique id of this record (an array task's own id once it starts)
    name: str
    user: str
    uid: int
    gid: int
    partition: str
    state: str  # a key of JOB_STATES
    reason: str  # "None", "Resources", "Priority", "Dependency", "JobHeldUser", ...
    submit_time: float
    work_dir: str
    command: str  # script path, or the name sbatch shows for --wrap/stdin
    array_job_id: int | None = None  # the array's first id (%A); None if not an array
    array_task_id: int | None = None  # this task's index (%a); None for the pending remainder
    array_task_str: str | None = None  # the pending remainder's indices, as squeue shows them: "3-5%2"
    array_max_tasks: int | None = None  # the %N throttle
    eligible_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    time_limit: int | None = None  # minutes; INFINITE; None = partition default
    time_min: int | None = None  # --time-min, minutes: the limit may be cut down to it
    deadline: float | None = None  # --deadline
    priority: int = 0
    num_nodes: int = 1
    num_cpus: int = 1
    num_tasks: int = 1
    cpus_per_task: int = 1
    min_memory_mb: int | None = None
    nodelist: str = ""  # compressed hostlist of the allocation, "" while pending
    exit_code: int = 0  # the batch script's exit status
    exit_signal: int = 0  # the signal that ended it, 0 if none
    dependency: str = ""  # as scontrol shows it
    account: str = ""
    qos: str = "normal"
    stdout: str = ""  # expanded path
    stderr: str = ""
    stdin: str = "/dev/null"
    restart_count: int = 0
    requeue: bool = True
    held: bool = False
    comment: str = ""
    gres: str = ""  # TRES per node as squeue's %b shows it, e.g. "gres:gpu:2"
    tres_per: str = ""  # scontrol's CpusPerTres=... TresPerTask=... lines, newline-joined, in its order
    tres_gpus: int = 0  # the GPUs the job's TRES counts (gres/gpu=N)
    min_tmp_disk_mb: int = 0  # --tmp
    derived_exit_code: int = 0
    cancelled_by: int | None = None  # uid, for sacct's "CANCELLED by UID"
    backend: str = "local"
    cost_cents: float | None = None  # what the allocation cost, when a cloud billed it (fractional cents)
    limit_price: str | None = None


# A job's values in JobRecord's field order, as the store packs them: long listings read these
# tuples and never build a record per job.
JOB_FIELDS = tuple(f.name for f in fields(JobRecord))


def job_row(job: JobRecord) -> tuple:
    """``job`` as a row of JOB_FIELDS."""
    return tuple(getattr(job, name) for name in JOB_FIELDS)


@dataclass
class StepRecord:
    """One step of a job: "batch", "extern" or a number for srun steps."""

    job_id: int
    step_id: str  # "batch", "extern", "0", "1", ...
    name: str
    state: str
    start_time: float | None = None
    end_time: float | None = None
    nodelist: str = ""
    num_nodes: int = 1
    num_tasks: int = 1
    num_cpus: int = 1
    exit_code: int = 0
    exit_signal: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AllocatedNode:
    """One node of a job's allocation, as the backend gave it and the job sees it."""

    name: str
    cpus: int  # CPUs of this node given to the job
    mem_mb: int = 0  # memory reserved on this node; 0 when the job asked for none
    gpu_indices: tuple[int, ...] = ()  # which of the node's GPUs (CUDA_VISIBLE_DEVICES)
    root_dir: str = ""  # the node's working root (local: $SFLOW_HOME/nodes/<name>)
    address: str | None = None  # where to reach it (SSH host); None: this machine
    tasks: int = 1  # the job's tasks placed here (SLURM's block distribution)
    instance: str | None = None  # a cloud instance's id: names its pinned SSH host key

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict) -> "AllocatedNode":
        return cls(**{**data, "gpu_indices": tuple(data.get("gpu_indices", ()))})
