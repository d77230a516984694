"""Host-key pinning: trust on first contact, refuse a changed key, file kept private."""

from __future__ import annotations

import os
import stat

import asyncssh
import pytest

from remote_harness import key, known  # noqa: F401
from sflow.errors import render
from sflow.mithril.sshhost import HOST_KEY_FILE, STATE_DIR, HostPool
from sflow.remote.knownhosts import HostKeyChanged, KnownHosts, host_pattern
from sflow.remote.client import SshClient
from sflow.remote.ssh import Target


def _host_key():
    return asyncssh.generate_private_key("ssh-ed25519").convert_to_public()


def test_first_contact_pins_and_later_contacts_verify(known):
    first, other = _host_key(), _host_key()
    assert known.verify(first, "inst-1", "127.0.0.1", 2222) is False  # new: pinned now
    assert known.verify(first, "inst-1", "127.0.0.1", 2222) is True
    assert stat.S_IMODE(os.stat(known.path).st_mode) == 0o600
    with open(known.path) as handle:
        line = handle.read()
    assert line.startswith("inst-1,[127.0.0.1]:2222 ssh-ed25519 ") and line.count("\n") == 1
    with pytest.raises(HostKeyChanged) as refused:
        known.verify(other, "inst-1", "127.0.0.1", 2222)
    assert render("sflow", refused.value) == (
        f"sflow: error: host key for inst-1 changed; refusing to connect (see {known.path})")
    assert known.pinned("inst-1", "127.0.0.1", 2222) == [first]  # the refusal pinned nothing


def test_instance_ids_survive_port_reuse_and_plain_addresses_do_not(known):
    old, new = _host_key(), _host_key()
    known.verify(old, "inst-1", "127.0.0.1", 40000)
    # Another instance on the reused port is a different host, not a changed key.
    assert known.verify(new, "inst-2", "127.0.0.1", 40000) is False
    assert known.verify(new, "inst-2", "127.0.0.1", 40000) is True
    # Without an instance id the address is all there is: a new key there is refused.
    known.verify(old, None, "10.0.0.9", 22)
    with pytest.raises(HostKeyChanged, match="host key for 10.0.0.9:22 changed"):
        known.verify(new, None, "10.0.0.9", 22)


def test_file_is_openssh_format_and_existing_modes_are_tightened(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text("# comment\n@revoked * ssh-ed25519 AAAA\ngarbage line\n")
    os.chmod(path, 0o644)
    known = KnownHosts(str(path))
    host_key = _host_key()
    known.verify(host_key, None, "example.net", 22)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert asyncssh.import_known_hosts(path.read_text()).match("example.net", "", 22)[0] == [host_key]
    assert host_pattern("h", 22) == "h" and host_pattern("h", 2200) == "[h]:2200"


def test_forget_drops_only_that_hosts_pins(known):
    a, b = _host_key(), _host_key()
    known.verify(a, "inst-a", "127.0.0.1", 1000)
    known.verify(b, "inst-b", "127.0.0.1", 1001)
    assert known.forget("inst-a", "127.0.0.1", 1000) == 1
    assert known.pinned("inst-a", "127.0.0.1", 1000) == [] and known.pinned("inst-b", "127.0.0.1", 1001) == [b]
    assert known.verify(_host_key(), "inst-a", "127.0.0.1", 1000) is False


def test_a_changed_host_key_is_refused_over_ssh(key, known, tmp_path):
    public = key.export_public_key().decode()
    with HostPool(str(tmp_path / "hosts")) as pool, SshClient(key=key, known_hosts=known, timeout=10) as client:
        host = pool.start("inst-9", public)
        target = Target(host.address, pin="inst-9")
        assert client.run(target, "hostname").stdout == b"inst-9\n"  # trusted on first contact
        assert known.pinned("inst-9", "127.0.0.1", host.port)[0].get_fingerprint() == host.host_key_fingerprint
        client.close()

        # The same instance comes back with a new host key.
        pool.stop("inst-9")
        os.unlink(os.path.join(host.root, STATE_DIR, HOST_KEY_FILE))
        again = pool.start("inst-9", public)
        assert again.host_key_fingerprint != host.host_key_fingerprint
        with SshClient(key=key, known_hosts=known, timeout=10) as fresh:
            result = fresh.run(Target(again.address, pin="inst-9"), "touch ran-anyway")
            with pytest.raises(HostKeyChanged) as refused:
                fresh.connection(Target(again.address, pin="inst-9"))
    expected = f"host key for inst-9 changed; refusing to connect (see {known.path})"
    assert result.error == expected and result.returncode == 255
    assert str(refused.value) == expected and "\n" not in render("sflow", refused.value)
    assert not os.path.exists(os.path.join(again.root, "ran-anyway"))
