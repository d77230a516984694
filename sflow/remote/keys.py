"""sflow's own SSH key: ``$SFLOW_HOME/ssh/id_ed25519``, made on first use.

Its public half is what gets uploaded to Mithril so that new instances let
sflow in. The private file is created 0600 from the start (never chmod'ed
after being written) and published with link(), so two processes making it
at once end up sharing one key.
"""

from __future__ import annotations

import os
import socket

import asyncssh

from sflow import statedir

KEY_NAME = "id_ed25519"


def key_dir(home: str | None = None) -> str:
    if home is None:
        home = statedir.home()
    path = os.path.join(home, "ssh")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def key_path(home: str | None = None) -> str:
    return os.path.join(key_dir(home), KEY_NAME)


def _write_new(path: str, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` unless it exists; the file appears complete or not at all."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def client_key(home: str | None = None) -> asyncssh.SSHKey:
    """The private key, generated the first time it is asked for."""
    path = key_path(home)
    if not os.path.exists(path):
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"sflow@{socket.gethostname()}")
        _write_new(path, key.export_private_key(), 0o600)
    key = asyncssh.read_private_key(path)
    if not os.path.exists(path + ".pub"):
        _write_new(path + ".pub", key.export_public_key(), 0o644)
    return key


def public_key(home: str | None = None) -> str:
    """``ssh-ed25519 AAAA... sflow@host``: the line to upload to Mithril."""
    return client_key(home).export_public_key().decode().strip()
