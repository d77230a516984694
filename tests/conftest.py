"""Shared fixtures: a private sflow home and cluster per test that needs a controller."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
import getpass
import json

import pytest

from sflow.exec.env import JobContext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF_CONF = os.path.join(ROOT, "compat", "golden", "ref-slurm.conf")
BIN = os.path.dirname(sys.executable)


def load_native():
    """native/__init__.py, which builds the native client, loaded from this tree (the package's
    build installs it as sflow._native, which an editable install may not hold)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_native", os.path.join(ROOT, "native", "__init__.py"))
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    return native


@pytest.fixture(scope="module")
def native_commands(tmp_path_factory) -> str:
    """A directory with the native client compiled from this tree under each command's name."""
    native = load_native()
    directory = tmp_path_factory.mktemp("native")
    binary = native.compile_client(str(directory / native.BINARY))
    assert binary
    return native.command_dir(str(directory), binary)


def _native_bin(python_bin: str) -> str:
    """SFLOW_TEST_NATIVE=1: the commands on PATH are the native client (the rest, this Python's)."""
    import atexit
    import tempfile

    native = load_native()
    directory = tempfile.mkdtemp(prefix="sflow-native-bin-")
    atexit.register(shutil.rmtree, directory, True)
    for name in os.listdir(python_bin):
        os.symlink(os.path.join(python_bin, name), os.path.join(directory, name))
    binary = native.compile_client(os.path.join(directory, native.BINARY), python=sys.executable)
    assert binary, "SFLOW_TEST_NATIVE needs a C compiler"
    native.command_dir(directory, binary)
    return directory


if os.environ.get("SFLOW_TEST_NATIVE"):
    BIN = _native_bin(BIN)


def _user() -> str:
    return getpass.getuser()


class Cluster:
    """Runs the drop-in commands against one private controller."""

    def __init__(self, home: str, work: str, env: dict):
        self.home, self.work, self.env = home, work, env
        self.user = _user()

    def run(self, *argv: str, input: str | None = None, timeout: float = 120, cwd: str | None = None):
        return subprocess.run(list(argv), cwd=cwd or self.work, env=self.env, input=input, capture_output=True,
                              text=True, timeout=timeout)

    def shutdown(self) -> None:
        """Cancel whatever a test left running (a timed-out job must not outlive it), then stop."""
        from sflow.queue import client

        try:
            if os.path.exists(os.path.join(self.home, "sflow.db")):
                # scancel -u, asked in process: one shim start less for each of the many tests here.
                client.call(self.home, "cancel", targets=[], filters={"users": [self.user]}, signal=None,
                            batch=False, full=False, uid=os.getuid(), start=False)
                self._wait_jobs_ended()
            client.call(self.home, "shutdown", start=False)
        except Exception:
            pass

    def _wait_jobs_ended(self, timeout: float = 5.0) -> None:
        import sqlite3

        deadline = time.monotonic() + timeout
        with sqlite3.connect(f"file:{os.path.join(self.home, 'sflow.db')}?mode=ro", uri=True) as db:
            while time.monotonic() < deadline:
                live, = db.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('RUNNING', 'COMPLETING')").fetchone()
                if not live:
                    return
                time.sleep(0.05)


@pytest.fixture
def cluster(tmp_path):
    """A 4-node cluster (the reference SLURM's slurm.conf) behind the shims on PATH."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {**os.environ, "SFLOW_HOME": str(home), "SFLOW_CONF": REF_CONF,
           "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "SFLOW_CONTROLLER_IDLE": "30"}
    for name in [n for n in env if n.startswith("SLURM_") or n.startswith("SBATCH_")]:
        del env[name]
    c = Cluster(str(home), str(work), env)
    old = {k: os.environ.get(k) for k in ("SFLOW_HOME", "SFLOW_CONF")}
    os.environ.update(SFLOW_HOME=str(home), SFLOW_CONF=REF_CONF)
    yield c
    c.shutdown()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class OtherUser:
    """A throwaway user; its scripts need only the standard library, run by a Python it can execute
    (this test's own may live under a home it cannot enter)."""

    def __init__(self, name: str):
        entry = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, entry.pw_uid, entry.pw_gid
        self.python = sys.executable

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("cwd", "/")
        kwargs.setdefault("env", {"PATH": "/usr/bin:/bin"})
        return subprocess.Popen(argv, user=self.uid, group=self.gid, extra_groups=[], **kwargs)

    def can_run(self, python: str) -> bool:
        try:
            return self.popen([python, "-c", "pass"], stderr=subprocess.DEVNULL).wait(timeout=60) == 0
        except OSError:
            return False


@pytest.fixture
def other_user():
    """A second Unix user, made for the test (root only) and removed after it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second Unix user")
    if not shutil.which("useradd") or not shutil.which("userdel"):
        pytest.skip("useradd/userdel not installed")
    name = f"sflowt{os.getpid() % 100000}"
    made = subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        user = OtherUser(name)
        runnable = [p for p in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3")
                    if os.path.exists(p) and user.can_run(p)]
        if not runnable:
            pytest.skip(f"no Python interpreter that user {name} may run")
        user.python = runnable[0]
        yield user
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def examples_dir() -> str:
    return os.path.join(ROOT, "examples", "slurm")


def copy_examples(dest: str) -> None:
    for name in os.listdir(examples_dir()):
        shutil.copy(os.path.join(examples_dir(), name), dest)


def job_allocation(tmp_path, job_id: int, **fields) -> tuple[dict, object]:
    """A job's allocation written the way the controller writes it (its context.json), so srun runs
    inside it without a controller. Returns the environment of a shell in that job, and the sflow home."""
    home = tmp_path / "home"
    (home / "jobs" / str(job_id)).mkdir(parents=True)
    ctx = JobContext(job_id=job_id, job_name="t", user="u", uid=os.getuid(), gid=os.getgid(), partition="debug",
                     account="u", qos="normal", cluster_name="c", submit_dir=str(tmp_path), submit_host="h",
                     work_dir=str(tmp_path), **fields)
    (home / "jobs" / str(job_id) / "context.json").write_text(json.dumps(ctx.to_json()))
    return {**os.environ, "SFLOW_HOME": str(home), "SLURM_JOB_ID": str(job_id)}, home


def run_srun(env, cwd, *argv, stdin=None):
    """The srun shim, run the way a shell in the job runs it."""
    return subprocess.run([sys.executable, "-c", "from sflow.cli.shims import srun; srun()", *argv],
                          env=env, cwd=cwd, capture_output=True, text=True, input=stdin, timeout=60)
