"""``srun`` inside an allocation: lay a step's tasks out and run them, as srun does.

Plain data in (the job's context, srun's options), processes out. Each task
gets the job's environment plus its own rank variables; labelled output,
per-task files, stdin to every task (or as -i says) and SLURM's messages for failing tasks follow
srun 22.05. Tasks of nodes that are other machines (a cloud job's instances)
run there over SSH (``sflow.exec.remote_srun``).
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import select
import signal as _signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from sflow.errors import SlurmError
from sflow.exec.env import JobContext, StepContext, Where, task_environment
from sflow.exec.layout import block_layout
from sflow.exec.node_names import popen_on_node
from sflow.exec.remote_srun import RemoteTasks, is_remote
from sflow.exec.terminal import Relay, open_pair, take_terminal
from sflow.exec.usage import Gauge, children_map, save as save_usage, tree
from sflow.exec.verbose import gpu_bind_note, task_list
from sflow.slurm.indexset import IndexSet
from sflow.slurm.values import expand_output_pattern

# The signals srun catches and passes on to its tasks; the controller leaves srun out when it
# sends one of them to every process of a job (sflow.queue.launch.signal_job).
SRUN_FORWARDS = frozenset({_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGUSR1, _signal.SIGUSR2,
                           _signal.SIGQUIT})

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
    verbose: int = 0
    quiet: bool = False
    wait: int | None = None  # -W: seconds the others may run on after the first task ends
    immediate: int | None = None
    test_only: bool = False
    exclusive: object = None
    distribution: str | None = None  # -m as SLURM_DISTRIBUTION shows it
    plane_size: int | None = None
    preserve_env: bool = False
    multi_prog: bool = False
    acctg_freq: str | None = None  # --acctg-freq as given
    gpu_bind: str | None = None  # --gpu-bind as given: [verbose,]<type>
    debugger_test: bool = False  # start the tasks stopped, list them as a debugger sees them, and wait
    pty: bool = False  # task zero runs on a pseudo-terminal of its own (sflow.exec.terminal)
    programs: list | None = None  # --multi-prog's configuration, read
    given: list = field(default_factory=list)  # (long option, raw value) as given, for -v


@dataclass
class Task:
    rank: int
    node_index: int
    local_id: int
    process: subprocess.Popen | None = None
    exit_code: int = 0
    signal: int = 0
    own_group: bool = False  # the task leads a process group of its own


def load_context(home: str, job_id: str) -> JobContext | None:
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
    if (req.distribution or "").startswith("arbitrary") and not req.nodelist:
        raise SlurmError("With Arbitrary distribution you need to specify a nodelist or hostfile with the -w option")
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
    text = IndexSet.of(ranks).ranges_text()
    return f"tasks {text}" if len(ranks) > 1 else f"task {text}"


# Runs a task with its own pid in SLURM_TASK_PID: the shell sets it, then becomes the program.
_WITH_TASK_PID = 'SLURM_TASK_PID=$$; export SLURM_TASK_PID; exec "$@"'
# --debugger-test: the task stops before its program starts, as under a debugger's control.
_STOPPED = 'kill -STOP $$; ' + _WITH_TASK_PID


def _findable(program: str, env: dict[str, str], cwd: str | None) -> str | None:
    """Why ``program`` cannot be executed (execve's words), or None."""
    if "/" in program:
        path = program if os.path.isabs(program) else os.path.join(cwd or os.getcwd(), program)
        if not os.path.exists(path):
            return os.strerror(2)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            return os.strerror(13)
        return None
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return None
    return os.strerror(2)


def stdin_readers(mode: str | None, ntasks: int) -> tuple[str, set[int]]:
    """Which ranks read srun's stdin under -i MODE: ("file", {}) when MODE names a file pattern.

    As srun 22.05: by default and with ``all`` every task gets it, ``none`` none,
    a task id only that task."""
    text = (mode or "all").strip()
    if text.lower() == "all":
        return "all", set(range(ntasks))
    if text.lower() == "none":
        return "none", set()
    if text.isdecimal() and int(text) < ntasks:  # a larger number is a file's name
        return "task", {int(text)}
    return "file", set()


def _broadcast_stdin(feeds: list) -> None:
    """Copy srun's stdin to every reading task, each at its own pace, and close theirs at its end."""
    queues = [queue.SimpleQueue() for _ in feeds]

    def feed(pipe, chunks: queue.SimpleQueue) -> None:
        try:
            while (chunk := chunks.get()) is not None:
                pipe.write(chunk)
                pipe.flush()
        except OSError:  # the task no longer reads (it ended, or closed its stdin)
            pass
        try:
            pipe.close()
        except OSError:
            pass

    for pipe, chunks in zip(feeds, queues):
        threading.Thread(target=feed, args=(pipe, chunks), daemon=True).start()
    while True:
        try:
            chunk = os.read(0, 65536)
        except OSError:
            chunk = b""
        for chunks in queues:
            chunks.put(chunk or None)
        if not chunk:
            return


class StepRunner:
    def __init__(self, job: JobContext, step: StepContext, req: StepRequest, base_env: dict[str, str],
                 out=sys.stdout.buffer, err=sys.stderr.buffer):
        self.job, self.step, self.req, self.base_env = job, step, req, base_env
        self.out, self.err = out, err
        self.tasks: list[Task] = []
        # Re-entrant: srun's signal handler (signal()) may write while the main thread holds it.
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self.remote = None  # RemoteTasks, when some nodes are other machines
        # () -> (uid, time) of the scancel that ended this step, or None; and KillWait, for its notice.
        self.cancelled_by = lambda: None
        self.kill_wait = 30
        self.terminated_at: float | None = None  # when -W's wait ran out and the step was ended
        self.killed_on_bad_exit = False  # -K ended the step while tasks still ran
        self.forced = False  # --debugger-test's step was ended by a signal to srun
        self._reported: set[int] = set()  # ranks whose failure srun already told
        self._kill_timer: threading.Timer | None = None
        self.relay = None  # --pty: srun's side of task zero's terminal (sflow.exec.terminal.Relay)
        total = sum(step.tasks_per_node)
        self._label_width = len(str(total - 1))
        # Accounting: each task's memory sampled every ``acctg_freq`` seconds (0: never), CPU times
        # from wait4; written to ``usage_path`` at each sample for sstat.
        task_nodes = [""] * total
        for index, ranks in enumerate(step.ranks()):
            for rank in ranks:
                task_nodes[rank] = step.nodes[index].name
        self.gauge = Gauge(total, task_nodes)
        self.acctg_freq = 0
        self.usage_path: str | None = None
        self._done = threading.Event()
        # A pipe every caught signal writes to (signal.set_wakeup_fd), or None: wait() then sleeps on it.
        self.wake: int | None = None

    def _note(self, text: str) -> None:
        with self._lock:
            self.err.write(text.encode("utf-8", "surrogateescape"))
            self.err.flush()

    def _pattern(self, pattern: str, task: Task) -> str:
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

    def _sink(self, pattern: str | None, task: Task, files: dict[str, int], default: int | None) -> int | None:
        """Where one of a task's streams goes: a file (one open file for the tasks that share
        its name, as slurmstepd opens it once), /dev/null, or ``default`` (srun's own stream).
        A bare number names the one task whose stream srun passes on."""
        if pattern is None:
            return default
        if pattern.isdecimal():
            return default if int(pattern) == task.rank else subprocess.DEVNULL
        if pattern.lower() == "none":
            return subprocess.DEVNULL
        path = self._pattern(pattern, task)
        if path not in files:
            files[path] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        return files[path]

    def _pump(self, source, sink, rank: int) -> None:
        prefix = f"{rank:>{self._label_width}}: ".encode() if self.req.label else b""
        for line in iter(source.readline, b""):
            with self._lock:
                if isinstance(sink, int):
                    os.write(sink, prefix + line)
                else:
                    sink.write(prefix + line)
                    sink.flush()
        source.close()

    def _bind_type(self) -> str:
        text = self.req.gpu_bind or ""
        return text[len("verbose,"):] if text.startswith("verbose,") else text

    def _gpus_for(self, node_index: int, local_id: int) -> tuple[int, ...] | None:
        per_task = self.req.gpus_per_task or self.job.gpus_per_task
        if not per_task or self._bind_type() in ("closest", "none"):
            return None  # every task sees all of the step's GPUs on its node (no topology to be closest to)
        gpus = self.step.nodes[node_index].gpu_indices
        return tuple(gpus[local_id * per_task:(local_id + 1) * per_task])

    def _gpu_bind_note(self, node, task_gpus: tuple[int, ...] | None) -> str | None:
        """--gpu-bind=verbose,<type>: the task's binding line (none for type none or a node without GPUs)."""
        if not (self.req.gpu_bind or "").startswith("verbose,") or self._bind_type() == "none":
            return None
        if not node.gpu_indices:
            return None

        bound = node.gpu_indices if task_gpus is None else task_gpus
        return gpu_bind_note(tuple(bound), tuple(node.gpu_indices))

    def _argv(self, rank: int) -> list[str]:
        if self.req.programs is None:
            return self.req.argv
        from sflow.exec.multiprog import argv_for  # deferred: ~0.6 ms at every srun's start; --multi-prog only

        return argv_for(self.req.programs, rank, self.req.argv[1:]) or self.req.argv

    def _announce(self, by_node: list[list[int]]) -> None:
        if self.req.verbose < 1:
            return
        step = f"{self.job.job_id}.{self.step.step_id}"
        lines = ["srun: launch/slurm: launch_p_step_launch: CpuBindType=(null type)\n"]
        lines += [f"srun: launching StepId={step} on host {self.step.nodes[i].name}, {len(ranks)} tasks: "
                  f"{task_list(ranks)}\n" for i, ranks in enumerate(by_node) if ranks]
        lines.append("srun: route/default: init: route default plugin loaded\n")
        lines += [f"srun: launch/slurm: _task_start: Node {self.step.nodes[i].name}, {len(ranks)} tasks started\n"
                  for i, ranks in enumerate(by_node) if ranks]
        self._note("".join(lines))

    def start(self) -> None:
        opened: dict[str, int] = {}
        by_node = self.step.ranks()
        self._announce(by_node)
        label = self.req.label
        if self.req.pty and is_remote(self.step.nodes[0]):
            raise SlurmError("--pty is not supported on a node reached over SSH; "
                             "use flow ssh JOB for a shell on a cloud job's instance")
        mode, readers = stdin_readers(self.req.input, sum(len(r) for r in by_node))
        if mode == "file":  # every task's file opens, or no task starts
            for node_index, ranks in enumerate(by_node):
                for local_id, rank in enumerate(ranks):
                    try:
                        opened[f"<{rank}"] = os.open(self._pattern(self.req.input, Task(rank, node_index, local_id)),
                                                     os.O_RDONLY)
                    except OSError as exc:
                        for fd in opened.values():
                            os.close(fd)
                        raise SlurmError(f"Could not open stdin file: {exc.strerror}") from None
        for node_index, ranks in enumerate(by_node):
            for local_id, rank in enumerate(ranks):
                task = Task(rank, node_index, local_id)
                where = Where(node_index=node_index, rank=rank, local_id=local_id, step=self.step,
                              task_gpus=self._gpus_for(node_index, local_id))
                env = task_environment(self.job, self.base_env, where)
                node = self.step.nodes[node_index]
                argv = self._argv(rank)
                if is_remote(node):
                    if self.remote is None:
                        self.remote = RemoteTasks(self)
                    self.tasks.append(task)
                    self.remote.start(task, node, env)
                    continue
                stdin = subprocess.DEVNULL
                if mode == "file":
                    stdin = opened[f"<{rank}"]
                elif rank in readers:
                    # One reader inherits srun's stdin itself; several share it through srun's copies.
                    stdin = None if len(readers) == 1 else subprocess.PIPE
                out_sink = self._sink(self.req.output, task, opened, None)
                err_sink = self._sink(self.req.error, task, opened, None) if self.req.error else out_sink
                stdout = subprocess.PIPE if label and out_sink != subprocess.DEVNULL else out_sink
                stderr = subprocess.PIPE if label and err_sink != subprocess.DEVNULL else err_sink
                terminal = None  # --pty: (master, slave) of task zero's terminal
                if self.req.pty:  # task zero has the terminal; the others' streams go nowhere
                    stdin = stdout = stderr = subprocess.DEVNULL
                    if rank == 0:
                        terminal = open_pair(*(self.step.pty_size or (24, 80)))
                        stdin = stdout = stderr = terminal[1]
                why = _findable(argv[0], env, self.req.chdir)
                if why is None:
                    try:
                        # A task is a process group, so that ending the step (-K, signals srun passes on)
                        # reaches the processes it started too, as slurmstepd signals all of a step's;
                        # but a task reading srun's terminal stays in srun's group, to keep reading it.
                        task.own_group = not (stdin is None and os.isatty(0))
                        setup = os.setpgrp if task.own_group else None
                        if terminal is not None:  # a session of its own, led by the task, on its terminal
                            setup = take_terminal
                        wrapper = _STOPPED if self.req.debugger_test else _WITH_TASK_PID
                        command = argv
                        note = self._gpu_bind_note(node, where.task_gpus)
                        if note:  # the task tells its binding on its own stderr, before its program starts
                            wrapper, command = 'printf "%s\\n" "$1" >&2; shift; ' + wrapper, [note, *argv]
                        task.process = popen_on_node(["/bin/sh", "-c", wrapper, "sh", *command], node.name,
                                                     self.job.hosts_file, setup=setup, stdin=stdin,
                                                     stdout=stdout, stderr=stderr, env=env,
                                                     cwd=self.req.chdir or None,
                                                     start_new_session=terminal is not None)
                    except OSError as exc:
                        why = exc.strerror
                if terminal is not None:
                    os.close(terminal[1])  # the task holds it now: its end reads as the terminal's end
                    if task.process is None:
                        os.close(terminal[0])
                    else:
                        self.relay = Relay(terminal[0], f"{rank:>{self._label_width}}: ".encode() if label else b"")
                        self.relay.start()
                if why is not None:
                    line = f"slurmstepd-{node.name}: error: execve(): {argv[0]}: {why}\n"
                    self.err.write(line.encode("utf-8", "surrogateescape"))  # argv is any bytes
                    self.err.flush()
                    task.exit_code = 2
                self.tasks.append(task)
                if task.process is not None and label:
                    pairs = ((task.process.stdout, self.out if out_sink is None else out_sink),
                             (task.process.stderr, self.err if err_sink is None else err_sink))
                    for source, sink in pairs:
                        if source is not None:
                            thread = threading.Thread(target=self._pump, args=(source, sink, rank), daemon=True)
                            thread.start()
                            self._threads.append(thread)
        self._files = opened
        feeds = [t.process.stdin for t in self.tasks if t.process is not None and t.process.stdin is not None]
        if feeds:
            # Not joined: srun's stdin may be a terminal that never ends.
            threading.Thread(target=_broadcast_stdin, args=(feeds,), daemon=True).start()
        if self.acctg_freq > 0:
            threading.Thread(target=self._gather, daemon=True).start()
        if self.req.debugger_test:
            self._note("".join(
                f"srun: task:{t.rank}, host:{self.step.nodes[t.node_index].name}, pid:{t.process.pid}, "
                f"executable:{self._argv(t.rank)[0]}\n" for t in sorted(self.tasks, key=lambda t: t.rank)
                if t.process is not None))

    def _gather(self) -> None:
        """Sample the local tasks' process trees until the step ends."""
        while True:
            self.sample()
            if self._done.wait(self.acctg_freq):
                return

    def sample(self) -> None:
        children = children_map()
        with self._lock:
            running = [(t.rank, t.process.pid) for t in self.tasks
                       if t.process is not None and t.process.returncode is None]
        for rank, pid in running:
            self.gauge.sample(rank, tree(pid, children))
        if self.usage_path:
            save_usage(self.usage_path, self.gauge.to_dict())

    def signal(self, signum: int) -> None:
        if self.req.debugger_test and not self.forced:
            # No debugger will continue the stopped tasks: any signal to srun ends the step.
            self.forced = True
            step = f"{self.job.job_id}.{self.step.step_id}"
            first = self.step.nodes[0].name
            when = time.strftime("%Y-%m-%dT%H:%M:%S")
            self._note(f"srun: forcing job termination\n"
                       f"srun: Job step aborted: Waiting up to {self.kill_wait + 2} seconds for job step to finish.\n"
                       f"slurmstepd-{first}: error: *** STEP {step} ON {first} CANCELLED AT {when} ***\n")
            signum = _signal.SIGKILL
        if self.remote is not None:
            self.remote.signal(signum)
        foreground = self.relay.foreground_group() if self.relay is not None else None
        if foreground is not None and foreground not in {t.process.pid for t in self.tasks if t.process}:
            try:  # the command a shell on the step's terminal runs in the foreground: not in the shell's group
                os.killpg(foreground, signum)
            except OSError:
                pass
        for task in self.tasks:
            # wait() reaps the tasks itself (os.wait), so a task not yet reaped keeps its pid:
            # Popen.poll()/send_signal() would reap it behind wait()'s back.
            if task.process is not None and task.process.returncode is None:
                try:
                    (os.killpg if task.own_group else os.kill)(task.process.pid, signum)
                except ProcessLookupError:
                    pass

    def resize(self) -> None:
        if self.relay is not None:
            self.relay.resize()

    def close_terminal(self) -> None:
        if self.relay is not None:
            self.relay.finish()

    def _kill_on_bad_exit(self, task: Task) -> None:
        """-K: a task failed; say so at once and end the step as slurmstepd does (SIGCONT and
        SIGTERM, SIGKILL after KillWait)."""
        node = self.step.nodes[task.node_index].name
        step = f"{self.job.job_id}.{self.step.step_id}"
        what = SIGNAL_WORDS.get(task.signal, f"Signal {task.signal}") if task.signal else \
            f"Exited with exit code {task.exit_code}"
        text = f"srun: error: {node}: task {task.rank}: {what}\n"
        text += f"srun: launch/slurm: _step_signal: Terminating StepId={step}\n"
        running = [t for t in self.tasks if t.process is not None and t.process.returncode is None]
        if running:
            first = self.step.nodes[min(t.node_index for t in running)].name
            when = time.strftime("%Y-%m-%dT%H:%M:%S")
            text += f"slurmstepd-{first}: error: *** STEP {step} ON {first} CANCELLED AT {when} ***\n"
            self.killed_on_bad_exit = True
        self._note(text)
        self._reported.add(task.rank)
        self.signal(_signal.SIGCONT)
        self.signal(_signal.SIGTERM)
        if running:
            timer = threading.Timer(self.kill_wait, self.signal, (_signal.SIGKILL,))
            timer.daemon = True
            timer.start()
            self._kill_timer = timer

    def _wait_ran_out(self, first_end: float) -> None:
        """-W: the first task ended ``wait`` seconds ago and others still run: end the step."""
        running = sorted(t.rank for t in self.tasks if t.process is not None and t.process.returncode is None)
        if not running:
            return
        done = sorted(t.rank for t in self.tasks if t.rank not in running)
        step = f"StepId={self.job.job_id}.{self.step.step_id}"
        text = f"srun: First task exited {int(time.time() - first_end)}s ago\n"
        text += f"srun: {step} {_describe(running)}: running\n"
        if done:
            text += f"srun: {step} {_describe(done)}: exited\n"
        text += f"srun: launch/slurm: _step_signal: Terminating {step}\n"
        self._note(text)
        self.terminated_at = time.time()
        self.signal(_signal.SIGKILL)

    def _reap(self) -> tuple[int, int, object]:
        """os.wait4's answer for the next child that ends, running srun's signal handlers meanwhile.

        Python runs a handler in the main thread only, and the kernel may give a signal to any
        thread (the terminal's relay, busy copying, when the shell there sends srun a SIGHUP):
        wait4 would then sleep on with the handler pending. Every caught signal, SIGCHLD included,
        writes to ``wake``, so sleeping on that instead runs the handler whichever thread took it."""
        while self.wake is not None:
            found = os.wait4(-1, os.WNOHANG)
            if found[0]:
                return found
            select.select([self.wake], [], [])
            try:
                while os.read(self.wake, 512):
                    pass
            except BlockingIOError:
                pass
        return os.wait4(-1, 0)

    def wait(self) -> int:
        """Wait for every task; report failures as srun does; return srun's exit code."""
        pending = [t for t in self.tasks if t.process is not None]
        failed_by_node: dict[tuple[int, str], list[int]] = {}
        timer = None
        if self.req.wait and len(pending) < len(self.tasks) and pending:  # a task already failed to start
            timer = threading.Timer(self.req.wait, self._wait_ran_out, (time.time(),))
            timer.daemon = True
            timer.start()
        while pending:
            pid, status, rusage = self._reap()
            for task in pending:
                if task.process.pid == pid:
                    task.process.returncode = status
                    self.gauge.add_cpu(rusage.ru_utime, rusage.ru_stime)
                    self.gauge.ended(task.rank)
                    if os.WIFSIGNALED(status):
                        task.signal = os.WTERMSIG(status)
                    else:
                        task.exit_code = os.WEXITSTATUS(status)
                    pending.remove(task)
                    if (task.exit_code or task.signal) and self.req.kill_on_bad_exit and not self._reported:
                        self._kill_on_bad_exit(task)
                    if self.req.wait and timer is None and pending:
                        timer = threading.Timer(self.req.wait, self._wait_ran_out, (time.time(),))
                        timer.daemon = True
                        timer.start()
                    break
        self._done.set()
        if timer is not None:
            timer.cancel()
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self.close_terminal()  # before srun's own messages, which need the terminal as it was
        for thread in self._threads:
            thread.join()
        for fd in set(getattr(self, "_files", {}).values()):
            os.close(fd)
        if self.remote is not None:
            self.remote.wait()
        cancelled = self.cancelled_by()
        if cancelled is None and self.terminated_at is not None:
            cancelled = (None, self.terminated_at)
        if cancelled is not None:  # srun's notice, then slurmstepd's, as a cancelled step leaves them
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(cancelled[1]))
            self.err.write(f"slurmstepd-{self.step.nodes[0].name}: error: *** STEP {self.job.job_id}."
                           f"{self.step.step_id} ON {self.step.nodes[0].name} CANCELLED AT {when} ***\n"
                           f"srun: Job step aborted: Waiting up to {self.kill_wait + 2} seconds for job step "
                           f"to finish.\n".encode() if self.terminated_at is not None else
                           f"srun: Job step aborted: Waiting up to {self.kill_wait + 2} seconds for job step "
                           f"to finish.\nslurmstepd: error: *** STEP {self.job.job_id}.{self.step.step_id} ON "
                           f"{self.step.nodes[0].name} CANCELLED AT {when} ***\n".encode())
        for task in self.tasks:
            if task.rank in self._reported:
                continue
            if task.signal:
                word = SIGNAL_WORDS.get(task.signal, f"Signal {task.signal}")
                failed_by_node.setdefault((task.node_index, word), []).append(task.rank)
            elif task.exit_code:
                failed_by_node.setdefault((task.node_index, f"Exited with exit code {task.exit_code}"), []).append(task.rank)
        self._finished_notes()
        for (node_index, what), ranks in failed_by_node.items():
            node = self.step.nodes[node_index].name
            self.err.write(f"srun: error: {node}: {_describe(ranks)}: {what}\n".encode())
        killed = [t.signal for t in self.tasks if t.signal]
        if (_signal.SIGKILL in killed or self.killed_on_bad_exit) and cancelled is None and not self.forced:
            # srun says so of SIGKILL, and of a step -K ended
            self.err.write(f"srun: Force Terminated StepId={self.job.job_id}.{self.step.step_id}\n".encode())
        self.err.flush()
        codes = [t.exit_code for t in self.tasks] + [128 + s for s in killed]
        return max(codes) if codes else 0

    def _finished_notes(self) -> None:
        """-v: srun's notice of each node's task exits, and of the tasks that completed."""
        if self.req.verbose < 1:
            return
        step = f"StepId={self.job.job_id}.{self.step.step_id}"
        groups: dict[tuple[int, int], list[int]] = {}
        for task in self.tasks:
            status = task.signal or (task.exit_code << 8)
            groups.setdefault((task.node_index, status), []).append(task.rank)
        lines = []
        for (node_index, status), ranks in groups.items():
            count = len(ranks)
            lines.append(f"srun: launch/slurm: _task_finish: Received task exit notification for {count} "
                         f"task{'s' if count > 1 else ''} of {step} (status=0x{status:04x}).\n")
            if status == 0:
                lines.append(f"srun: launch/slurm: _task_finish: {self.step.nodes[node_index].name}: "
                             f"{_describe(sorted(ranks))}: Completed\n")
        self.err.write("".join(lines).encode())
