"""Commands on remote hosts over SSH, many hosts at once.

``connect`` opens one pinned, key-authenticated connection; ``Connection.start``
runs a command on it (``RemoteProcess``: streamed output, stdin, signals to
the remote process group, exit status); ``run_all`` fans one command out to
many hosts concurrently. ``sflow.remote.client.SshClient`` offers the same to
synchronous callers.
"""

from __future__ import annotations

import asyncio
import signal as _signal
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Union

import asyncssh

from sflow.errors import SflowError
from sflow.remote.command import PGID_MARKER, build_command
from sflow.remote.keys import client_key
from sflow.remote.knownhosts import HostKeyChanged, KnownHosts

DEFAULT_USER = "ubuntu"
CHUNK = 65536
# AES-GCM first: as strong as asyncssh's default ChaCha20-Poly1305 and, with
# AES-NI, far cheaper per packet in asyncssh (which builds a fresh
# ChaCha context for every packet).
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-ctr",
           "aes128-ctr")
OutputCallback = Callable[[bytes], None]
EnvSpec = Union[Mapping[str, str], Callable[["Target"], Mapping[str, str]], None]


class RemoteError(SflowError):
    """A host could not be reached or the connection broke."""


@dataclass(frozen=True)
class Target:
    """Where to run: ``address`` is ``host[:port]``; ``pin`` (an instance id) names its host key."""

    address: str
    pin: str | None = None
    user: str = DEFAULT_USER

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]

    @property
    def label(self) -> str:
        return self.pin or self.address


def split_address(address: str) -> tuple[str, int]:
    """``host[:port]`` (or ``[v6]:port``) as (host, port), port 22 when absent."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 22
    host, sep, port = address.rpartition(":")
    if sep and host and ":" not in host:
        return host, int(port)
    return address, 22


@dataclass
class Result:
    target: Target
    exit_status: int | None = None
    signal: int | None = None  # the signal that ended the remote command, if one did
    stdout: bytes = b""
    stderr: bytes = b""
    error: str | None = None  # set when the command could not run or the link broke

    @property
    def returncode(self) -> int:
        """As subprocess has it: the exit status, minus the signal, or ssh's 255 for a failed link."""
        if self.signal:
            return -self.signal
        if self.exit_status is not None:
            return self.exit_status
        return 255

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_status == 0


def _signal_number(name: str | None) -> int | None:
    if not name:
        return None
    sig = getattr(_signal, "SIG" + name, None)
    return int(sig) if sig is not None else None


class _PinningClient(asyncssh.SSHClient):
    """Checks the server's key against the pins; a refusal is kept to report it plainly."""

    def __init__(self, target: Target, known: KnownHosts):
        self.target, self.known = target, known
        self.refusal: HostKeyChanged | None = None

    def validate_host_public_key(self, host, addr, port, key) -> bool:
        try:
            self.known.verify(key, self.target.pin, self.target.host, self.target.port)
            return True
        except HostKeyChanged as exc:
            self.refusal = exc
            return False


