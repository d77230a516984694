"""The controller's side of the executor seam: start, signal and watch batch steps.

``sflow.exec.batch`` runs a job's batch step under a wrapper that writes the
exit status to a file even if the controller is dead (``sflow.exec.remote_batch``
does the same for remote nodes through a local agent); this module starts it,
signals the job's processes (all of them, the batch shell, or the srun
steps), and knows a process by pid *and* kernel start time so a reused pid
is never taken for a job.
"""

from __future__ import annotations

import os
import signal as _signal
from dataclasses import dataclass

from sflow.backends.base import Allocation
from sflow.exec.usage import children_map
from sflow.records import JobRecord

# The executor's larger modules (batch, remote_batch, context, srun) load with the first job that
# starts: a controller started on demand answers its first command about 20 ms sooner.


_made_roots: set[str] = set()  # nodes' working roots made by this process: one mkdir each, not one per job


@dataclass
class Launched:
    pid: int
    pgid: int
    pid_start: str
    status_path: str
    popen: object = None


def start(job: JobRecord, request, alloc: Allocation, cluster, home: str, node_names=None) -> Launched:
    """Start the batch step (``sflow.exec.batch.start_batch``), local processes on their nodes as
    ``node_names`` says (``sflow.exec.node_names.prepare``); raises if it cannot."""
    return begin(job, request, alloc, cluster, home, node_names)()


def begin(job: JobRecord, request, alloc: Allocation, cluster, home: str, node_names=None, ctx=None):
    """``start`` begun: the function returned gives the Launched, or raises what starting raised.
    Raises at once when the step's files cannot be made. ``ctx``: the JobContext if already made."""
    from sflow.exec import batch  # deferred: loaded with the first job

    if any(node.address for node in alloc.nodes):  # remote nodes: a local agent runs the step over SSH
        from sflow.exec.remote_batch import start_remote_batch  # deferred: loaded with the first job

        proc = start_remote_batch(job, request, alloc, cluster, home)
        launched = Launched(proc.pid, proc.pgid, process_start_time(proc.pid), proc.status_path, proc.popen)
        return lambda: launched
    for node in alloc.nodes:
        if node.root_dir and node.root_dir not in _made_roots:
            os.makedirs(node.root_dir, mode=0o700, exist_ok=True)
            _made_roots.add(node.root_dir)
    starting = batch.begin_batch(job, request, alloc, cluster, home, node_names, ctx)

    def started() -> Launched:
        proc = starting()
        return Launched(proc.pid, proc.pgid, proc.pid_start or process_start_time(proc.pid), proc.status_path,
                        getattr(proc, "popen", None))

    return started


def local_context(job: JobRecord, request, alloc: Allocation, cluster):
    """The JobContext of a batch step on this machine (None for remote nodes, whose agent makes its own)."""
    if any(node.address for node in alloc.nodes):
        return None
    from sflow.exec.context import job_context  # deferred: loaded with the first job

    return job_context(job, request, alloc, cluster)


def missing_directory(job: JobRecord, request, alloc: Allocation, cluster, ctx=None) -> str | None:
    """A directory the local batch step needs that is not there yet (None for remote nodes,
    whose agent makes its own). ``ctx``: ``local_context``'s answer, if already asked."""
    if ctx is None:
        ctx = local_context(job, request, alloc, cluster)
        if ctx is None:
            return None
    from sflow.exec import batch  # deferred: loaded with the first job

    return batch.missing_directory(ctx, request.stdout_pattern, request.error)


# ------------------------------------------------------------------ processes


def _stat(pid: int) -> tuple[str, str] | None:
    """(state letter, kernel start time in clock ticks since boot) of ``pid``, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode(), fields[19].decode()


def process_start_time(pid: int) -> str:
    """The kernel's start time of ``pid``; "" if there is no such process."""
    stat = _stat(pid)
    return stat[1] if stat else ""


def alive(pid: int | None, pid_start: str | None) -> bool:
    """``pid`` is still the process started at ``pid_start``, and has not ended."""
    if not pid or not pid_start:
        return False
    stat = _stat(pid)
    return stat is not None and stat[1] == pid_start and stat[0] not in ("Z", "X")


def read_status(path: str | None) -> tuple[int, int] | None:
    """(exit code, signal) the wrapper recorded, or None."""
    if not path:
        return None
    from sflow.exec import batch  # deferred: loaded with the first job

    return batch.read_status(path)


def decode_status(rc: int) -> tuple[int, int]:
    from sflow.exec import batch  # deferred: loaded with the first job

    return batch.decode_status(rc)


def _cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def _is_srun(pid: int) -> bool:
    words = [os.path.basename(w) for w in _cmdline(pid)[:2]]
    return b"srun" in words


