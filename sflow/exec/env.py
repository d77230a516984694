"""The SLURM environment of batch scripts and srun tasks: one table.

Each row names a variable, where it appears (the batch step, srun tasks, or
both) and how its value derives from the job (and step, and task). A row whose
getter returns None is not set, exactly as SLURM leaves e.g.
``SLURM_CPUS_PER_TASK`` out when ``-c`` was not given. ``compat/env_vars.toml``
documents the same variables for people; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable

from sflow.exec.layout import ranks_by_node
from sflow.records import AllocatedNode
from sflow.slurm.values import compress_counts, compress_hostlist


@dataclass
class JobContext:
    """What the executor knows of a started job: plain data, stored as JSON beside it."""

    job_id: int
    job_name: str
    user: str
    uid: int
    gid: int
    partition: str
    account: str
    qos: str
    cluster_name: str
    submit_dir: str
    submit_host: str
    work_dir: str
    nodes: list[AllocatedNode]
    tasks_per_node: list[int]
    ntasks: int
    ntasks_given: bool = False
    ntasks_per_node: int | None = None
    cpus_per_task: int = 1
    cpus_per_task_given: bool = False
    mem_per_node_mb: int | None = None
    mem_per_cpu_mb: int | None = None
    gpus: int | None = None
    gpus_per_node: int | None = None
    gpus_per_task: int | None = None
    gpu_type: str | None = None
    overcommit: bool = False
    array_job_id: int | None = None
    array_task_id: int | None = None
    array_task_count: int | None = None
    array_task_min: int | None = None
    array_task_max: int | None = None
    array_task_step: int | None = None
    restart_count: int = 0
    dependency: str = ""
    export: str | None = None  # SLURM_EXPORT_ENV, when --export was given
    time_limit_minutes: int | None = None
    start_time: float | None = None
    conf_path: str = ""
    controller: str = "127.0.0.1:6817"  # the controller's address and port, as SLURM_WORKING_CLUSTER names it
    hosts_file: str = ""  # mounted over /etc/hosts for each process on a node ("": node names left alone)
    extra_env: dict[str, str] = field(default_factory=dict)
    withheld_env: tuple[str, ...] = ()  # prefixes of variables that stay on this machine (Allocation's)

    @property
    def nodelist(self) -> str:
        return compress_hostlist([n.name for n in self.nodes])

    def to_json(self) -> dict:
        # Shallow by hand: dataclasses.asdict's deep copy costs ~0.3 ms per job started.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        # A node's ``tasks`` stays out: tasks_per_node says it, and an instance running another
        # sflow version reads this file too.
        data["nodes"] = [{k: v for k, v in n.to_json().items() if k != "tasks"} for n in self.nodes]
        data["extra_env"] = dict(self.extra_env)
        withheld = data.pop("withheld_env")
        if withheld:  # left out otherwise, for an instance running an older sflow
            data["withheld_env"] = list(withheld)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "JobContext":
        data = dict(data)
        data["nodes"] = [AllocatedNode.from_json(n) for n in data["nodes"]]
        data["withheld_env"] = tuple(data.get("withheld_env") or ())
        return cls(**data)


@dataclass
class StepContext:
    """One srun step: its id, nodes (a prefix of the job's) and tasks per node."""

    step_id: int
    nodes: list[AllocatedNode]
    tasks_per_node: list[int]
    cpus_per_task: int = 1
    gpus_per_task: int | None = None
    launcher_port: int = 0
    distribution: str = "block"
    plane_size: int | None = None
    given_distribution: bool = False  # -m was given: SLURM_DISTRIBUTION says it as written
    preserved: dict[str, str] = field(default_factory=dict)  # -E: the job's own geometry variables
    pty_size: tuple[int, int] | None = None  # --pty: (rows, columns) of srun's terminal at the start

    def ranks(self) -> list[list[int]]:
        return ranks_by_node(self.tasks_per_node, self.distribution, self.plane_size)


@dataclass
class Where:
    """Which node (and, inside srun, which task) an environment is for."""

    node_index: int = 0
    rank: int = 0
    local_id: int = 0
    pid: int = 0
    step: StepContext | None = None
    task_gpus: tuple[int, ...] | None = None  # --gpus-per-task binding


def _node(job: JobContext, at: Where) -> AllocatedNode:
    nodes = at.step.nodes if at.step else job.nodes
    return nodes[at.node_index]


def _gpus_visible(job: JobContext, at: Where) -> str | None:
    if at.task_gpus is not None:
        return ",".join(map(str, at.task_gpus))
    gpus = _node(job, at).gpu_indices
    return ",".join(map(str, gpus)) if gpus else None


def _opt(value) -> str | None:
    return None if value is None else str(value)


def _step_gtids(job: JobContext, at: Where) -> str:
    return ",".join(str(i) for i in at.step.ranks()[at.node_index]) if at.step else "0"


BATCH, TASK, BOTH = "batch", "task", "both"
# SLURM 22.05's protocol version and its cons_tres plugin id, as SLURM_WORKING_CLUSTER ends.
PROTOCOL_AND_SELECT = "9728:109"

Getter = Callable[[JobContext, Where], "str | None"]

# name, where it is set, value. Order is irrelevant; names are unique.
TABLE: list[tuple[str, str, Getter]] = [
    ("ENVIRONMENT", BATCH, lambda j, w: "BATCH"),
    # slurmstepd names the node the batch step runs on; srun tasks inherit it from the script.
    ("HOSTNAME", BATCH, lambda j, w: _node(j, w).name),
    ("SLURM_JOB_ID", BOTH, lambda j, w: str(j.job_id)),
    ("SLURM_JOBID", BOTH, lambda j, w: str(j.job_id)),
    ("SLURM_JOB_NAME", BOTH, lambda j, w: j.job_name),
    ("SLURM_JOB_USER", BOTH, lambda j, w: j.user),
    ("SLURM_JOB_UID", BOTH, lambda j, w: str(j.uid)),
    ("SLURM_JOB_GID", BOTH, lambda j, w: str(j.gid)),
    ("SLURM_JOB_ACCOUNT", BOTH, lambda j, w: j.account or j.user),
    ("SLURM_JOB_PARTITION", BOTH, lambda j, w: j.partition),
    ("SLURM_JOB_QOS", BOTH, lambda j, w: j.qos),
    ("SLURM_CLUSTER_NAME", BOTH, lambda j, w: j.cluster_name),
    ("SLURM_CONF", BOTH, lambda j, w: j.conf_path or None),
    ("SLURM_WORKING_CLUSTER", BOTH, lambda j, w: f"{j.cluster_name}:{j.controller}:{PROTOCOL_AND_SELECT}"),
    # No node of an sflow cluster is a cloud node with a dynamic address: SLURM prints its NULL.
    ("SLURM_NODE_ALIASES", BOTH, lambda j, w: "(null)"),
    ("SLURM_SUBMIT_DIR", BOTH, lambda j, w: j.submit_dir),
    ("SLURM_SUBMIT_HOST", BOTH, lambda j, w: j.submit_host),
    ("SLURM_JOB_NODELIST", BOTH, lambda j, w: j.nodelist),
    ("SLURM_NODELIST", BOTH, lambda j, w: j.nodelist),
    ("SLURM_JOB_NUM_NODES", BOTH, lambda j, w: str(len(j.nodes))),
    ("SLURM_NNODES", BOTH, lambda j, w: str(len(j.nodes))),
    ("SLURM_JOB_CPUS_PER_NODE", BOTH, lambda j, w: compress_counts([n.cpus for n in j.nodes])),
    ("SLURM_TASKS_PER_NODE", BOTH, lambda j, w: compress_counts(j.tasks_per_node)),
    ("SLURM_NTASKS", BOTH, lambda j, w: str(j.ntasks) if (j.ntasks_given or j.ntasks_per_node) else None),
    ("SLURM_NPROCS", BOTH, lambda j, w: str(j.ntasks) if (j.ntasks_given or j.ntasks_per_node) else None),
    ("SLURM_OVERCOMMIT", BOTH, lambda j, w: "1" if j.overcommit else None),
    ("SLURM_NTASKS_PER_NODE", BOTH, lambda j, w: _opt(j.ntasks_per_node)),
    ("SLURM_CPUS_PER_TASK", BOTH, lambda j, w: str(j.cpus_per_task) if j.cpus_per_task_given else None),
    ("SLURM_CPUS_ON_NODE", BOTH, lambda j, w: str(_node(j, w).cpus)),
    ("SLURM_MEM_PER_NODE", BOTH, lambda j, w: _opt(j.mem_per_node_mb)),
    ("SLURM_MEM_PER_CPU", BOTH, lambda j, w: _opt(j.mem_per_cpu_mb)),
    ("SLURM_GPUS", BOTH, lambda j, w: _opt(j.gpus)),
    ("SLURM_GPUS_PER_NODE", BOTH, lambda j, w: (f"{j.gpu_type}:{j.gpus_per_node}" if j.gpu_type else str(j.gpus_per_node)) if j.gpus_per_node else None),
    ("SLURM_GPUS_PER_TASK", BOTH, lambda j, w: _opt(j.gpus_per_task)),
    ("SLURM_GPUS_ON_NODE", BOTH, lambda j, w: str(len(_node(j, w).gpu_indices)) if _node(j, w).gpu_indices else None),
    ("SLURM_JOB_GPUS", BOTH, lambda j, w: ",".join(map(str, _node(j, w).gpu_indices)) or None),
    ("CUDA_VISIBLE_DEVICES", BOTH, _gpus_visible),
    ("GPU_DEVICE_ORDINAL", BOTH, _gpus_visible),
    ("ROCR_VISIBLE_DEVICES", BOTH, _gpus_visible),
    ("ZE_AFFINITY_MASK", BOTH, _gpus_visible),
    ("SLURM_ARRAY_JOB_ID", BOTH, lambda j, w: _opt(j.array_job_id)),
    ("SLURM_ARRAY_TASK_ID", BOTH, lambda j, w: _opt(j.array_task_id)),
    ("SLURM_ARRAY_TASK_COUNT", BOTH, lambda j, w: _opt(j.array_task_count)),
    ("SLURM_ARRAY_TASK_MIN", BOTH, lambda j, w: _opt(j.array_task_min)),
    ("SLURM_ARRAY_TASK_MAX", BOTH, lambda j, w: _opt(j.array_task_max)),
    ("SLURM_ARRAY_TASK_STEP", BOTH, lambda j, w: _opt(j.array_task_step)),
    ("SLURM_RESTART_COUNT", BOTH, lambda j, w: str(j.restart_count) if j.restart_count else None),
    ("SLURM_JOB_DEPENDENCY", BOTH, lambda j, w: j.dependency or None),
    ("SLURM_EXPORT_ENV", BOTH, lambda j, w: j.export),
    # With --export=NONE sbatch asks for the user's login environment instead.
    ("SLURM_GET_USER_ENV", BATCH, lambda j, w: "1" if (j.export or "").split(",")[0] == "NONE" else None),
    ("SLURMD_NODENAME", BOTH, lambda j, w: _node(j, w).name),
    ("SLURM_TOPOLOGY_ADDR", BOTH, lambda j, w: _node(j, w).name),
    ("SLURM_TOPOLOGY_ADDR_PATTERN", BOTH, lambda j, w: "node"),
    ("SLURM_NODEID", BOTH, lambda j, w: str(w.node_index)),
    ("SLURM_PROCID", BOTH, lambda j, w: str(w.rank)),
    ("SLURM_LOCALID", BOTH, lambda j, w: str(w.local_id)),
    # The batch script's own pid is known only once it runs: the batch wrapper sets it then.
    ("SLURM_TASK_PID", BOTH, lambda j, w: str(w.pid) if w.pid else None),
    ("SLURM_PRIO_PROCESS", BOTH, lambda j, w: "0"),
    ("SLURM_GTIDS", BOTH, lambda j, w: _step_gtids(j, w) if w.step else "0"),
    ("SLURM_STEP_ID", TASK, lambda j, w: str(w.step.step_id)),
    ("SLURM_STEPID", TASK, lambda j, w: str(w.step.step_id)),
    ("SLURM_STEP_NODELIST", TASK, lambda j, w: _step_nodelist(w.step)),
    ("SLURM_STEP_NUM_NODES", TASK, lambda j, w: str(len(w.step.nodes))),
    ("SLURM_STEP_NUM_TASKS", TASK, lambda j, w: str(sum(w.step.tasks_per_node))),
    ("SLURM_STEP_TASKS_PER_NODE", TASK, lambda j, w: compress_counts(w.step.tasks_per_node)),
    ("SLURM_STEP_GPUS", TASK, lambda j, w: ",".join(map(str, _node(j, w).gpu_indices)) or None),
    ("SLURM_STEP_LAUNCHER_PORT", TASK, lambda j, w: str(w.step.launcher_port)),
    ("SLURM_SRUN_COMM_PORT", TASK, lambda j, w: str(w.step.launcher_port)),
    ("SLURM_SRUN_COMM_HOST", TASK, lambda j, w: "127.0.0.1"),
    ("SLURM_LAUNCH_NODE_IPADDR", TASK, lambda j, w: "127.0.0.1"),
    # One task per node is reported as cyclic (the two coincide), more as block.
    ("SLURM_DISTRIBUTION", TASK, lambda j, w: None if w.step.distribution == "arbitrary"
     else w.step.distribution if w.step.given_distribution
     else "cyclic" if sum(w.step.tasks_per_node) <= len(w.step.nodes) else w.step.distribution),
    ("SLURM_DIST_PLANESIZE", TASK, lambda j, w: _opt(w.step.plane_size)),
    ("SLURM_UMASK", TASK, lambda j, w: "0022"),
    # --pty: every task of the step is told the terminal's first size, and where srun hears of changes.
    ("SLURM_PTY_PORT", TASK, lambda j, w: str(w.step.launcher_port + 1) if w.step.pty_size else None),
    ("SLURM_PTY_WIN_COL", TASK, lambda j, w: str(w.step.pty_size[1]) if w.step.pty_size else None),
    ("SLURM_PTY_WIN_ROW", TASK, lambda j, w: str(w.step.pty_size[0]) if w.step.pty_size else None),
]


def _step_nodelist(step: StepContext) -> str:
    return compress_hostlist([n.name for n in step.nodes])


def batch_environment(job: JobContext, base: dict[str, str], pid: int = 0) -> dict[str, str]:
    """The batch script's environment: the exported submit environment plus SLURM's."""
    env = dict(base)
    env.update(job.extra_env)
    at = Where(pid=pid)
    for name, scope, getter in TABLE:
        if scope == TASK:
            continue
        value = getter(job, at)
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    # slurmstepd gives a job without a TMPDIR of its own the node's temporary directory.
    env.setdefault("TMPDIR", "/tmp")
    return env


def task_environment(job: JobContext, base: dict[str, str], at: Where) -> dict[str, str]:
    """One srun task's environment, on top of the environment srun runs in.

    The step's geometry overrides the job's in the plain names (SLURM_NTASKS,
    SLURM_NNODES, SLURM_NODELIST, SLURM_TASKS_PER_NODE), as srun does.
    """
    step = at.step
    env = dict(base)
    for name, scope, getter in TABLE:
        if scope == BATCH:
            env.pop(name, None) if name == "ENVIRONMENT" else None
            continue
        value = getter(job, at)
        if value is not None:
            env[name] = value
        elif scope == TASK:
            env.pop(name, None)
    ntasks = str(sum(step.tasks_per_node))
    env.update(
        SLURM_NTASKS=ntasks, SLURM_NPROCS=ntasks,
        SLURM_NNODES=str(len(step.nodes)), SLURM_NODELIST=_step_nodelist(step),
        SLURM_TASKS_PER_NODE=compress_counts(step.tasks_per_node),
        SLURM_CPUS_ON_NODE=str(step.tasks_per_node[at.node_index] * step.cpus_per_task),
    )
    env.update(step.preserved)
    env["ENVIRONMENT"] = base.get("ENVIRONMENT", "BATCH")
    return env
