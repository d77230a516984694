"""The controller's socket belongs to its user alone, and sflow's credentials stay home.

Another user must not be able to stand in for the controller (a directory of
theirs in /tmp, a listener of theirs on the socket) nor talk to it; a
submission carries MITHRIL_API_KEY only when the job exports it by name.

The other-user tests need root (CI runs as root): they create a throwaway
Unix user, act as that user in child processes, and remove it afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import _socket
import pytest

from sflow.exec.remote_env import portable
from sflow.queue import client, paths
from sflow.slurm.request import parse_sbatch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
KEY = "fkey_must_not_leak_0123456789"

# Run as the other user: bind a socket (making its directory first, with the
# given mode, when asked), take connections until one says STOP, then print
# everything received, as JSON.
LISTENER = r"""
import json, os, socket, sys
path, mode = sys.argv[1], sys.argv[2]
if mode != "-":
    os.mkdir(os.path.dirname(path))
    os.chmod(os.path.dirname(path), int(mode, 8))
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o777)
server.listen(8)
print("ready", flush=True)
received = []
while True:
    conn, _ = server.accept()
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
        if data == b"STOP":
            break
    conn.close()
    if data == b"STOP":
        break
    received.append(data.decode(errors="replace"))
print(json.dumps(received), flush=True)
"""


def listen(user, path: str, make_dir_mode: str = "-") -> subprocess.Popen:
    """LISTENER run as ``user`` (conftest's ``other_user``), once it is ready."""
    proc = user.popen([user.python, "-c", LISTENER, path, make_dir_mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop_listener(proc: subprocess.Popen, path: str) -> list[str]:
    """What the listener received before this STOP (root may connect to any socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(b"STOP")
    sock.close()
    out, _ = proc.communicate(timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def shim_env(home: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "MITHRIL_"))}
    env.update(SFLOW_HOME=home, PATH=BIN + os.pathsep + env.get("PATH", ""), PYTHONPATH=ROOT,
               MITHRIL_API_KEY=KEY, **extra)
    return env


def long_home(tmp_path) -> str:
    home = tmp_path / ("h" * 60) / ("o" * 60)
    home.mkdir(parents=True)
    assert len(os.path.join(str(home), paths.SOCKET_NAME)) > paths._MAX_SOCKET_PATH
    return str(home)


@pytest.fixture
def shared_dir():
    """A short directory under /tmp the other user may reach (pytest's own is 0700)."""
    path = tempfile.mkdtemp(prefix="sft", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- the directory in /tmp


def test_another_users_directory_in_tmp_is_refused_and_nothing_is_sent(tmp_path, other_user):
    directory = os.path.join(paths.RUNTIME_ROOT, f"sflow-{os.getuid()}")
    if os.path.lexists(directory):
        pytest.skip(f"{directory} already exists (in use here); the test needs to create it as another user")
    home = long_home(tmp_path)
    path = os.path.join(directory, hashlib.sha1(os.path.abspath(home).encode()).hexdigest()[:16] + ".sock")
    listener = listen(other_user, path, "777")
    try:
        done = subprocess.run(["sbatch", "--wrap", "true"], env=shim_env(home), cwd=str(tmp_path),
                              capture_output=True, text=True, timeout=120)
        received = stop_listener(listener, path)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
        shutil.rmtree(directory, ignore_errors=True)
    assert done.returncode == 1, done
    assert done.stderr == (f"sbatch: error: refusing to use {directory} for the sflow controller's socket: "
                           f"it is owned by uid {other_user.uid}, not by you (uid {os.getuid()})\n")
    assert received == []
    assert not os.path.exists(paths.pid_path(home))  # no controller was started behind it


@pytest.fixture
def runtime_root(tmp_path, monkeypatch):
    root = tmp_path / "tmp"
    root.mkdir()
    root.chmod(0o1777)
    monkeypatch.setattr(paths, "RUNTIME_ROOT", str(root))
    return root


def test_runtime_dir_is_made_private(runtime_root):
    directory = paths.private_runtime_dir()
    assert directory == str(runtime_root / f"sflow-{os.getuid()}")
    assert os.lstat(directory).st_mode & 0o777 == 0o700
    assert paths.private_runtime_dir() == directory  # ours and private: used again


@pytest.mark.parametrize("mode", [0o777, 0o755, 0o770, 0o701])
def test_runtime_dir_open_to_others_is_refused(runtime_root, mode):
    directory = runtime_root / f"sflow-{os.getuid()}"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(paths.UnsafeSocketDirectory) as caught:
        paths.private_runtime_dir()
    assert str(caught.value) == (f"refusing to use {directory} for the sflow controller's socket: "
                                 f"its mode is {mode:04o}, open to other users (it must be 0700)")


def test_runtime_dir_that_is_a_symlink_or_a_file_is_refused(runtime_root, tmp_path):
    good = tmp_path / "elsewhere"
    good.mkdir(mode=0o700)
    directory = runtime_root / f"sflow-{os.getuid()}"
    directory.symlink_to(good)
    with pytest.raises(paths.UnsafeSocketDirectory, match="it is a symbolic link"):
        paths.private_runtime_dir()
    directory.unlink()
    directory.write_text("")
    with pytest.raises(paths.UnsafeSocketDirectory, match="it is not a directory"):
        paths.private_runtime_dir()


def test_runtime_dir_owned_by_another_user_is_refused(runtime_root, other_user):
    directory = runtime_root / f"sflow-{os.getuid()}"
    directory.mkdir(mode=0o700)
    os.chown(directory, other_user.uid, other_user.gid)
    with pytest.raises(paths.UnsafeSocketDirectory, match=f"owned by uid {other_user.uid}, not by you"):
        paths.private_runtime_dir()


# ---------------------------------------------------------------- the peer


def test_a_listener_of_another_uid_is_refused_before_anything_is_sent(shared_dir, other_user):
    home = os.path.join(shared_dir, "home")
    os.mkdir(home)
    os.chmod(home, 0o777)  # a shared home: anyone could bind ctl.sock in it
    path = paths.socket_path(home)
    listener = listen(other_user, path)
    try:
        done = subprocess.run(["sbatch", "--export=ALL,MITHRIL_API_KEY", "--wrap", "true"], env=shim_env(home),
                              cwd=shared_dir, capture_output=True, text=True, timeout=120)
        received = stop_listener(listener, path)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    assert done.returncode == 1, done
    assert done.stderr == (f"sbatch: error: refusing to use {path}: the process listening there runs as "
                           f"uid {other_user.uid}, not as you (uid {os.getuid()})\n")
    assert received == [""]  # it connected, asked the kernel, and said nothing
    assert KEY not in done.stdout + done.stderr


def test_peer_uid_is_read_from_the_kernel():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    raw = _socket.socket(fileno=os.dup(ours.fileno()))
    try:
        assert client.peer_uid(raw) == os.getuid()
    finally:
        raw.close()
        ours.close()
        theirs.close()


CONNECT_AS_OTHER = r"""
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
data = b""
try:  # dropped at once, the send itself may fail
    sock.sendall(b'{"op": "ping"}\n')
    while chunk := sock.recv(65536):
        data += chunk
except (BrokenPipeError, ConnectionResetError):
    pass
print(repr(data))
"""


def test_the_controller_drops_connections_from_other_uids(shared_dir, other_user):
    home = os.path.join(shared_dir, "home")
    os.mkdir(home, 0o755)
    try:
        assert client.call(home, "ping")["ok"]
        path = paths.socket_path(home)
        os.chmod(path, 0o666)  # only the uid check stands between them
        proc = other_user.popen([other_user.python, "-c", CONNECT_AS_OTHER, path], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "b''"
        assert client.call(home, "ping")["ok"]  # still serving its own user
    finally:
        client.call(home, "shutdown", start=False)


# ---------------------------------------------------------------- what a submission carries


class FakeController:
    """Stands where the controller would (same uid): records each request, answers like a submit."""

    def __init__(self, home: str):
        self.path = paths.socket_path(home)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(8)
        self.requests: list[dict] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            if data.strip():
                self.requests.append(json.loads(data))
                conn.sendall(b'{"ok": true, "job_id": 7}\n')
            conn.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def fake_controller(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    fake = FakeController(str(home))
    yield str(home), fake
    fake.close()


SCRIPT_NAMING_IT = "#!/bin/sh\n#SBATCH -t 5\n#SBATCH --export=ALL,MITHRIL_API_KEY # for the job's own flow calls\ntrue\n"


@pytest.mark.parametrize("argv, extra_env, script, sent", [
    (["--wrap", "true"], {}, None, False),  # --export=ALL by default: not sent
    (["--export=ALL", "--wrap", "true"], {}, None, False),
    (["--export=ALL,MITHRIL_API_KEY", "--wrap", "true"], {}, None, True),
    (["--export", "MITHRIL_API_KEY", "--wrap", "true"], {}, None, True),
    (["--export=ALL,MITHRIL_API_KEY_OLD", "--wrap", "true"], {}, None, False),
    (["--export=ALL,MITHRIL_API_KEY=other", "--wrap", "true"], {}, None, False),  # the value is on the line
    (["--wrap", "true"], {"SBATCH_EXPORT": "ALL,MITHRIL_API_KEY"}, None, True),
    (["job.sh"], {}, SCRIPT_NAMING_IT, True),
    ([], {}, SCRIPT_NAMING_IT, True),  # the script on stdin
    (["--export=ALL", "job.sh"], {}, SCRIPT_NAMING_IT, False),  # the command line wins over the directive
    (["job.sh"], {"SBATCH_EXPORT": "ALL"}, SCRIPT_NAMING_IT, False),  # so does SBATCH_EXPORT
])
def test_the_key_travels_only_when_the_job_exports_it_by_name(fake_controller, tmp_path, argv, extra_env, script,
                                                              sent):
    home, fake = fake_controller
    work = tmp_path / "work"
    work.mkdir()
    if script is not None:
        (work / "job.sh").write_text(script)
    done = subprocess.run(["sbatch", *argv], env=shim_env(home, **extra_env), cwd=str(work),
                          input=script if not argv else None, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "Submitted batch job 7\n"), done.stderr
    (request,) = fake.requests
    assert request["op"] == "submit" and request["env"]["SFLOW_HOME"] == home
    assert (request["env"].get("MITHRIL_API_KEY") == KEY) is sent
    assert (KEY in json.dumps(request)) is sent


def test_the_key_never_reaches_a_jobs_environment_here_or_on_an_instance(tmp_path):
    ident = dict(user="alice", uid=1000, gid=1000, host="login1")
    for export in ("ALL,MITHRIL_API_KEY", "MITHRIL_API_KEY", "ALL,MITHRIL_API_KEY=" + KEY):
        req = parse_sbatch([f"--export={export}", "job.sh"], env={"MITHRIL_API_KEY": KEY, "KEEP": "1"},
                           cwd=str(tmp_path), script_text="#!/bin/sh\ntrue\n", **ident).request
        assert "MITHRIL_API_KEY" not in req.environment
        remote = portable(req.environment, req.export.assignments if req.export else None)
        assert "MITHRIL_API_KEY" not in remote and KEY not in json.dumps(remote)
