"""sflow's client key: made once, private, and good for logging in."""

from __future__ import annotations

import os
import stat

from sflow.mithril.sshhost import HostPool
from sflow.remote.keys import client_key, key_path, public_key
from sflow.remote.knownhosts import KnownHosts
from sflow.remote.client import SshClient
from sflow.remote.ssh import Target


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_key_is_made_once_with_private_modes(tmp_path, monkeypatch):
    monkeypatch.setenv("SFLOW_HOME", str(tmp_path))
    old = os.umask(0o000)  # even a permissive umask must not leak the key
    try:
        key = client_key()
    finally:
        os.umask(old)
    path = key_path()
    assert path == os.path.join(str(tmp_path), "ssh", "id_ed25519")
    assert _mode(path) == 0o600 and _mode(os.path.dirname(path)) == 0o700
    assert _mode(path + ".pub") == 0o644
    assert client_key().export_public_key() == key.export_public_key()  # the same key next time
    line = public_key()
    assert line.startswith("ssh-ed25519 AAAA") and line.split()[2].startswith("sflow@")
    with open(path + ".pub") as handle:
        assert handle.read().strip() == line
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]


def test_uploaded_public_key_lets_sflow_in(tmp_path, monkeypatch):
    monkeypatch.setenv("SFLOW_HOME", str(tmp_path))
    with HostPool(str(tmp_path / "hosts")) as pool, SshClient(timeout=10) as client:
        host = pool.start("inst-k", public_key())
        assert client.run(Target(host.address, pin="inst-k"), "hostname").stdout == b"inst-k\n"
        assert isinstance(client.known_hosts, KnownHosts)
        assert client.known_hosts.path == os.path.join(str(tmp_path), "known_hosts")
    assert _mode(os.path.join(str(tmp_path), "known_hosts")) == 0o600
