"""Emulated Mithril instances: real SSH servers on loopback, one per instance.

Each instance is an asyncssh server on 127.0.0.1 with its own name, working
root (its user's home), host key and authorized keys. It behaves like the
OpenSSH of an instance as far as sflow can tell: public-key login as
``ubuntu`` only, commands run by ``/bin/sh -c`` in a session of their own
(so a signal reaches the whole process group), exit statuses and exit
signals reported, SFTP confined to the root. ``hostname`` prints the
instance's name through a script first on PATH.

``HostPool`` runs any number of them on one background event loop for
synchronous callers; ``host_factory`` is the hook the API emulator calls
when an instance starts.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shlex
import shutil
import signal as _signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

import asyncssh

from sflow import statedir
from sflow.mithril.startup import INSTANCE_USER
from sflow.remote.loop import LoopThread

LOOPBACK = "127.0.0.1"
STATE_DIR = ".instance"  # under the root: the host key and bin/
HOST_KEY_FILE = "ssh_host_ed25519_key"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Ubuntu's sshd_config accepts these from clients (AcceptEnv); nothing else.
ACCEPTED_CLIENT_ENV = ("LANG", "LC_")
CHUNK = 65536


@dataclass(frozen=True)
class SshHost:
    name: str
    port: int
    root: str
    host_key_fingerprint: str
    hostname: str = ""

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"


def load_host_key(root: str) -> asyncssh.SSHKey:
    """The instance's host key, made on first start and kept under its root."""
    state = os.path.join(root, STATE_DIR)
    os.makedirs(state, mode=0o700, exist_ok=True)
    path = os.path.join(state, HOST_KEY_FILE)
    try:
        return asyncssh.read_private_key(path)
    except FileNotFoundError:
        pass
    key = asyncssh.generate_private_key("ssh-ed25519")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(key.export_private_key())
    return key


def _write_hostname_script(bin_dir: str, hostname: str) -> None:
    os.makedirs(bin_dir, exist_ok=True)
    path = os.path.join(bin_dir, "hostname")
    name = shlex.quote(hostname)
    with open(path, "w") as handle:
        handle.write(f"#!/bin/sh\ncase \"$1\" in -I|-i) echo {LOOPBACK} ;; *) printf '%s\\n' {name} ;; esac\n")
    os.chmod(path, 0o755)


def _accepted(name) -> bool:
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return name == "LANG" or name.startswith("LC_")


def _text(value) -> str:
    return value.decode(errors="surrogateescape") if isinstance(value, bytes) else str(value)


class Instance:
    """One emulated instance: its files, its SSH server and the processes it runs."""

    def __init__(self, name: str, root: str, authorized_keys: str | Iterable[str], hostname: str | None = None):
        self.name = name
        self.hostname = hostname or name
        self.root = os.path.realpath(root)
        text = authorized_keys if isinstance(authorized_keys, str) else "\n".join(authorized_keys)
        self.authorized_keys = asyncssh.import_authorized_keys(text)
        self.bin_dir = os.path.join(self.root, STATE_DIR, "bin")
        self.host_key: asyncssh.SSHKey | None = None
        self.port = 0
        self.processes: set[asyncio.subprocess.Process] = set()
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._acceptor = None

    def environment(self, requested: dict) -> dict[str, str]:
        # A clean login environment, as sshd gives; this machine's Python
        # stands in for the image's, so it comes right after the instance's bin/.
        env = {
            "HOME": self.root, "USER": INSTANCE_USER, "LOGNAME": INSTANCE_USER, "SHELL": "/bin/sh",
            "PATH": os.pathsep.join([self.bin_dir, os.path.dirname(sys.executable), SYSTEM_PATH]),
            "LANG": "C.UTF-8", "HOSTNAME": self.hostname, "SFLOW_HOSTNAME": self.hostname,
        }
        for key, value in (requested or {}).items():
            if _accepted(key):
                env[_text(key)] = _text(value)
        return env

    async def start(self, port: int = 0) -> SshHost:
        os.makedirs(self.root, mode=0o755, exist_ok=True)
        self.host_key = load_host_key(self.root)
        _write_hostname_script(self.bin_dir, self.hostname)
        self._acceptor = await asyncssh.create_server(
            lambda: _InstanceServer(self), LOOPBACK, port,
            server_host_keys=[self.host_key], encoding=None,
            password_auth=False, kbdint_auth=False, gss_host=None,
        )
        self.port = self._acceptor.get_port()
        return self.describe()

    def describe(self) -> SshHost:
        return SshHost(self.name, self.port, self.root, self.host_key.get_fingerprint(), self.hostname)

    async def stop(self) -> None:
        """The instance goes away: its processes die and its connections drop."""
        for proc in list(self.processes):
            _kill_group(proc.pid, _signal.SIGKILL)
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for conn in list(self.connections):
            conn.close()
        for conn in list(self.connections):
            await conn.wait_closed()
        if self.processes:
            await asyncio.gather(*(p.wait() for p in list(self.processes)), return_exceptions=True)


def _kill_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class _InstanceServer(asyncssh.SSHServer):
    def __init__(self, instance: Instance):
        self.instance = instance
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.instance.connections.add(conn)

    def connection_lost(self, exc) -> None:
        self.instance.connections.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        # Only the instance's user has keys; anyone else fails public-key auth.
        if username == INSTANCE_USER:
            self.conn.set_authorized_keys(self.instance.authorized_keys)
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def session_requested(self):
        root = self.instance.root
        return _CommandChannel(self.instance, lambda chan: asyncssh.SFTPServer(chan, chroot=root))


