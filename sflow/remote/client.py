"""Remote hosts for synchronous callers: ``SshClient`` keeps connections open between calls
and runs ``sflow.remote.ssh``'s commands and ``sflow.remote.stage``'s transfers on a background
event loop.
"""

from __future__ import annotations

import asyncio
import signal as _signal
from typing import Iterable, Mapping

import asyncssh

from sflow.remote.keys import client_key
from sflow.remote.knownhosts import HostKeyChanged, KnownHosts
from sflow.remote.loop import LoopThread
from sflow.remote.ssh import (
    Connection, RemoteError, RemoteProcess, Result, Target, check_commands, connect, run_all,
)
from sflow.remote.stage import SyncFollower, stage


class SyncProcess:
    """A ``RemoteProcess`` seen from a synchronous caller."""

    def __init__(self, loop: LoopThread, process: RemoteProcess):
        self._loop, self.process = loop, process

    @property
    def pgid(self) -> int | None:
        return self.process.pgid

    def signal(self, signum: int = _signal.SIGTERM, timeout: float = 30) -> bool:
        return self._loop.run(self.process.signal(signum), timeout)

    def write(self, data: bytes, timeout: float = 30) -> None:
        self._loop.run(self.process.write(data), timeout)

    def close_stdin(self) -> None:
        self._loop.call_soon(self.process.close_stdin)

    def wait(self, timeout: float | None = None) -> Result:
        return self._loop.run(self.process.wait(), timeout)


class SshClient:
    """Synchronous access to remote hosts, connections kept open between calls.

    Output callbacks run on the client's event loop thread, so they should be
    quick (append to a file, put on a queue).
    """

    def __init__(self, *, key: asyncssh.SSHKey | None = None, known_hosts: KnownHosts | None = None,
                 timeout: float = 30):
        self.key = key or client_key()
        self.known_hosts = known_hosts or KnownHosts()
        self.timeout = timeout
        self._loop = LoopThread("sflow-ssh")
        self._connections: dict[Target, Connection] = {}

    async def _connection(self, target: Target) -> Connection:
        conn = self._connections.get(target)
        if conn is None or conn.closed:
            conn = await connect(target, key=self.key, known_hosts=self.known_hosts, timeout=self.timeout)
            self._connections[target] = conn
        return conn

    def connection(self, target: Target) -> Connection:
        return self._loop.run(self._connection(target))

    def run(self, target: Target, command: str, timeout: float | None = None, **kwargs) -> Result:
        return self.run_all([target], command, timeout=timeout, **kwargs)[0]

    def run_all(self, targets: Iterable[Target], command: str, timeout: float | None = None, **kwargs) -> list[Result]:
        targets = list(targets)
        check_commands(targets, command, kwargs.get("env"), kwargs.get("cwd"))

        async def go() -> list[Result]:
            opened = await asyncio.gather(*(self._connection(t) for t in targets), return_exceptions=True)
            for outcome in opened:
                if isinstance(outcome, BaseException) and not isinstance(outcome, (RemoteError, HostKeyChanged)):
                    raise outcome
            conns = {t: c for t, c in zip(targets, opened) if isinstance(c, Connection)}
            failed = {t: str(c) for t, c in zip(targets, opened) if isinstance(c, BaseException)}
            results = await run_all([t for t in targets if t in conns], command, connections=conns,
                                    key=self.key, known_hosts=self.known_hosts, **kwargs)
            by_target = {r.target: r for r in results}
            return [by_target.get(t) or Result(t, error=failed[t]) for t in targets]

        return self._loop.run(go(), timeout)

    def start(self, target: Target, command: str, **kwargs) -> SyncProcess:
        async def go() -> RemoteProcess:
            return await (await self._connection(target)).start(command, **kwargs)

        return SyncProcess(self._loop, self._loop.run(go(), self.timeout))

    def stage(self, target: Target, source: str, dest: str, timeout: float | None = None) -> list[str]:
        async def go() -> list[str]:
            return await stage(await self._connection(target), source, dest)

        return self._loop.run(go(), timeout)

    def follow(self, target: Target, paths: Mapping[str, str], interval: float = 0.5):
        """Start appending what the remote files in ``paths`` (remote -> local) gain; returns the handle."""
        return SyncFollower(self._loop, self._loop.run(self._connection(target), self.timeout), paths, interval)

    def close(self) -> None:
        async def go() -> None:
            conns, self._connections = list(self._connections.values()), {}
            await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

        if self._loop.alive:
            self._loop.run(go(), 30)
            self._loop.stop()

    def __enter__(self) -> "SshClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["SshClient", "SyncProcess"]
