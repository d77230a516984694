"""Files in and out of a remote host over SFTP.

``stage`` copies a submit directory to a remote root, skipping what
``.flowignore`` (or, without one, ``.gitignore``) excludes, in gitignore
syntax, and always ``.git``. ``Follower`` brings output files back while they
grow: it reads each remote file from the offset it has reached and appends
the new bytes to the local copy.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from typing import Mapping

import asyncssh
import pathspec

from sflow.fileio import write_file
from sflow.remote.loop import LoopThread
from sflow.remote.ssh import Connection

IGNORE_FILES = (".flowignore", ".gitignore")  # the first one present wins
ALWAYS_SKIPPED = (".git",)
PARALLEL_PUTS = 16
MAX_READ = 16 << 20  # bytes fetched per file per poll; the rest comes next poll


def ignore_spec(source: str) -> pathspec.PathSpec | None:
    for name in IGNORE_FILES:
        path = os.path.join(source, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                return pathspec.GitIgnoreSpec.from_lines(handle.read().splitlines())
    return None


def files_to_stage(source: str) -> list[str]:
    """Paths (relative, with ``/``) of the files under ``source`` that are staged.

    An ignored directory is not descended into, as git does. Symbolic links
    to files are staged as the files they point to; links to directories are
    skipped, which also keeps a link cycle from running forever.
    """
    spec = ignore_spec(source)
    chosen = []
    for top, dirs, files in os.walk(source):
        rel_top = os.path.relpath(top, source)
        rel_top = "" if rel_top == "." else rel_top.replace(os.sep, "/") + "/"
        kept_dirs = []
        for name in sorted(dirs):
            rel = rel_top + name
            if name in ALWAYS_SKIPPED or os.path.islink(os.path.join(top, name)):
                continue
            if spec is not None and spec.match_file(rel + "/"):
                continue
            kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(files):
            rel = rel_top + name
            if name in ALWAYS_SKIPPED or (spec is not None and spec.match_file(rel)):
                continue
            if os.path.isfile(os.path.join(top, name)):  # not a dangling link, socket or fifo
                chosen.append(rel)
    return chosen


async def stage(conn: Connection, source: str, dest: str, *, parallel: int = PARALLEL_PUTS) -> list[str]:
    """Copy ``source``'s staged files under ``dest`` on the remote host (relative to its home);
    modes and times are kept, so scripts stay executable. Returns the relative paths copied."""
    files = files_to_stage(source)
    gate = asyncio.Semaphore(parallel)
    async with conn.sftp() as sftp:
        await sftp.makedirs(dest, exist_ok=True)
        for directory in sorted({posixpath.dirname(f) for f in files} - {""}):
            await sftp.makedirs(posixpath.join(dest, directory), exist_ok=True)

        async def put(rel: str) -> None:
            async with gate:
                await sftp.put(os.path.join(source, *rel.split("/")), posixpath.join(dest, rel), preserve=True)

        await asyncio.gather(*(put(f) for f in files))
    return files


def _local_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class Follower:
    """Appends to local files what their remote counterparts gain, poll by poll.

    A file starts from its local copy's size, so a follower started again
    after a restart carries on where the copy ends rather than repeating it.
    A remote file that shrank was truncated (a requeued job's output): the
    local copy starts over with it.
    """

    def __init__(self, conn: Connection, paths: Mapping[str, str] | None = None, interval: float = 0.5):
        self.conn = conn
        self.interval = interval
        self.offsets: dict[str, int] = {}
        self.local: dict[str, str] = {}
        self._sftp: asyncssh.SFTPClient | None = None
        for remote, local in (paths or {}).items():
            self.add(remote, local)

    def add(self, remote: str, local: str, offset: int | None = None) -> None:
        self.local[remote] = local
        self.offsets[remote] = _local_size(local) if offset is None else offset

    async def poll(self) -> int:
        """Fetch what every file gained since the last poll; returns the bytes appended."""
        if self._sftp is None:
            self._sftp = await self.conn.ssh.start_sftp_client()
        counts = await asyncio.gather(*(self._poll_one(remote) for remote in list(self.local)))
        return sum(counts)

    async def _poll_one(self, remote: str) -> int:
        local, offset = self.local[remote], self.offsets[remote]
        try:
            size = (await self._sftp.stat(remote)).size or 0
        except asyncssh.SFTPError:
            return 0  # not created yet (or not readable yet): the next poll tries again
        if size < offset:
            offset = 0
            with open(local, "wb"):
                pass
        if size == offset:
            self.offsets[remote] = offset
            return 0
        async with self._sftp.open(remote, "rb") as handle:
            data = await handle.read(min(size - offset, MAX_READ), offset)
        write_file(local, data, 0o644, os.O_APPEND)
        self.offsets[remote] = offset + len(data)
        return len(data)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``interval`` until ``stop`` is set, then once more for the last bytes."""
        while not stop.is_set():
            await self.poll()
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
        await self.poll()
        await self.close()

    async def close(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
            await self._sftp.wait_closed()
            self._sftp = None


class SyncFollower:
    """A ``Follower`` running on a background loop; ``stop`` fetches the last bytes and ends it."""

    def __init__(self, loop: LoopThread, conn: Connection, paths: Mapping[str, str], interval: float = 0.5):
        self._loop = loop
        self.follower = Follower(conn, paths, interval)
        self._stop: asyncio.Event | None = None

        async def begin():
            self._stop = asyncio.Event()
            return asyncio.ensure_future(self.follower.run(self._stop))

        self._task = loop.run(begin(), 30)

    def add(self, remote: str, local: str) -> None:
        self._loop.call_soon(self.follower.add, remote, local)

    def stop(self, timeout: float = 60) -> None:
        async def end():
            self._stop.set()
            await self._task

        self._loop.run(end(), timeout)
