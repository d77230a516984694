"""Emulated instances on loopback and a client for them, shared by the tests here.

Test modules import the fixtures by name (a conftest.py here would shadow
``tests/conftest.py`` for modules that import it by name).
"""

from __future__ import annotations

import os
import time

import asyncssh
import pytest

from sflow.mithril.sshhost import HostPool
from sflow.remote.knownhosts import KnownHosts
from sflow.remote.client import SshClient
from sflow.remote.ssh import Target

NAMES = ["gpu-a", "gpu-b", "gpu-c", "gpu-d"]


@pytest.fixture(scope="module")
def key():
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="module")
def pool(key, tmp_path_factory):
    with HostPool(str(tmp_path_factory.mktemp("instances"))) as pool:
        for name in NAMES:
            pool.start(name, key.export_public_key().decode())
        yield pool


@pytest.fixture
def known(tmp_path):
    return KnownHosts(str(tmp_path / "known_hosts"))


@pytest.fixture
def targets(pool):
    return [Target(pool.get(name).address, pin=name) for name in NAMES]


@pytest.fixture
def client(key, known):
    with SshClient(key=key, known_hosts=known, timeout=10) as client:
        yield client


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not collected it yet.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def wait_for_file(path: str, timeout: float = 5.0) -> str:
    assert wait_for(lambda: os.path.exists(path) and open(path).read().endswith("\n"), timeout), path
    with open(path) as handle:
        return handle.read()