def step_processes(pgid: int) -> list[int]:
    """The job's srun steps and their tasks: what a signal without ``--batch`` reaches.

    SLURM signals the job's steps but not the batch shell (nor the shell's
    other children); here a step is an ``srun`` process below the batch
    shell, with everything it started.
    """
    children = children_map()
    found: list[int] = []
    stack = list(children.get(pgid, []))  # the batch shell(s) under the wrapper
    shells = set(stack)
    while stack:
        pid = stack.pop()
        kids = children.get(pid, [])
        if pid not in shells and _is_srun(pid):
            # The tasks, not srun itself: srun passes signals on to its tasks, which would get two.
            todo = list(kids)
            while todo:
                current = todo.pop()
                found.append(current)
                todo += children.get(current, [])
            continue
        stack += kids
    return found


def step_pids(pgid: int | None, step_id: int) -> list[int]:
    """The processes of srun step ``step_id`` of the job led by ``pgid``."""
    if not pgid:
        return []
    needle = f"\0SLURM_STEP_ID={step_id}\0".encode()
    children = children_map()
    found, stack = [], list(children.get(pgid, []))
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if needle in b"\0" + handle.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def terminate(pgid: int) -> None:
    """SIGCONT then SIGTERM to the whole job, as slurmstepd ends one (SIGKILL comes after KillWait)."""
    signal_job(pgid, _signal.SIGCONT)
    signal_job(pgid, _signal.SIGTERM)


def _session(pgid: int) -> list[int]:
    """The job's processes: its session (the batch wrapper leads one, and a step's tasks lead
    process groups of their own inside it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdecimal():
            continue
        try:
            if os.getsid(int(entry)) == pgid:
                found.append(int(entry))
        except OSError:
            continue
    return found


def _kill_each(pids, signum: int) -> bool:
    sent = False
    for pid in pids:
        try:
            os.kill(pid, signum)
            sent = True
        except ProcessLookupError:
            pass
    return sent


def signal_job(job_pgid: int | None, signum: int, mode: str = "all") -> bool:
    """Deliver ``signum``: ``all`` the job's processes, ``batch`` the batch shell only,
    ``steps`` the srun steps only, ``full`` (scancel --full) every process once.
    False if nothing was there to signal."""
    if not job_pgid:
        return False
    from sflow.exec import batch, remote_batch  # deferred: loaded with the first job
    from sflow.exec.srun import SRUN_FORWARDS

    agent = remote_batch.agent_dir(job_pgid) if mode not in ("all", "full") else None
    if agent is not None:  # a remote step: its agent picks the processes over there
        return remote_batch.request_signal(job_pgid, agent, signum, mode)
    if mode == "full" and signum in SRUN_FORWARDS:
        # srun passes such a signal on to its tasks, which get it from here already: a task would
        # see it twice (test6.15's step prints once per signal). So srun itself is left out.
        return _kill_each([pid for pid in _session(job_pgid) if not _is_srun(pid)], signum)
    if mode == "batch":
        return batch.signal_job(job_pgid, signum, batch_only=True)
    if mode == "steps":
        return _kill_each(step_processes(job_pgid), signum)
    try:
        os.killpg(job_pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    # Step tasks lead groups of their own within the job's session: they get it too.
    _kill_each([pid for pid in _session(job_pgid) if _pgid(pid) != job_pgid], signum)
    return True


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def sessions() -> dict[int, list[int]]:
    """Each session's processes, from one pass over /proc."""
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdecimal():
            continue
        try:
            found.setdefault(os.getsid(int(entry)), []).append(int(entry))
        except OSError:
            continue
    return found


def kill_stragglers(pgid: int | None, job_id: int, by_session: dict[int, list[int]] | None = None) -> None:
    """SIGKILL what is left in the job's session once its batch step is over.

    Only processes that carry the job's id in their environment: a session
    whose leader ended long ago (the controller was down) may share its
    number with a newer, unrelated one. ``by_session`` (``sessions()``) spares
    a pass over /proc per job when many end at once.
    """
    if not pgid:
        return
    members = (by_session if by_session is not None else sessions()).get(pgid, [])
    needle = f"\0SLURM_JOB_ID={job_id}\0".encode()
    for pid in members:
        try:
            if os.getsid(pid) != pgid:
                continue  # ended since, and the number taken by another
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if needle in b"\0" + handle.read():
                    os.kill(pid, _signal.SIGKILL)
        except OSError:
            continue


def find_launched(job_id: int, since: float, uid: int) -> tuple[int, str] | None:
    """A batch wrapper started for ``job_id`` after ``since`` whose pid was never recorded.

    Only needed when a controller died between starting a job and writing
    down its pid: the wrapper is a session leader whose environment names
    the job.
    """
    needle = f"\0SLURM_JOB_ID={job_id}\0".encode()
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/stat") as handle:
            boot = next(float(line.split()[1]) for line in handle if line.startswith("btime"))
    except (OSError, StopIteration):
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdecimal():
            continue
        pid = int(entry)
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            if os.getsid(pid) != pid:
                continue
            start = process_start_time(pid)
            if not start or boot + int(start) / ticks < since - 2:
                continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle not in b"\0" + handle.read():
                    continue
        except OSError:
            continue
        return pid, start
    return None


SIGCONT, SIGTERM, SIGKILL = _signal.SIGCONT, _signal.SIGTERM, _signal.SIGKILL
