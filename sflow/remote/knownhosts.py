"""Host-key pinning: trust a host's key on first contact, refuse it if it ever changes.

Pins live in ``$SFLOW_HOME/known_hosts`` in OpenSSH's format, so ``ssh`` and
``ssh-keygen -F`` can read them. An instance id makes a better pin name than
``[host]:port``: loopback ports (and cloud addresses) get reused by other
instances, an instance id never does. A line written for an instance names
both, ``inst-1,[127.0.0.1]:2222 ssh-ed25519 AAAA...``; lookups by instance id
see only lines naming that id.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass

import asyncssh

from sflow import statedir
from sflow.errors import SflowError

DEFAULT_PORT = 22


class HostKeyChanged(SflowError):
    def __init__(self, label: str, path: str):
        super().__init__(f"host key for {label} changed; refusing to connect (see {path})")
        self.label = label
        self.path = path


def host_pattern(host: str, port: int = DEFAULT_PORT) -> str:
    """OpenSSH's name for a host: ``host`` on port 22, else ``[host]:port``."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


@dataclass(frozen=True)
class Entry:
    names: tuple[str, ...]
    key: asyncssh.SSHKey


def _parse(text: str, name: str | None = None) -> list[Entry]:
    """The file's entries; given ``name``, only the lines naming it (keys are decoded only for those)."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "@")):
            continue  # markers (@revoked, @cert-authority) are OpenSSH's, not ours
        names, _, rest = line.partition(" ")
        names = tuple(names.split(","))
        if name is not None and name not in names:
            continue
        try:
            key = asyncssh.import_public_key(rest.strip())
        except (asyncssh.KeyImportError, ValueError):
            continue
        entries.append(Entry(names, key))
    return entries


class KnownHosts:
    def __init__(self, path: str | None = None):
        if path is None:
            path = os.path.join(statedir.home(), "known_hosts")
        self.path = path

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        return fd

    @contextlib.contextmanager
    def _locked(self):
        """``(fd, text)``: the file open for appending, locked against other writers
        (concurrent first contacts must not pin twice), and its text as of the lock."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with open(os.dup(fd), encoding="utf-8", errors="replace") as handle:
                handle.seek(0)
                text = handle.read()
            yield fd, text
        finally:
            os.close(fd)

    def entries(self, name: str | None = None) -> list[Entry]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                return _parse(handle.read(), name)
        except FileNotFoundError:
            return []

    @staticmethod
    def _lookup_name(pin: str | None, host: str, port: int) -> str:
        return pin or host_pattern(host, port)

    def pinned(self, pin: str | None, host: str, port: int = DEFAULT_PORT) -> list[asyncssh.SSHKey]:
        """Keys trusted for this host: those on lines naming the pin (or host:port, without one)."""
        return [e.key for e in self.entries(self._lookup_name(pin, host, port))]

    def verify(self, key: asyncssh.SSHKey, pin: str | None, host: str, port: int = DEFAULT_PORT) -> bool:
        """True if ``key`` was already pinned; pins it (False) on first contact.

        Raises HostKeyChanged when another key is pinned for this host.
        """
        name = self._lookup_name(pin, host, port)
        with self._locked() as (fd, text):
            known = [e.key for e in _parse(text, name)]
            if known:
                if key in known:
                    return True
                raise HostKeyChanged(pin or f"{host}:{port}", self.path)
            names = [pin, host_pattern(host, port)] if pin else [host_pattern(host, port)]
            os.write(fd, f"{','.join(names)} {key.export_public_key('openssh').decode().strip()}\n".encode())
            return False

    def forget(self, pin: str | None, host: str, port: int = DEFAULT_PORT) -> int:
        """Drop the pins for a host (an instance that is gone for good); how many were dropped."""
        name = self._lookup_name(pin, host, port)
        with self._locked() as (fd, text):
            lines = text.splitlines(keepends=True)
            kept = [line for line in lines if name not in line.strip().split(" ", 1)[0].split(",")
                    or line.lstrip().startswith("#")]
            if len(kept) != len(lines):
                os.ftruncate(fd, 0)
                os.write(fd, "".join(kept).encode())  # O_APPEND: written from the start of the empty file
            return len(lines) - len(kept)
