"""Start a job's batch step as a process tree of its own, the way slurmstepd does.

The batch script runs under a tiny /bin/sh wrapper in a new session. The
wrapper outlives the script only to write its exit status to a file, so the
status survives a controller that died meanwhile; a restarted controller
adopts the still-running wrapper or reads the status it left.
"""

from __future__ import annotations

import json
import os
import re
import signal as _signal
import subprocess
from dataclasses import dataclass

from sflow.exec.context import job_context
from sflow.exec.env import JobContext, batch_environment
from sflow.exec.node_names import NodeNames, start_on_node, warning
from sflow.fileio import write_file
from sflow.queue import paths
from sflow.slurm.values import expand_output_pattern

# $1: status file; the rest: the script and its arguments. Traps (not ignores)
# keep the wrapper alive through signals meant for the job: a trapped signal
# is reset to its default in the script, an ignored one would be inherited.
# The wrapper's own stderr is /dev/null and the script gets the job's (fd 3) from
# a shell that execs it: a shell reports a child killed by a signal
# ("Terminated") on the stderr in force while it waits, and SLURM prints nothing.
#
# Arguments: the status file, then how many NAME=VALUE words follow for variables whose names no
# shell passes on (``TEST_ENV_17.14``: SLURM exports any name), then the script and its arguments;
# env(1) puts those back just before the script starts.
WRAPPER = (
    'status=$1; shift; '
    'trap : HUP INT QUIT TERM USR1 USR2 ALRM CONT; '
    'exec 3>&2 2>/dev/null; '
    # The subshell becomes the script (exec), so its pid is the script's: SLURM_TASK_PID. A
    # subshell's $$ is its parent's, hence /proc/self (read by the subshell itself, a builtin);
    # a subshell, not a second /bin/sh, spares an exec per job.
    '(read -r SLURM_TASK_PID _ < /proc/self/stat; export SLURM_TASK_PID; n=$1; shift; '
    'if [ "$n" -gt 0 ]; then exec env "$@" 2>&3 3>&-; fi; exec "$@" 2>&3 3>&-); rc=$?; '
    'times > "$status.times"; '  # the script's CPU times, written before its status
    # One write of a few bytes, no mv (a process per job): a reader sees the whole number or an
    # empty file, which reads as "not ended" like no file.
    'printf "%s\\n" "$rc" > "$status"; '
    # The same status as the wrapper's own exit: the controller that started it still learns
    # it when the file cannot be written (a full disk).
    'exit $rc'
)


_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def unshellable(env: dict[str, str]) -> list[str]:
    """The wrapper's count-prefixed NAME=VALUE words for variables a shell would drop."""
    words = [f"{k}={v}" for k, v in env.items() if not _SHELL_NAME.fullmatch(k) and k and not k.startswith("-")]
    return [str(len(words)), *words]


class StepFilesUnavailable(OSError):
    """The batch step's input, output or error file cannot be opened: SLURM fails the job's launch."""


@dataclass
class BatchProcess:
    pid: int  # the wrapper; also the process group and session of the whole job
    pgid: int
    status_path: str
    job_dir: str
    popen: subprocess.Popen | None = None
    pid_start: str = ""  # the wrapper's kernel start time, as the pid file has it


def _open_output(path: str, append: bool) -> int:
    # Always O_APPEND: slurmstepd's own notes ("*** JOB 12 CANCELLED ***") are
    # appended by another writer and must not be overwritten by the job's offset.
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC)
    return os.open(path, flags, 0o644)


def output_paths(ctx: JobContext, stdout_pattern: str, stderr_pattern: str | None, input_pattern: str | None):
    """The batch step's stdout, stderr and stdin paths, patterns expanded (``%s`` is ``batch``)."""
    fields = {
        "job_id": ctx.job_id, "job_name": ctx.job_name, "user": ctx.user,
        "node_name": ctx.nodes[0].name, "node_id": 0, "step_id": "batch", "task_id": 0,
    }
    if ctx.array_job_id is not None:
        fields.update(array_job_id=ctx.array_job_id, array_task_id=ctx.array_task_id)

    def place(pattern: str) -> str:
        path = expand_output_pattern(pattern, fields)
        return path if os.path.isabs(path) else os.path.join(ctx.work_dir, path)

    out = place(stdout_pattern)
    err = place(stderr_pattern) if stderr_pattern else out
    inp = place(input_pattern) if input_pattern else "/dev/null"
    return out, err, inp


def missing_directory(ctx: JobContext, stdout_pattern: str, stderr_pattern: str | None) -> str | None:
    """The first directory the batch step will need that does not exist yet: its working
    directory or the one its output or error file goes into."""
    out, err, _ = output_paths(ctx, stdout_pattern, stderr_pattern, None)
    for directory in (ctx.work_dir, os.path.dirname(out), os.path.dirname(err)):
        if not os.path.isdir(directory):
            return directory
    return None


def _open_step_files(out_path: str, err_path: str, in_path: str, append: bool) -> tuple[int, int, int]:
    """stdin, then stdout, then stderr, as slurmstepd opens them: a missing error directory
    still leaves an empty output file behind, a missing input file none."""
    opened: list[int] = []
    try:
        opened.append(os.open(in_path, os.O_RDONLY))
        opened.append(_open_output(out_path, append))
        opened.append(opened[1] if err_path == out_path else _open_output(err_path, append))
    except OSError as err:
        for fd in set(opened):
            os.close(fd)
        raise StepFilesUnavailable(err.errno, err.strerror, err.filename) from None
    return opened[0], opened[1], opened[2]


