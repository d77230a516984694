"""The emulated instances, seen through a plain asyncssh client: what an instance's sshd does."""

from __future__ import annotations

import asyncio
import os
import stat

import asyncssh
import pytest

from remote_harness import NAMES, key, pid_alive, pool, wait_for, wait_for_file  # noqa: F401
from sflow.mithril import sshhost
from sflow.mithril.sshhost import HOST_KEY_FILE, STATE_DIR, HostPool


def _run(host, key, command, user="ubuntu", **kwargs):
    async def go():
        async with asyncssh.connect("127.0.0.1", host.port, username=user, client_keys=[key], known_hosts=None,
                                    agent_path=None, config=None) as conn:
            return await conn.run(command, check=False, **kwargs)

    return asyncio.run(go())


def test_commands_see_the_instance_as_their_machine(pool, key):
    host = pool.get("gpu-b")
    done = _run(host, key, 'hostname; echo "$HOSTNAME $SFLOW_HOSTNAME $HOME $USER"; pwd')
    assert done.exit_status == 0, done.stderr
    name, env, cwd = done.stdout.splitlines()
    assert name == "gpu-b"
    assert env == f"gpu-b gpu-b {host.root} ubuntu"
    assert cwd == host.root and os.path.isdir(os.path.join(host.root, STATE_DIR, "bin"))


def test_exit_status_stderr_and_stdin(pool, key):
    host = pool.get("gpu-a")
    done = _run(host, key, "cat; echo oops >&2; exit 42", input="line 1\nline 2\n")
    assert (done.exit_status, done.stdout, done.stderr) == (42, "line 1\nline 2\n", "oops\n")


def test_only_the_authorized_key_of_ubuntu_gets_in(pool, key):
    host = pool.get("gpu-a")
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        _run(host, stranger, "true")
    with pytest.raises(asyncssh.PermissionDenied):
        _run(host, key, "true", user="root")

    async def password():
        await asyncssh.connect("127.0.0.1", host.port, username="ubuntu", password="ubuntu", client_keys=None,
                               known_hosts=None, agent_path=None, config=None)

    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(password())


def test_host_key_is_kept_under_the_root_across_restarts(key, tmp_path):
    public = key.export_public_key().decode()
    with HostPool(str(tmp_path)) as pool:
        first = pool.start("n1", public)
        other = pool.start("n2", public)
        pool.stop("n1")
        again = pool.start("n1", public)
    key_file = os.path.join(first.root, STATE_DIR, HOST_KEY_FILE)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert again.host_key_fingerprint == first.host_key_fingerprint
    assert other.host_key_fingerprint != first.host_key_fingerprint
    assert first.host_key_fingerprint.startswith("SHA256:")


def test_channel_signal_kills_the_whole_process_group(pool, key):
    host = pool.get("gpu-c")
    pidfile = os.path.join(host.root, "bg.pid")

    async def go():
        async with asyncssh.connect("127.0.0.1", host.port, username="ubuntu", client_keys=[key],
                                    known_hosts=None, agent_path=None, config=None) as conn:
            proc = await conn.create_process("sleep 60 & echo $! > bg.pid; wait")
            child = int(await asyncio.to_thread(wait_for_file, pidfile))
            proc.send_signal("TERM")
            await asyncio.wait_for(proc.wait(), 10)
            return proc, child

    proc, child = asyncio.run(go())
    assert proc.exit_signal[0] == "TERM" and proc.returncode == -15
    # The background child was in the group too.
    assert wait_for(lambda: not pid_alive(child))


def test_sftp_is_confined_to_the_root(pool, key):
    host = pool.get("gpu-d")
    with open(os.path.join(host.root, "inside.txt"), "w") as handle:
        handle.write("inside")

    async def go():
        async with asyncssh.connect("127.0.0.1", host.port, username="ubuntu", client_keys=[key],
                                    known_hosts=None, agent_path=None, config=None) as conn:
            async with conn.start_sftp_client() as sftp:
                home = await sftp.realpath(".")
                async with sftp.open("/../../inside.txt") as handle:
                    inside = await handle.read()
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.stat("/etc/passwd")
                await sftp.mkdir("made")
                return home, inside

    home, inside = asyncio.run(go())
    assert (home, inside) == ("/", "inside")
    assert os.path.isdir(os.path.join(host.root, "made"))


def test_host_factory_starts_and_stops_an_instance(key, tmp_path, monkeypatch):
    monkeypatch.setenv("SFLOW_HOME", str(tmp_path))
    address, close = sshhost.host_factory("inst-01", "worker-7", [key.export_public_key().decode()])
    try:
        assert address.startswith("127.0.0.1:")
        host = sshhost.default_pool().get("inst-01")
        assert (host.name, host.hostname, host.address) == ("inst-01", "worker-7", address)
        assert host.root == os.path.realpath(tmp_path / "mithril" / "instances" / "inst-01")
        assert _run(host, key, "hostname").stdout == "worker-7\n"
        pidfile = os.path.join(host.root, "job.pid")

        async def job_outlived_by_nothing():
            async with asyncssh.connect("127.0.0.1", host.port, username="ubuntu", client_keys=[key],
                                        known_hosts=None, agent_path=None, config=None) as conn:
                await conn.create_process("echo $$ > job.pid; exec sleep 60")
                job = int(await asyncio.to_thread(wait_for_file, pidfile))
                await asyncio.to_thread(close)
                # The instance went away: its connections drop with it.
                await asyncio.wait_for(conn.wait_closed(), 10)
                return job

        job = asyncio.run(job_outlived_by_nothing())
    finally:
        close()
    assert wait_for(lambda: not pid_alive(job))
    with pytest.raises(OSError):
        _run(host, key, "true")
    assert sshhost.default_pool().get("inst-01") is None
    close()  # twice is harmless


def test_pool_refuses_a_name_twice(pool, key):
    with pytest.raises(ValueError):
        pool.start(NAMES[0], key.export_public_key().decode())
