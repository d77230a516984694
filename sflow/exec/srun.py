"""``srun`` inside an allocation: lay a step's tasks out and run them, as srun does.

Plain data in (the job's context, srun's options), processes out. Each task
gets the job's environment plus its own rank variables; labelled output,
per-task files, stdin to task 0 and SLURM's messages for failing tasks follow
srun 22.05. Tasks of nodes that are other machines (a cloud job's instances)
run there over SSH (``sflow.exec.remote_srun``).
"""

from __future__ import annotations

import fcntl
import os
import signal as _signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from sflow.errors import SlurmError
from sflow.exec.env import JobContext, StepContext, Where, task_environment
from sflow.exec.layout import block_layout, ranks_by_node
from sflow.exec.remote_srun import RemoteTasks, is_remote

SIGNAL_WORDS = {
    _signal.SIGKILL: "Killed", _signal.SIGTERM: "Terminated", _signal.SIGSEGV: "Segmentation fault",
    _signal.SIGABRT: "Aborted", _signal.SIGINT: "Interrupt", _signal.SIGBUS: "Bus error",
    _signal.SIGFPE: "Floating point exception", _signal.SIGHUP: "Hangup",
}


@dataclass
class StepRequest:
    """What this srun asked for; None means "inherit from the job"."""

    argv: list[str]
    ntasks: int | None = None
    nodes: int | None = None
    ntasks_per_node: int | None = None
    cpus_per_task: int | None = None
    gpus_per_task: int | None = None
    nodelist: list[str] = field(default_factory=list)
    label: bool = False
    output: str | None = None
    error: str | None = None
    input: str | None = None
    kill_on_bad_exit: bool = False
    overcommit: bool = False
    chdir: str | None = None
    job_name: str | None = None
    jobid: str | None = None  # --jobid: a step in that job's allocation (else SLURM_JOB_ID's)


@dataclass
class Task:
    rank: int
    node_index: int
    local_id: int
    process: subprocess.Popen | None = None
    exit_code: int = 0
    signal: int = 0


def load_context(home: str, job_id: str) -> JobContext | None:
    import json

    path = os.path.join(home, "jobs", str(job_id), "context.json")
    try:
        with open(path) as handle:
            return JobContext.from_json(json.load(handle))
    except (OSError, ValueError):
        return None


def next_step_id(home: str, job_id: int) -> int:
    """Step ids count 0, 1, 2... per job, safely across concurrent sruns."""
    path = os.path.join(home, "jobs", str(job_id), "steps")
    with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        text = handle.read().strip()
        step = int(text) if text else 0
        handle.seek(0)
        handle.truncate()
        handle.write(str(step + 1))
    return step


def plan_step(job: JobContext, req: StepRequest, inherited_ntasks: int | None,
              warn) -> tuple[list[int], list[int]]:
    """Node indices of the step and tasks per node, or SLURM's refusal."""
    indices = list(range(len(job.nodes)))
    if req.nodelist:
        names = [n.name for n in job.nodes]
        missing = [n for n in req.nodelist if n not in names]
        if missing:
            raise SlurmError(f"Unable to create step for job {job.job_id}: Requested node configuration is not available")
        indices = [names.index(n) for n in req.nodelist]
    cpt = req.cpus_per_task or job.cpus_per_task or 1
    ntasks = req.ntasks
    if req.nodes is not None:
        if req.nodes > len(indices):
            raise SlurmError(f"Unable to create step for job {job.job_id}: Requested node configuration is not available")
        indices = indices[: req.nodes]
        if ntasks is None:
            ntasks = len(indices) * (req.ntasks_per_node or 1)
    if ntasks is None:
        if req.ntasks_per_node:
            ntasks = len(indices) * req.ntasks_per_node
        elif req.nodelist:
            ntasks = len(indices)
        else:
            # Inherit the job's task layout as it is.
            return indices, [job.tasks_per_node[i] for i in indices]
    if ntasks < len(indices):
        if req.nodes is None and len(indices) > 1:
            warn(f"can't run {ntasks} processes on {len(indices)} nodes, setting nnodes to {ntasks}")
        indices = indices[:ntasks]
    per_node = req.ntasks_per_node
    if per_node and per_node * len(indices) != ntasks:
        warn(f"can't honor --ntasks-per-node set to {per_node} which doesn't match the requested tasks "
             f"{ntasks} with the number of requested nodes {len(indices)}. Ignoring --ntasks-per-node.")
        per_node = None
    cpus = [job.nodes[i].cpus for i in indices]
    if not req.overcommit and ntasks * cpt > sum(cpus):
        raise SlurmError(f"Unable to create step for job {job.job_id}: More processors requested than permitted")
    return indices, block_layout(ntasks, cpus, cpt, per_node)