class _CommandChannel(asyncssh.SSHServerProcess):
    """One session channel: an exec'd command, a shell reading stdin, or SFTP."""

    def __init__(self, instance: Instance, sftp_factory):
        super().__init__(self._serve, sftp_factory, 3, False)
        self.instance = instance
        self.pgid: int | None = None
        self._early_signals: list[int] = []

    # Signals arrive as channel requests; they go to the command's whole
    # process group, as a job's children must not outlive a cancel.
    def signal_received(self, signal: str) -> None:
        signum = getattr(_signal, "SIG" + _text(signal).upper().removeprefix("SIG"), None)
        if not isinstance(signum, int):
            return
        if self.pgid is None:
            self._early_signals.append(signum)
        else:
            _kill_group(self.pgid, signum)

    def break_received(self, msec: int) -> bool:
        self.signal_received("INT")
        return True

    async def _serve(self, _process) -> None:
        command = self.command
        argv = ["/bin/sh", "-c", _text(command)] if command is not None else ["/bin/sh"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=self.instance.root,
                env=self.instance.environment(self.env), start_new_session=True,
            )
        except OSError as exc:
            message = f"sh: {exc.strerror}\n".encode()
            self._finish(lambda: (self.stderr.write(message), self.exit(127)))
            return
        self.pgid = proc.pid
        self.instance.processes.add(proc)
        for signum in self._early_signals:
            _kill_group(proc.pid, signum)
        feeding = asyncio.ensure_future(self._feed(proc))
        try:
            await asyncio.gather(_pump(proc.stdout, self.stdout), _pump(proc.stderr, self.stderr))
            rc = await proc.wait()
        finally:
            feeding.cancel()
            self.instance.processes.discard(proc)
        if rc < 0:
            self._finish(lambda: self.exit_with_signal(_signal.Signals(-rc).name[3:]))
        else:
            self._finish(lambda: self.exit(rc))

    @staticmethod
    def _finish(report: Callable[[], object]) -> None:
        try:
            report()
        except (OSError, asyncssh.Error):
            pass  # the client is gone; nobody is left to tell

    async def _feed(self, proc: asyncio.subprocess.Process) -> None:
        try:
            while True:
                try:
                    data = await self.stdin.read(CHUNK)
                except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged, asyncssh.SignalReceived):
                    continue
                if not data:
                    break
                proc.stdin.write(data)
                await proc.stdin.drain()
        except (OSError, asyncssh.Error):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass


async def _pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter) -> None:
    """Copy a pipe to the channel; once the client is gone, keep draining the pipe."""
    connected = True
    while True:
        data = await source.read(CHUNK)
        if not data:
            return
        if not connected:
            continue
        try:
            sink.write(data)
            await sink.drain()
        except (OSError, asyncssh.Error):
            connected = False


class HostPool:
    """Emulated instances for synchronous callers, all served by one background loop."""

    def __init__(self, base_dir: str | None = None):
        self._own_base = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="sflow-hosts-")
        self._loop = LoopThread("sflow-sshhosts")
        self._instances: dict[str, Instance] = {}
        self._lock = threading.Lock()

    def start(self, name: str, authorized_keys: str | Iterable[str], *, hostname: str | None = None,
              root: str | None = None, port: int = 0) -> SshHost:
        """Start instance ``name`` (its root defaults to ``base_dir/name``)."""
        with self._lock:
            if name in self._instances:
                raise ValueError(f"instance {name} is already running")
            instance = Instance(name, root or os.path.join(self.base_dir, name), authorized_keys, hostname)
            self._instances[name] = instance
        try:
            return self._loop.run(instance.start(port), timeout=30)
        except BaseException:
            with self._lock:
                self._instances.pop(name, None)
            raise

    def get(self, name: str) -> SshHost | None:
        instance = self._instances.get(name)
        return instance.describe() if instance else None

    def names(self) -> list[str]:
        return list(self._instances)

    def stop(self, name: str) -> None:
        with self._lock:
            instance = self._instances.pop(name, None)
        if instance is not None and self._loop.alive:
            self._loop.run(instance.stop(), timeout=30)

    def close(self) -> None:
        for name in list(self._instances):
            self.stop(name)
        self._loop.stop()
        if self._own_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> "HostPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_pool: HostPool | None = None
_pool_lock = threading.Lock()


def default_pool() -> HostPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = HostPool()
            atexit.register(_pool.close)
        return _pool


def host_factory(instance_id: str, hostname: str, authorized_keys: str | Iterable[str],
                 root: str | None = None) -> tuple[str, Callable[[], None]]:
    """Start the SSH side of an emulated instance: its ``ssh_destination`` and how to stop it.

    The root defaults to ``$SFLOW_HOME/mithril/instances/<instance_id>``, read
    now rather than when the pool was made, so each test's home is its own.
    """
    pool = default_pool()
    host = pool.start(instance_id, authorized_keys, hostname=hostname,
                      root=root or os.path.join(statedir.home(), "mithril", "instances", instance_id))
    return host.address, lambda: pool.stop(instance_id)