def start_batch(job, request, alloc, cluster, home: str | None = None,
                node_names: NodeNames | None = None) -> BatchProcess:
    """The controller's seam: start ``job``'s batch step on ``alloc`` as ``request`` asks, its
    processes on their nodes as ``node_names`` (``sflow.exec.node_names.prepare``) says."""
    return begin_batch(job, request, alloc, cluster, home, node_names)()


def begin_batch(job, request, alloc, cluster, home: str | None = None, node_names: NodeNames | None = None,
                ctx: JobContext | None = None):
    """``start_batch`` begun: its files written and its process on its way; the function returned
    gives the BatchProcess (or raises what starting it raised). Many begun before the first is
    asked for start side by side. ``ctx``: the job's context, if made already."""
    ctx = ctx or job_context(job, request, alloc, cluster)
    return begin_launch(
        ctx, request.script, request.script_args, request.environment, home=home or paths.home(),
        stdout_pattern=request.stdout_pattern, stderr_pattern=request.error, input_pattern=request.input,
        append=request.open_mode == "append" or job.restart_count > 0, node_names=node_names or NodeNames(),
    )


def launch_batch(ctx: JobContext, script: str, script_args: list[str], base_env: dict[str, str],
                 **options) -> BatchProcess:
    """Write the job's files and start its batch step; raises OSError if it cannot."""
    return begin_launch(ctx, script, script_args, base_env, **options)()


def begin_launch(
    ctx: JobContext,
    script: str,
    script_args: list[str],
    base_env: dict[str, str],
    *,
    home: str,
    stdout_pattern: str,
    stderr_pattern: str | None = None,
    input_pattern: str | None = None,
    append: bool = False,
    node_names: NodeNames = NodeNames(),
):
    """``launch_batch`` begun (see ``begin_batch``); raises OSError here if the files cannot be written."""
    ctx.hosts_file = node_names.hosts_file  # srun starts the job's tasks the same way
    directory = paths.job_dir(home, ctx.job_id)
    status_path = os.path.join(directory, "status")
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:  # run before (requeued): clear the last run's
        for stale in (status_path, status_path + ".tmp", status_path + ".times",
                      os.path.join(directory, "usage-batch.json")):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    script_path = os.path.join(directory, "slurm_script")
    write_file(script_path, script.encode("utf-8", "surrogateescape"), 0o700)
    write_file(os.path.join(directory, "context.json"), json.dumps(ctx.to_json()).encode(), 0o666)

    out_path, err_path, in_path = output_paths(ctx, stdout_pattern, stderr_pattern, input_pattern)
    in_fd, out_fd, err_fd = _open_step_files(out_path, err_path, in_path, append)
    cwd = ctx.work_dir
    if not os.path.isdir(cwd):
        # slurmstepd says it twice: once for the step, once for the batch task.
        note = (f"slurmstepd-{ctx.nodes[0].name}: error: couldn't chdir to `{cwd}': No such file or directory: "
                "going to /tmp instead\n")
        os.write(err_fd, 2 * note.encode("utf-8", "surrogateescape"))
        cwd = "/tmp"
    if node_names.problem:
        os.write(err_fd, warning(node_names.problem).encode("utf-8", "surrogateescape"))
    env = batch_environment(ctx, base_env)
    try:
        starting = start_on_node(
            ["/bin/sh", "-c", WRAPPER, "sflow-batch", status_path, *unshellable(env), script_path, *script_args],
            ctx.nodes[0].name, ctx.hosts_file, stdin=in_fd, stdout=out_fd, stderr=err_fd, cwd=cwd, env=env,
            start_new_session=True, close_fds=True,
        )
    except BaseException:
        for fd in {out_fd, err_fd, in_fd}:
            os.close(fd)
        raise

    def started() -> BatchProcess:
        try:
            popen = starting()
        finally:
            for fd in {out_fd, err_fd, in_fd}:
                os.close(fd)
        pid_start = process_start_time(popen.pid)
        write_file(os.path.join(directory, "pid"), f"{popen.pid} {pid_start}\n".encode(), 0o666)
        return BatchProcess(popen.pid, popen.pid, status_path, directory, popen, pid_start)

    return started


def process_start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a pid reused."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def alive(pid: int, start_time: str) -> bool:
    return bool(start_time) and process_start_time(pid) == start_time


def read_status(status_path: str) -> tuple[int, int] | None:
    """(exit code, signal) the wrapper recorded, or None if the script has not ended."""
    try:
        with open(status_path) as handle:
            rc = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return decode_status(rc)


def decode_status(rc: int) -> tuple[int, int]:
    """(exit code, signal) from the batch shell's status as the wrapper saw it."""
    if 128 < rc < 128 + 65:
        return 0, rc - 128  # the shell's way of saying "killed by signal N"
    return rc, 0


def batch_shell_pid(wrapper_pid: int) -> int | None:
    """The batch script's own process (the wrapper's child), for ``--signal=B:``."""
    try:
        with open(f"/proc/{wrapper_pid}/task/{wrapper_pid}/children") as handle:
            children = handle.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def signal_job(pgid: int, signum: int, *, batch_only: bool = False) -> bool:
    """Deliver ``signum`` to every process of the job, or only to its batch shell."""
    try:
        if batch_only:
            shell = batch_shell_pid(pgid)
            if shell is None:
                return False
            os.kill(shell, signum)
        else:
            os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False


SIGNALS_ON_CANCEL = (_signal.SIGCONT, _signal.SIGTERM)