def _describe(ranks: list[int]) -> str:
    from sflow.slurm.indexset import IndexSet

    text = IndexSet.of(ranks).ranges_text()
    return f"tasks {text}" if len(ranks) > 1 else f"task {text}"


class StepRunner:
    def __init__(self, job: JobContext, step: StepContext, req: StepRequest, base_env: dict[str, str],
                 out=sys.stdout.buffer, err=sys.stderr.buffer):
        self.job, self.step, self.req, self.base_env = job, step, req, base_env
        self.out, self.err = out, err
        self.tasks: list[Task] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.remote = None  # RemoteTasks, when some nodes are other machines
        # () -> (uid, time) of the scancel that ended this step, or None; and KillWait, for its notice.
        self.cancelled_by = lambda: None
        self.kill_wait = 30
        total = sum(step.tasks_per_node)
        self._label_width = len(str(total - 1))

    def _pattern(self, pattern: str, task: Task) -> str:
        from sflow.slurm.values import expand_output_pattern

        node = self.step.nodes[task.node_index]
        path = expand_output_pattern(pattern, {
            "job_id": self.job.job_id, "job_name": self.job.job_name, "user": self.job.user,
            "array_job_id": self.job.array_job_id, "array_task_id": self.job.array_task_id,
            "node_name": node.name, "node_id": task.node_index, "step_id": self.step.step_id,
            "task_id": task.rank,
        } if self.job.array_job_id is not None else {
            "job_id": self.job.job_id, "job_name": self.job.job_name, "user": self.job.user,
            "node_name": node.name, "node_id": task.node_index, "step_id": self.step.step_id,
            "task_id": task.rank,
        })
        return path if os.path.isabs(path) else os.path.join(self.req.chdir or os.getcwd(), path)

    def _pump(self, source, sink, rank: int) -> None:
        prefix = f"{rank:>{self._label_width}}: ".encode() if self.req.label else b""
        for line in iter(source.readline, b""):
            with self._lock:
                sink.write(prefix + line)
                sink.flush()
        source.close()

    def _gpus_for(self, node_index: int, local_id: int) -> tuple[int, ...] | None:
        per_task = self.req.gpus_per_task or self.job.gpus_per_task
        if not per_task:
            return None
        gpus = self.step.nodes[node_index].gpu_indices
        return tuple(gpus[local_id * per_task:(local_id + 1) * per_task])

    def start(self) -> None:
        opened: list[int] = []
        for node_index, ranks in enumerate(ranks_by_node(self.step.tasks_per_node)):
            for local_id, rank in enumerate(ranks):
                task = Task(rank, node_index, local_id)
                where = Where(node_index=node_index, rank=rank, local_id=local_id, step=self.step,
                              task_gpus=self._gpus_for(node_index, local_id))
                env = task_environment(self.job, self.base_env, where)
                node = self.step.nodes[node_index]
                if is_remote(node):
                    if self.remote is None:
                        self.remote = RemoteTasks(self)
                    self.tasks.append(task)
                    self.remote.start(task, node, env)
                    continue
                stdin = subprocess.DEVNULL
                if self.req.input:
                    fd = os.open(self._pattern(self.req.input, task), os.O_RDONLY)
                    opened.append(fd)
                    stdin = fd
                elif rank == 0:
                    stdin = None  # srun's own stdin goes to task 0
                stdout = stderr = subprocess.PIPE if self.req.label else None
                if self.req.output:
                    stdout = os.open(self._pattern(self.req.output, task), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    opened.append(stdout)
                if self.req.error:
                    stderr = os.open(self._pattern(self.req.error, task), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    opened.append(stderr)
                elif self.req.output:
                    stderr = stdout
                try:
                    task.process = subprocess.Popen(self.req.argv, stdin=stdin, stdout=stdout, stderr=stderr,
                                                    env=env, cwd=self.req.chdir or None)
                except OSError as exc:
                    node = self.step.nodes[node_index].name
                    line = f"slurmstepd-{node}: error: execve(): {self.req.argv[0]}: {exc.strerror}\n"
                    self.err.write(line.encode("utf-8", "surrogateescape"))  # argv is any bytes
                    self.err.flush()
                    task.exit_code = 2
                self.tasks.append(task)
                if task.process is not None and self.req.label:
                    for source, sink in ((task.process.stdout, self.out), (task.process.stderr, self.err)):
                        if source is not None:
                            thread = threading.Thread(target=self._pump, args=(source, sink, rank), daemon=True)
                            thread.start()
                            self._threads.append(thread)
        for fd in opened:
            os.close(fd)

    def signal(self, signum: int) -> None:
        if self.remote is not None:
            self.remote.signal(signum)
        for task in self.tasks:
            if task.process is not None and task.process.poll() is None:
                try:
                    task.process.send_signal(signum)
                except ProcessLookupError:
                    pass

    def wait(self) -> int:
        """Wait for every task; report failures as srun does; return srun's exit code."""
        pending = [t for t in self.tasks if t.process is not None]
        failed_by_node: dict[tuple[int, str], list[int]] = {}
        while pending:
            pid, status = os.wait()
            for task in pending:
                if task.process.pid == pid:
                    task.process.returncode = status
                    if os.WIFSIGNALED(status):
                        task.signal = os.WTERMSIG(status)
                    else:
                        task.exit_code = os.WEXITSTATUS(status)
                    pending.remove(task)
                    if (task.exit_code or task.signal) and self.req.kill_on_bad_exit:
                        self.signal(_signal.SIGKILL)
                    break
        for thread in self._threads:
            thread.join()
        if self.remote is not None:
            self.remote.wait()
        cancelled = self.cancelled_by()
        if cancelled is not None:  # srun's notice, then slurmstepd's, as a cancelled step leaves them
            import time

            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(cancelled[1]))
            self.err.write(f"srun: Job step aborted: Waiting up to {self.kill_wait + 2} seconds for job step "
                           f"to finish.\nslurmstepd: error: *** STEP {self.job.job_id}.{self.step.step_id} ON "
                           f"{self.step.nodes[0].name} CANCELLED AT {when} ***\n".encode())
        for task in self.tasks:
            if task.signal:
                word = SIGNAL_WORDS.get(task.signal, f"Signal {task.signal}")
                failed_by_node.setdefault((task.node_index, word), []).append(task.rank)
            elif task.exit_code:
                failed_by_node.setdefault((task.node_index, f"Exited with exit code {task.exit_code}"), []).append(task.rank)
        for (node_index, what), ranks in failed_by_node.items():
            node = self.step.nodes[node_index].name
            self.err.write(f"srun: error: {node}: {_describe(ranks)}: {what}\n".encode())
        killed = [t.signal for t in self.tasks if t.signal]
        if _signal.SIGKILL in killed and cancelled is None:  # srun says so of SIGKILL alone
            self.err.write(f"srun: Force Terminated StepId={self.job.job_id}.{self.step.step_id}\n".encode())
        self.err.flush()
        codes = [t.exit_code for t in self.tasks] + [128 + s for s in killed]
        return max(codes) if codes else 0
