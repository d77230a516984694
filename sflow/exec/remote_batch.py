"""A batch step on remote nodes, run by a small local agent that behaves like the local wrapper.

``start_remote_batch`` (the controller's side) writes the job's files as the
local executor does, then starts ``python3 -m sflow.exec.remote_batch JOBDIR``
in a session of its own. The agent is what the controller watches: its pid,
and the exit status file it writes, exactly as for a local batch step, so
adoption after a controller restart and "no status means the step vanished"
(NODE_FAIL, requeued when allowed) work unchanged. The agent:

1. connects to every node (sflow's key; host keys pinned by instance id),
2. stages the submit directory to each node (``.flowignore``/``.gitignore``
   honoured) and, on the first node, the job's script, its context (with
   the other nodes' names and addresses, for ``srun``), sflow's key and the
   host-key pins,
3. runs the script on the first node under the same status-keeping wrapper
   as locally, with the SLURM environment of ``sflow.exec.env`` (paths are
   the staged ones there),
4. streams the batch step's output files and the step log back while they
   grow,
5. forwards the signals it receives to the remote process group (the
   controller asks for ``--batch``/steps-only signals through a request file
   and ``SIGRTMIN+1``),
6. writes the remote exit status into ``JOBDIR/status`` and leaves. A link
   that breaks is re-established to read the status the remote wrapper
   kept; a node that stays unreachable leaves no status.

All along it renews the lease of every node (touches ``~/.sflow/lease``
every ``lease_renew_seconds``): the dead-man switch on a spot instance
deletes its bid once the lease runs out, so the bid outlives the machine
running sflow by one lease at most (``sflow.mithril.deadman``).

Every value reaching a remote shell is quoted (``sflow.remote.command``).

The agent's SSH side (asyncssh, ``sflow.remote``) and Mithril's settings (httpx) are imported
where the agent uses them: the controller imports this module to signal every job, local ones
too, and would otherwise pay ~200 ms for them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shlex
import signal as _signal
import subprocess
import sys
import time
import traceback

from sflow.daemon import PACKAGE_ROOT
from sflow.exec.batch import WRAPPER, BatchProcess, _open_output, output_paths, process_start_time, unshellable
from sflow.exec.context import job_context
from sflow.exec.env import JobContext, batch_environment
from sflow.exec.remote_env import (LEASE, STATE_DIR, job_dir as remote_job_dir, portable, relative_to_home,
                                  submit_dir as remote_submit_dir)
from sflow.queue.paths import job_dir

SPEC_NAME = "remote.json"
SIGNALS_NAME = "signals"  # "<signal> <mode>" lines: signals for the batch shell or steps only
REQUEST_SIGNAL = _signal.SIGRTMIN + 1  # "read the signals file"
FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2,
             _signal.SIGALRM, _signal.SIGCONT)
TERMINATING = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT)
# Runs on the first node: the same code that signals a local job's batch shell or steps.
SIGNAL_SNIPPET = ("import sys; from sflow.queue.launch import signal_job; "
                  "signal_job(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])")


def _env_seconds(name: str, default: float) -> float:
    try:
        return max(0.05, float(os.environ.get(name) or default))
    except ValueError:
        return default


# ------------------------------------------------------------------ the controller's side


def start_remote_batch(job, request, alloc, cluster, home: str):
    """Write the job's files and start its agent; the agent's pid is the job's process group."""
    ctx = job_context(job, request, alloc, cluster)
    directory = job_dir(home, ctx.job_id)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.open(os.path.join(directory, "slurm_script"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700), "w",
              encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(request.script)
    with open(os.path.join(directory, "context.json"), "w") as handle:
        json.dump(ctx.to_json(), handle)
    out, err, stdin = output_paths(ctx, request.stdout_pattern, request.error, request.input)
    append = request.open_mode == "append" or job.restart_count > 0
    for path in dict.fromkeys((out, err)):  # created (or emptied) now, as the local step does
        os.close(_open_output(path, append))
    spec = {
        "job_id": ctx.job_id, "script_args": list(request.script_args),
        "env": portable(request.environment, request.export.assignments, ctx.withheld_env),
        "stdout": out, "stderr": err, "stdin": stdin if request.input else None,
        "submit_dir": request.submit_dir, "work_dir": request.work_dir,
        "follow_seconds": _env_seconds("SFLOW_REMOTE_POLL", 0.5),
        "connect_seconds": _env_seconds("SFLOW_REMOTE_CONNECT", 300.0),
        "reconnect_seconds": _env_seconds("SFLOW_REMOTE_RECONNECT", 60.0),
        "lease_renew_seconds": alloc.lease_renew_seconds,
    }
    with open(os.path.join(directory, SPEC_NAME), "w") as handle:
        json.dump(spec, handle)
    status_path = os.path.join(directory, "status")
    for stale in (status_path, status_path + ".tmp", os.path.join(directory, SIGNALS_NAME),
                  os.path.join(directory, "steps.jsonl")):
        if os.path.exists(stale):
            os.unlink(stale)
    # Only what the agent needs: never the controller's own environment (it holds the API key).
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"),
           "LANG": "C.UTF-8", "SFLOW_HOME": home, "SLURM_JOB_ID": str(ctx.job_id), "PYTHONPATH": PACKAGE_ROOT}
    log = os.open(os.path.join(directory, "agent.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        popen = subprocess.Popen([sys.executable, "-m", "sflow.exec.remote_batch", directory],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=directory, env=env,
                                 start_new_session=True, close_fds=True)
    finally:
        os.close(log)
    with open(os.path.join(directory, "pid"), "w") as handle:
        handle.write(f"{popen.pid} {process_start_time(popen.pid)}\n")
    return BatchProcess(popen.pid, popen.pid, status_path, directory, popen)


def agent_dir(pid: int) -> str | None:
    """The job directory of the agent whose pid this is, or None if it is no agent."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().split(b"\0")
    except OSError:
        return None
    if b"sflow.exec.remote_batch" not in words:
        return None
    words = [w for w in words if w]
    return os.fsdecode(words[-1]) if words else None


def request_signal(pid: int, directory: str, signum: int, mode: str) -> bool:
    """Ask the agent to deliver ``signum`` to the remote batch shell (``batch``) or steps (``steps``)."""
    line = f"{int(signum)} {mode}\n".encode()
    fd = os.open(os.path.join(directory, SIGNALS_NAME), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    try:
        os.kill(pid, REQUEST_SIGNAL)
        return True
    except ProcessLookupError:
        return False


# ------------------------------------------------------------------ the agent


class Agent:
    def __init__(self, directory: str):
        self.directory = directory
        with open(os.path.join(directory, SPEC_NAME)) as handle:
            self.spec = json.load(handle)
        with open(os.path.join(directory, "context.json")) as handle:
            self.ctx = JobContext.from_json(json.load(handle))
        self.home = os.environ["SFLOW_HOME"]
        self.job_id = self.spec["job_id"]
        self.state = remote_job_dir(self.job_id)  # relative to the remote home
        self.conn = None  # the first node's connection, while there is one
        self.remote = None  # the batch step there
        self.pgid: int | None = None
        self.early: list[int] = []  # signals that came before the step started
        self.signals_read = 0
        self.tasks: set = set()
        self.main_task = None
        self.lease_links: dict[int, object] = {}  # node index -> the connection that renews its lease
        self.connected = asyncio.Event()  # every node was reached once (and its host key pinned)

    # ------------------------------------------------------------ notes

    def note(self, text: str) -> None:
        """A line in the job's error file, as slurmstepd writes its own."""
        try:
            fd = os.open(self.spec["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"slurmstepd-{self.ctx.nodes[0].name}: error: {text}\n".encode())
            finally:
                os.close(fd)
        except OSError:
            pass
        print(f"{time.strftime('%H:%M:%S')} job {self.job_id}: {text}", file=sys.stderr, flush=True)

    def write_status(self, rc: int) -> None:
        path = os.path.join(self.directory, "status")
        with open(path + ".tmp", "w") as handle:
            handle.write(f"{rc}\n")
        os.replace(path + ".tmp", path)

    # ------------------------------------------------------------ signals

    def on_signal(self, signum: int) -> None:
        if self.pgid is None:
            self.early.append(signum)
            if signum in TERMINATING and self.remote is None and self.main_task is not None:
                self.main_task.cancel()  # cancelled before the script ran: stop setting it up
            return
        self._spawn(self.forward(signum, "all"))

    def on_request(self) -> None:
        try:
            with open(os.path.join(self.directory, SIGNALS_NAME), "rb") as handle:
                handle.seek(self.signals_read)
                data = handle.read()
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self.signals_read += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            try:
                number, mode = line.split()
                self._spawn(self.forward(int(number), mode))
            except ValueError:
                continue

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def forward(self, signum: int, mode: str) -> None:
        conn, pgid = self.conn, self.pgid
        if conn is None or pgid is None:
            return
        try:
            if mode == "all":
                await conn.signal_group(pgid, signum)
            else:
                await conn.run(f"python3 -c {shlex.quote(SIGNAL_SNIPPET)} {pgid} {int(signum)} {shlex.quote(mode)}")
        except Exception as err:  # the link is down: the step's status is fetched once it is back
            print(f"signal {signum} not delivered: {err}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------ the run

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in FORWARDED:
            loop.add_signal_handler(signum, self.on_signal, signum)
        loop.add_signal_handler(REQUEST_SIGNAL, self.on_request)
        self.main_task = asyncio.ensure_future(self.run())
        leases = asyncio.ensure_future(self.renew_leases())
        try:
            rc = await self.main_task
        except asyncio.CancelledError:
            rc = 128 + next(s for s in self.early if s in TERMINATING)
        except Exception as err:
            traceback.print_exc()
            self.note(f"batch step on {self.ctx.nodes[0].name} failed: {err}")
            rc = None
        leases.cancel()
        await asyncio.gather(leases, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.lease_links.values() if c is not None), return_exceptions=True)
        if rc is not None:
            self.write_status(rc)
        return 0

    async def renew_leases(self) -> None:
        """Touch every node's lease while the job runs, each over a connection of its own (the step's
        may break and be made again; a node's lease must not wait for that)."""
        every = self.spec.get("lease_renew_seconds")
        if not every:
            return
        command = f"mkdir -p {shlex.quote(STATE_DIR)} && touch {shlex.quote(LEASE)}"

        async def renew(index: int, node) -> None:
            conn = self.lease_links.get(index)
            try:
                if conn is None:
                    conn = self.lease_links[index] = await self.connect_once(node)
                done = await conn.run(command)
                if not done.ok:
                    raise ConnectionError(done.error or f"exit status {done.exit_status}")
            except Exception as err:  # tried again next time, over a new connection
                self.lease_links[index] = None
                if conn is not None:
                    await asyncio.gather(conn.close(), return_exceptions=True)
                print(f"{time.strftime('%H:%M:%S')} lease of {node.name} not renewed: {err}", file=sys.stderr,
                      flush=True)

        # Until then the instances' leases count from their boot: the first contact pins host keys.
        await self.connected.wait()
        while True:
            await asyncio.gather(*(renew(i, node) for i, node in enumerate(self.ctx.nodes)))
            await asyncio.sleep(every)

    async def run(self) -> int | None:
        # deferred: the agent's SSH side (module docstring)
        from sflow.remote.keys import client_key
        from sflow.remote.knownhosts import KnownHosts

        self.key = client_key(self.home)
        self.known = KnownHosts(os.path.join(self.home, "known_hosts"))
        conns = await asyncio.gather(*(self.connect(node) for node in self.ctx.nodes))
        self.connected.set()
        self.conn = conns[0]
        done = await self.conn.run("pwd")
        remote_home = done.stdout.decode().strip()
        if not done.ok or not remote_home.startswith("/"):
            raise RuntimeError(f"cannot find the home directory on {self.ctx.nodes[0].name}")
        work = self.remote_path(self.spec["work_dir"], remote_home)
        await asyncio.gather(*(self.stage_node(conn, work, remote_home) for conn in conns))
        await self.stage_first(remote_home, work)
        command, env = self.command(remote_home, work)
        follower = self.follow(self.conn)
        self.remote = await self.conn.start(command, env=env, cwd=work, capture=False)
        deadline = time.monotonic() + 30
        while self.remote.pgid is None and not self.remote.done and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the wrapper names its process group first thing
        self.pgid = self.remote.pgid
        for signum in self.early:
            await self.forward(signum, "all")
        result = await self.remote.wait()
        await self.stop_following(follower)
        if result.error is None:
            rc = await self.read_status(self.conn)
            if rc is None:  # the wrapper itself was killed
                rc = 128 + result.signal if result.signal else result.exit_status
            await self.close(conns)
            return rc
        await self.close(conns)
        return await self.reattach()

    async def connect(self, node):
        """One node, retried while it boots (sshd may come up after the instance says it runs)."""
        from sflow.remote.ssh import RemoteError, Target, connect  # deferred: asyncssh (module docstring)

        target = Target(node.address, pin=node.instance)
        deadline = time.monotonic() + self.spec["connect_seconds"]
        delay = 0.2
        while True:
            try:
                return await connect(target, key=self.key, known_hosts=self.known, timeout=15)
            except RemoteError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cannot reach node {node.name}: {err}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def remote_path(self, local: str, remote_home: str) -> str:
        """Where a local path under the submit directory is on the instance (else the staged root)."""
        base = f"{remote_home}/{remote_submit_dir(self.job_id)}"
        rel = os.path.relpath(local, self.spec["submit_dir"])
        if rel == ".":
            return base
        if rel.startswith(".."):
            return base
        return f"{base}/{rel.replace(os.sep, '/')}"

    async def stage_node(self, conn, work: str, remote_home: str) -> None:
        from sflow.remote.stage import stage  # deferred: asyncssh (module docstring)

        source = self.spec["submit_dir"]
        if os.path.isdir(source):
            await stage(conn, source, remote_submit_dir(self.job_id))
        async with conn.sftp() as sftp:
            await sftp.makedirs(relative_to_home(work, remote_home), exist_ok=True)

    async def stage_first(self, remote_home: str, work: str) -> None:
        """The job's own files on the first node, where the batch step and its srun run."""
        # deferred: the agent's SSH side (module docstring)
        import asyncssh

        from sflow.remote.keys import key_path
        from sflow.remote.knownhosts import host_pattern
        from sflow.remote.ssh import split_address

        # What the job's environment withholds stayed here on the way: the instance's copy need not say it.
        ctx = dataclasses.replace(self.ctx, submit_dir=f"{remote_home}/{remote_submit_dir(self.job_id)}",
                                  work_dir=work, conf_path="", withheld_env=())
        self.remote_ctx = ctx
        pins = []
        for node in self.ctx.nodes:
            pin = node.instance
            host, port = split_address(node.address)
            names = [pin, host_pattern(host, port)] if pin else [host_pattern(host, port)]
            for entry in self.known.entries():
                if names[0] in entry.names:
                    pins.append(f"{','.join(names)} {entry.key.export_public_key('openssh').decode().strip()}\n")
        with open(os.path.join(self.directory, "slurm_script"), "rb") as handle:
            script = handle.read()
        with open(key_path(self.home), "rb") as handle:
            private = handle.read()
        with open(key_path(self.home) + ".pub", "rb") as handle:
            public = handle.read()
        files = [
            (f"{self.state}/context.json", json.dumps(ctx.to_json()).encode(), 0o600),
            (f"{self.state}/slurm_script", script, 0o700),
            # The first node's srun reaches the other nodes as sflow does: this key opens only
            # the instances of this account, and it lives in the job's state directory.
            (f"{STATE_DIR}/ssh/id_ed25519", private, 0o600),
            (f"{STATE_DIR}/ssh/id_ed25519.pub", public, 0o644),
            (f"{STATE_DIR}/known_hosts", "".join(pins).encode(), 0o600),
        ]
        if self.spec.get("stdin"):
            with open(self.spec["stdin"], "rb") as handle:
                files.append((f"{self.state}/stdin", handle.read(), 0o600))
        async with self.conn.sftp() as sftp:
            for directory in (self.state, f"{STATE_DIR}/ssh"):
                await sftp.makedirs(directory, exist_ok=True)
            for path, data, mode in files:
                async with sftp.open(path, "wb", asyncssh.SFTPAttrs(permissions=mode)) as handle:
                    await handle.write(data)
                await sftp.chmod(path, mode)

    def command(self, remote_home: str, work: str) -> tuple[str, dict]:
        """The wrapped batch step and its environment (values are quoted by ``build_command``)."""
        state = f"{remote_home}/{self.state}"
        base = dict(self.spec["env"])
        base["SFLOW_HOME"] = f"{remote_home}/{STATE_DIR}"
        base["SFLOW_NODES"] = ",".join(f"{n.name}={n.address}" for n in self.ctx.nodes)
        env = batch_environment(self.remote_ctx, base)
        q = shlex.quote
        same = self.spec["stderr"] == self.spec["stdout"]
        stdin = f"{state}/stdin" if self.spec.get("stdin") else "/dev/null"
        redirect = f" <{q(stdin)} >{q(state + '/stdout')}" + (" 2>&1" if same else f" 2>{q(state + '/stderr')}")
        args = "".join(f" {q(a)}" for a in self.spec["script_args"])
        odd = "".join(f" {q(word)}" for word in unshellable(env))
        command = (f"exec /bin/sh -c {q(WRAPPER)} sflow-batch {q(state + '/status')}{odd} {q(state + '/slurm_script')}"
                   f"{args}{redirect}")
        return command, env

    def follow(self, conn):
        from sflow.remote.stage import Follower  # deferred: asyncssh (module docstring)

        follower = Follower(conn, interval=self.spec["follow_seconds"])
        follower.add(f"{self.state}/stdout", self.spec["stdout"], offset=0)
        if self.spec["stderr"] != self.spec["stdout"]:
            follower.add(f"{self.state}/stderr", self.spec["stderr"], offset=0)
        follower.add(f"{self.state}/steps.jsonl", os.path.join(self.directory, "steps.jsonl"), offset=0)
        stop = asyncio.Event()
        return follower, stop, asyncio.ensure_future(self._follow(follower, stop))

    async def _follow(self, follower, stop) -> None:
        try:
            await follower.run(stop)
        except Exception as err:  # a broken link: what is missing is fetched after reattaching
            print(f"output not followed: {err}", file=sys.stderr, flush=True)

    async def stop_following(self, following) -> None:
        _, stop, task = following
        stop.set()
        try:
            await asyncio.wait_for(task, 60)
        except (asyncio.TimeoutError, Exception):
            pass

    async def read_status(self, conn) -> int | None:
        done = await conn.run(f"cat -- {shlex.quote(self.state + '/status')}")
        if done.error is not None:
            raise ConnectionError(done.error)
        try:
            return int(done.stdout.decode().strip())
        except ValueError:
            return None

    async def reattach(self) -> int | None:
        """The link broke: reconnect to read the status the remote wrapper keeps, following the
        output meanwhile; give up (no status) once the node stays unreachable."""
        node = self.ctx.nodes[0]
        lost = time.monotonic()
        self.note(f"lost the connection to {node.name}; reconnecting")
        while time.monotonic() - lost < self.spec["reconnect_seconds"]:
            try:
                conn = await self.connect_once(node)
            except Exception:
                await asyncio.sleep(1.0)
                continue
            self.conn = conn
            following = self.follow(conn)
            try:
                while True:
                    rc = await self.read_status(conn)
                    if rc is not None:
                        await self.stop_following(following)
                        await self.close([conn])
                        return rc
                    await asyncio.sleep(self.spec["follow_seconds"])
            except Exception:
                await self.stop_following(following)
                lost = time.monotonic()
        self.note(f"node {node.name} is unreachable; the batch step is lost")
        return None

    async def connect_once(self, node):
        from sflow.remote.ssh import Target, connect  # deferred: asyncssh (module docstring)

        return await connect(Target(node.address, pin=node.instance), key=self.key, known_hosts=self.known,
                             timeout=10)

    async def close(self, conns) -> None:
        self.conn = None if self.conn in conns else self.conn
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m sflow.exec.remote_batch JOBDIR", file=sys.stderr)
        return 2
    agent = Agent(argv[0])
    return asyncio.run(agent.main())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
