"""A private controller per test: its own sflow home and a small cluster, shut down at teardown.

Test modules import the ``queue`` fixture from here (a conftest.py here would shadow
``tests/conftest.py`` for modules that import it by name).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SMALL_CONF = """\
ClusterName=qtest
FirstJobId=100
KillWait=1
NodeName=n[1-2] CPUs=2 RealMemory=1000 Gres=gpu:2
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=60 State=UP
PartitionName=off Nodes=n1 State=DOWN
"""


class Queue:
    """Submits through the real client and controller; reads through the store."""

    def __init__(self, home: str, work: str, conf: str):
        self.home, self.work, self.conf = home, work, conf

    @property
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
        env.update(SFLOW_HOME=self.home, SFLOW_CONF=self.conf, PYTHONPATH=ROOT)
        return env

    def call(self, op: str, **payload) -> dict:
        from sflow.queue import client

        return client.call(self.home, op, timeout=60, **payload)

    def submit(self, *argv: str, stdin: str | None = None, cwd: str | None = None) -> dict:
        """As sbatch submits: the script read here, on this side of the socket. The reply's data,
        with what sbatch prints for it (``stdout``, ``stderr``, ``exit_code``)."""
        from sflow.cli.render import submission
        from sflow.cli.submit_context import read_script
        from sflow.errors import SflowError

        cwd = cwd or self.work
        try:
            script = read_script(list(argv), cwd, stdin=lambda: stdin)
        except SflowError:  # bad options: the controller's refusal is what a test looks at
            script = None
        reply = self.call("submit", argv=list(argv), env=self.env, cwd=cwd, script=script,
                          user=os.environ.get("USER", "root"), uid=os.getuid(), gid=os.getgid(), host="qhost")
        return {**reply, **submission(reply)}

    def sbatch(self, *argv: str, stdin: str | None = None) -> int:
        reply = self.submit(*argv, stdin=stdin)
        assert reply["ok"], reply
        return reply["job_id"]

    def jobs(self, *job_ids: int):
        from sflow.queue import store

        return store.read_jobs(self.home, job_ids=list(job_ids) if job_ids else None)

    def job(self, job_id: int):
        found = [j for j in self.jobs() if j.job_id == job_id]
        assert found, f"no job {job_id}"
        return found[0]

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def wait_state(self, job_id: int, *states: str, timeout: float = 20.0):
        return self.wait_for(lambda: (j := self.job(job_id)).state in states and j, timeout,
                             f"job {job_id} to reach {states}")

    def wait_done(self, *job_ids: int, timeout: float = 30.0) -> dict:
        from sflow.queue import client

        return client.call(self.home, "wait", job_ids=list(job_ids), timeout=timeout)

    def run(self, module: str, *argv: str, input: str | None = None, timeout: float = 30):
        return subprocess.run([sys.executable, "-m", module, *argv], cwd=self.work, env=self.env, input=input,
                              capture_output=True, text=True, timeout=timeout)

    def scancel(self, *argv: str, input: str | None = None):
        code = ("import sys; from sflow.cli.shims import scancel; sys.argv = ['scancel'] + sys.argv[1:]; scancel()")
        return subprocess.run([sys.executable, "-c", code, *argv], cwd=self.work, env=self.env, input=input,
                              capture_output=True, text=True, timeout=30)

    def controller_pid(self) -> int | None:
        try:
            with open(os.path.join(self.home, "ctl.pid")) as handle:
                return int(handle.read())
        except (OSError, ValueError):
            return None

    def kill_controller(self) -> None:
        """SIGKILL the controller and wait until it is gone."""
        pid = self.controller_pid()
        assert pid, "no controller running"
        os.kill(pid, signal.SIGKILL)
        self.wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 10, "controller death")
        # A process with threads (the controller's nodes') can be a zombie a moment before its
        # listening socket closes (gVisor): until then a connection would still be taken.
        from sflow.queue import watchdog

        deadline = time.monotonic() + 2
        while watchdog.controller_answers(self.home) and self.controller_pid() == pid and time.monotonic() < deadline:
            time.sleep(0.001)

    def shutdown(self) -> None:
        from sflow.queue import client

        pid = self.controller_pid()
        try:
            client.call(self.home, "shutdown", start=False, timeout=10)
        except Exception:
            pass
        if pid:
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{pid}") and not _zombie(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if os.path.exists(f"/proc/{pid}") and not _zombie(pid):
                os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _kill_leftovers(home: str) -> None:
    """Jobs a test left running (its controller is gone): end their process groups."""
    jobs_dir = os.path.join(home, "jobs")
    if not os.path.isdir(jobs_dir):
        return
    for name in os.listdir(jobs_dir):
        try:
            with open(os.path.join(jobs_dir, name, "pid")) as handle:
                pid = int(handle.read().split()[0])
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


@pytest.fixture
def queue(tmp_path, monkeypatch):
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir(mode=0o700)
    work.mkdir()
    conf = tmp_path / "slurm.conf"
    conf.write_text(SMALL_CONF)
    monkeypatch.setenv("SFLOW_HOME", str(home))
    monkeypatch.setenv("SFLOW_CONF", str(conf))
    monkeypatch.setenv("SFLOW_CONTROLLER_IDLE", "60")
    monkeypatch.setenv("SFLOW_REQUEUE_DELAY", "0")
    # The tests kill the controller and forge its store: nothing may start one behind their backs.
    monkeypatch.setenv("SFLOW_WATCHDOG", "0")
    for name in [n for n in os.environ if n.startswith(("SLURM_", "SBATCH_"))]:
        monkeypatch.delenv(name)
    q = Queue(str(home), str(work), str(conf))
    yield q
    q.shutdown()
    _kill_leftovers(str(home))
