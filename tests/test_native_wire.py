"""The native client's reply: a JSON line saying the lengths of the raw bytes that follow it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from conftest import load_native
from sflow.cli import served
from sflow.queue import server

native = load_native()

pytestmark = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler")


@pytest.fixture
def home():
    # Short: the client leaves a socket path beyond 100 bytes to the shim.
    path = tempfile.mkdtemp(prefix="wire-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shim(tmp_path):
    """A stand-in for the Python shim: says that it ran, and with what."""
    path = tmp_path / "python3"
    path.write_text('#!/bin/sh\necho "shim: $*"\n')
    path.chmod(0o755)
    return str(path)


class Controller:
    """A controller that answers one request with the bytes given, then closes or waits for the client."""

    def __init__(self, home: str, answer: bytes, close: bool = False):
        self.answer, self.close, self.requests = answer, close, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(os.path.join(home, "ctl.sock"))
        finally:
            os.umask(old)
        self.sock.listen(1)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            request = b""
            while not request.endswith(b"\n"):
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            self.requests.append(json.loads(request))
            conn.sendall(self.answer)
            if not self.close:
                while conn.recv(65536):
                    pass

    def stop(self) -> None:
        self.thread.join(timeout=30)
        self.sock.close()


def _ran(*writes: tuple[int, bytes], exit_code: int = 0, **more) -> bytes:
    reply = {"ok": True, "ran": True, "wire": served.WIRE, **more, "exit_code": exit_code,
             "writes": server.Trailing(json.dumps([[fd, len(data)] for fd, data in writes]),
                                       b"".join(data for _, data in writes))}
    return server.encode(reply)


def _run(native_commands, home, shim, answer: bytes, *argv: str, close: bool = False, stderr=None):
    controller = Controller(home, answer, close)
    try:
        env = {"SFLOW_HOME": home, "SFLOW_PYTHON": shim, "PATH": "/usr/bin:/bin"}
        return subprocess.run([os.path.join(native_commands, argv[0]), *argv[1:]], env=env, capture_output=stderr is None,
                              stdout=None if stderr is None else subprocess.PIPE, stderr=stderr)
    finally:
        controller.stop()


def test_a_large_output_arrives_whole_and_byte_for_byte(native_commands, home, shim):
    out = bytes(range(256)) * 16384 + b"\n\xff not UTF-8 \n"  # 4 MB, any bytes, newlines included
    done = _run(native_commands, home, shim, _ran((1, out), (2, b"a warning\n"), exit_code=3), "squeue", "-r")
    assert (done.returncode, done.stdout, done.stderr) == (3, out, b"a warning\n")


def test_writes_to_both_descriptors_keep_their_order(native_commands, home, shim):
    writes = [(2, b"first on stderr\n"), (1, b"then stdout\n" * 5000), (2, b"stderr again\n"), (1, b"last\n")]
    done = _run(native_commands, home, shim, _ran(*writes), "sacct", stderr=subprocess.STDOUT)
    assert (done.returncode, done.stdout) == (0, b"".join(data for _, data in writes))


def test_an_empty_output_and_its_exit_code(native_commands, home, shim):
    done = _run(native_commands, home, shim, _ran(exit_code=1), "scancel", "5")
    assert (done.returncode, done.stdout, done.stderr) == (1, b"", b"")


def test_the_request_says_its_version(native_commands, home, shim):
    controller = Controller(home, _ran((1, b"ok\n")))
    try:
            subprocess.run([os.path.join(native_commands, "squeue")], env={"SFLOW_HOME": home, "SFLOW_PYTHON": shim},
                       capture_output=True)
    finally:
        controller.stop()
    assert controller.requests[0]["wire"] == served.WIRE


def test_a_reply_cut_short_by_a_dying_controller_runs_the_shim_and_prints_once(native_commands, home, shim):
    whole = _ran((1, b"x" * 100_000))
    done = _run(native_commands, home, shim, whole[:len(whole) - 1000], "squeue", "-r", close=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"shim: -m sflow.cli.shims squeue -r\n", b"")


def test_a_controller_gone_before_its_line_ends_runs_the_shim(native_commands, home, shim):
    done = _run(native_commands, home, shim, b'{"ok": true, "ran": tr', "squeue", close=True)
    assert done.stdout == b"shim: -m sflow.cli.shims squeue\n"


@pytest.mark.parametrize("answer", [
    # The base64 writes of a controller before this shape: never written as if they were lengths.
    b'{"ok": true, "ran": true, "exit_code": 0, "writes": [[1, "aGkK"]]}\n',
    b'{"ok": true, "ran": true, "wire": 3, "exit_code": 0, "writes": [[1, 3]]}\nhi\n',
    b'{"ok": true, "ran": true, "wire": 2, "exit_code": 0, "writes": [[1, "aGkK"]]}\n',
    b'{"ok": true, "ran": true, "wire": 2, "exit_code": 0, "writes": [[3, 3]]}\nhi\n',
    b'{"ok": true, "ran": true, "wire": 2, "exit_code": 0, "writes": [[1, -3]]}\nhi\n',
    b'{"ok": true, "ran": true, "wire": 2, "writes": [[1, 3]]}\nhi\n',
])
def test_a_reply_of_another_shape_runs_the_shim(native_commands, home, shim, answer):
    done = _run(native_commands, home, shim, answer, "squeue", close=True)
    assert (done.stdout, done.stderr) == (b"shim: -m sflow.cli.shims squeue\n", b"")


def test_sbatch_wait_reads_its_second_reply_after_the_first_ones_bytes(native_commands, home, shim):
    # Both replies at once: what was read ahead with the first is the second's.
    first = _ran((1, b"Submitted batch job 7\n"), more=True, wait_for=[7])
    second = _ran((2, b"job 7 failed\n"), exit_code=4)
    done = _run(native_commands, home, shim, first + second, "sbatch", "--wait", "--wrap", "false")
    assert (done.returncode, done.stdout, done.stderr) == (4, b"Submitted batch job 7\n", b"job 7 failed\n")


def test_sbatch_wait_whose_controller_dies_after_the_submission_waits_as_the_shim(native_commands, home, shim):
    first = _ran((1, b"Submitted batch job 7\n"), more=True, wait_for=[7])
    done = _run(native_commands, home, shim, first, "sbatch", "--wait", "--wrap", "false", close=True)
    assert done.stdout == b"Submitted batch job 7\nshim: -m sflow.cli.shims --wait 7\n"


def test_sbatch_wait_whose_first_reply_is_cut_short_asks_the_shim_again(native_commands, home, shim):
    # Its output not there yet: the shim submits again under the same token (the same job) and says it.
    first = _ran((1, b"Submitted batch job 7\n"), more=True, wait_for=[7])
    done = _run(native_commands, home, shim, first[:-5], "sbatch", "--wait", "--wrap", "false", close=True)
    assert done.stdout == b"shim: -m sflow.cli.shims sbatch --wait --wrap false\n"


def test_a_request_of_another_version_is_answered_shim():
    assert served.run(None, None, {"op": "run", "command": "squeue", "argv": []}).get("shim")
    assert served.run(None, None, {"op": "run", "wire": served.WIRE + 1, "command": "squeue"}).get("shim")


def test_a_reply_with_trailing_bytes_is_its_line_then_them():
    reply = {"ok": True, "exit_code": 0, "writes": server.Trailing("[[1, 3], [2, 2]]", b"hi\nw\n")}
    assert server.encode(reply) == b'{"ok": true, "exit_code": 0, "writes": [[1, 3], [2, 2]]}\nhi\nw\n'


def test_writes_are_told_as_lengths_of_each_descriptors_run():
    wire = served._wire([(1, b"ab"), (1, b"c"), (2, b"d"), (1, b"ef")])
    assert (str(wire), wire.data) == ("[[1, 3], [2, 1], [1, 2]]", b"abcdef")


def test_a_large_reply_leaves_in_one_send_where_the_system_allows_it():
    try:
        with open("/proc/sys/net/core/wmem_max") as handle:
            allowed = int(handle.read())
    except OSError:
        allowed = 0
    if allowed < 1 << 20:
        pytest.skip("the system caps a socket's send buffer below a megabyte")

    class Server(server.SocketServer):
        def _interest(self, conn):
            pass

    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        conn = server.Conn(ours)
        Server().send(conn, {"ok": True, "writes": server.Trailing("[[1, 1000000]]", b"x" * 1_000_000)})
        assert conn.outbuf == b""