async def connect(target: Target, *, key: asyncssh.SSHKey | None = None, known_hosts: KnownHosts | None = None,
                  timeout: float = 30) -> "Connection":
    """Connect as ``target.user`` with sflow's key; the host key must match its pin (or is pinned now)."""
    known = known_hosts or KnownHosts()
    key = key or client_key()
    clients: list[_PinningClient] = []

    def make_client() -> _PinningClient:
        clients.append(_PinningClient(target, known))
        return clients[-1]

    # Pinned keys go in as trusted so the server is asked for that key type.
    def trusted(_host, _addr, _port):
        return known.pinned(target.pin, target.host, target.port), [], []

    try:
        conn = await asyncssh.connect(
            target.host, target.port, username=target.user, client_keys=[key], client_factory=make_client,
            known_hosts=trusted, agent_path=None, config=None, encoding=None, gss_host=None,
            preferred_auth="publickey", connect_timeout=timeout, keepalive_interval=30,
            encryption_algs=CIPHERS,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        refusal = clients[-1].refusal if clients else None
        if refusal is not None:
            raise refusal from None
        raise RemoteError(f"{target.label}: {exc}") from None
    except asyncssh.PermissionDenied:
        raise RemoteError(f"{target.label}: permission denied (publickey)") from None
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise RemoteError(f"{target.label}: cannot connect to {target.address}: {reason}") from None
    return Connection(target, conn)


class Connection:
    def __init__(self, target: Target, conn: asyncssh.SSHClientConnection):
        self.target = target
        self.ssh = conn
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self.ssh.is_closed()

    async def start(self, command: str, *, env: Mapping[str, str] | None = None, cwd: str | None = None,
                    stdin: bytes | None = None, keep_stdin_open: bool = False,
                    on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
                    capture: bool = True) -> "RemoteProcess":
        """Start ``command`` (shell text); output goes to the callbacks and, with ``capture``, the result."""
        line = build_command(command, env, cwd)
        try:
            process = await self.ssh.create_process(line, encoding=None)
        except (OSError, asyncssh.Error) as exc:
            raise RemoteError(f"{self.target.label}: cannot start a command: {exc}") from None
        remote = RemoteProcess(self, process, on_stdout, on_stderr, capture)
        if stdin:
            process.stdin.write(stdin)
        if not keep_stdin_open:
            process.stdin.write_eof()
        return remote

    async def run(self, command: str, **kwargs) -> Result:
        return await (await self.start(command, **kwargs)).wait()

    async def signal_group(self, pgid: int, signum: int) -> bool:
        name = _signal.Signals(signum).name[3:]
        try:
            done = await self.ssh.run(f"kill -s {name} -- -{int(pgid)}", encoding=None, check=False)
        except (OSError, asyncssh.Error):
            return False
        return done.exit_status == 0

    def sftp(self):
        """An SFTP client for this connection (``async with conn.sftp() as sftp``)."""
        return self.ssh.start_sftp_client()

    async def close(self) -> None:
        self._closed = True
        self.ssh.close()
        await self.ssh.wait_closed()


class RemoteProcess:
    """A command running on a remote host."""

    def __init__(self, conn: Connection, process: asyncssh.SSHClientProcess, on_stdout, on_stderr, capture: bool):
        self.conn = conn
        self._process = process
        self._capture = capture
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._on_stdout, self._on_stderr = on_stdout, on_stderr
        self.pgid: int | None = None
        self._pgid_seen = asyncio.Event()
        self._result: Result | None = None
        self._readers = asyncio.gather(self._read(process.stdout, self._out, on_stdout),
                                       self._read_stderr(process.stderr))

    async def _read(self, stream, sink: list[bytes], callback) -> None:
        try:
            while data := await stream.read(CHUNK):
                self._deliver(data, sink, callback)
        except (OSError, asyncssh.Error):
            pass

    def _deliver(self, data: bytes, sink: list[bytes], callback) -> None:
        if self._capture:
            sink.append(data)
        if callback is not None:
            callback(data)

    async def _read_stderr(self, stream) -> None:
        # The wrapper's first stderr line names the process group; it is not the command's output.
        head = b""
        try:
            while b"\n" not in head and PGID_MARKER.startswith(head[:len(PGID_MARKER)]):
                data = await stream.read(CHUNK)
                if not data:
                    break
                head += data
        except (OSError, asyncssh.Error):
            pass
        finally:
            first, newline, rest = head.partition(b"\n")
            digits = first[len(PGID_MARKER):]
            # bytes.isdigit() is ASCII-only: bytes have no isdecimal().
            if newline and first.startswith(PGID_MARKER) and digits.isdigit():
                self.pgid, head = int(digits), rest
            self._pgid_seen.set()
        if head:
            self._deliver(head, self._err, self._on_stderr)
        await self._read(stream, self._err, self._on_stderr)

    @property
    def done(self) -> bool:
        """The remote command has ended (its exit was reported, or the link is gone)."""
        process = self._process
        return (self._result is not None or process.exit_status is not None or process.exit_signal is not None
                or self.conn.closed)

    async def write(self, data: bytes) -> None:
        self._process.stdin.write(data)
        await self._process.stdin.drain()

    def close_stdin(self) -> None:
        self._process.stdin.write_eof()

    async def signal(self, signum: int = _signal.SIGTERM) -> bool:
        """Send ``signum`` to the remote command's whole process group; False if it was not delivered."""
        if self.done:
            return False
        try:
            await asyncio.wait_for(self._pgid_seen.wait(), 10)
        except asyncio.TimeoutError:
            pass
        if self.pgid is not None and await self.conn.signal_group(self.pgid, signum):
            return True
        # No group known (or kill failed): the channel's own signal request reaches the command itself.
        try:
            self._process.send_signal(_signal.Signals(signum).name[3:])
            return True
        except (OSError, asyncssh.Error):
            return False

    async def wait(self) -> Result:
        if self._result is None:
            await self._readers
            await self._process.wait_closed()
            exit_signal = self._process.exit_signal
            status = self._process.exit_status
            result = Result(self.conn.target, stdout=b"".join(self._out), stderr=b"".join(self._err))
            if exit_signal:
                result.signal = _signal_number(exit_signal[0]) or 0
            elif status is not None and status >= 0:
                result.exit_status = status
            else:
                result.error = f"{self.conn.target.label}: connection lost before the command finished"
            self._result = result
        return self._result


def _env_for(env: EnvSpec, target: Target) -> Mapping[str, str] | None:
    return env(target) if callable(env) else env


def check_commands(targets: list[Target], command: str, env: EnvSpec, cwd: str | None) -> None:
    """Build every command line once, so a refused value stops the run before any host is contacted."""
    for target in targets:
        build_command(command, _env_for(env, target), cwd)


async def _run_one(target: Target, command: str, connection: Connection | None, *, env: EnvSpec, cwd, stdin,
                   on_stdout, on_stderr, capture, key, known_hosts, timeout) -> Result:
    own = connection is None
    try:
        conn = connection or await connect(target, key=key, known_hosts=known_hosts, timeout=timeout)
    except (RemoteError, HostKeyChanged) as exc:
        return Result(target, error=str(exc))
    try:
        return await conn.run(
            command, env=_env_for(env, target), cwd=cwd, stdin=stdin, capture=capture,
            on_stdout=(lambda data: on_stdout(target, data)) if on_stdout else None,
            on_stderr=(lambda data: on_stderr(target, data)) if on_stderr else None,
        )
    except RemoteError as exc:
        return Result(target, error=str(exc))
    finally:
        if own:
            await conn.close()


async def run_all(targets: Iterable[Target], command: str, *, env: EnvSpec = None, cwd: str | None = None,
                  stdin: bytes | None = None,
                  on_stdout: Callable[[Target, bytes], None] | None = None,
                  on_stderr: Callable[[Target, bytes], None] | None = None,
                  capture: bool = True, key: asyncssh.SSHKey | None = None,
                  known_hosts: KnownHosts | None = None, timeout: float = 30,
                  connections: Mapping[Target, Connection] | None = None, limit: int = 256) -> list[Result]:
    """Run ``command`` on every target at once; results in the targets' order, failures as results.

    ``env`` may be a mapping or a function of the target (per-node variables).
    Given ``connections``, those are used (and left open); others are opened
    for this call and closed after it.
    """
    targets = list(targets)
    check_commands(targets, command, env, cwd)
    key = key or client_key()
    known_hosts = known_hosts or KnownHosts()
    gate = asyncio.Semaphore(limit)

    async def one(target: Target) -> Result:
        async with gate:
            return await _run_one(target, command, (connections or {}).get(target), env=env, cwd=cwd, stdin=stdin,
                                  on_stdout=on_stdout, on_stderr=on_stderr, capture=capture, key=key,
                                  known_hosts=known_hosts, timeout=timeout)

    return list(await asyncio.gather(*(one(t) for t in targets)))
