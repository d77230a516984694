"""Mithril end to end: the real shims and controller, the emulated API, emulated instances on loopback.

The emulator runs in the test process with a fast auction and SSH hosts for its
instances (each one a real SSH server with its own home, on 127.0.0.1); the
controller, started by the first shim, reaches it through MITHRIL_API_URL.

Test modules build their ``site`` fixture here with ``site_fixture`` (or
``open_site`` for another scope); a conftest.py here would shadow
``tests/conftest.py`` for modules that import it by name.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest

from polling import wait_for
from sflow.mithril import sshhost
from sflow.mithril.emulator import start_emulator
from sflow.mithril import bids
from sflow.queue import store

BIN = os.path.dirname(sys.executable)
REGION = "us-central1-a"
EMULATOR = {"tick": 0.2, "startup": 0.3, "notice": 5.0}  # a fast auction, instances up at once
ENV = {"SFLOW_CONTROLLER_IDLE": "60", "SFLOW_MITHRIL_POLL": "0.2", "SFLOW_REMOTE_POLL": "0.2",
       "SFLOW_REQUEUE_DELAY": "0", "SFLOW_REMOTE_RECONNECT": "3"}
DROP = ("SLURM_", "SBATCH_")  # the outer shell's job must not leak into the shims


def slurm_conf(cluster: str, gpu_max_time: str = "60") -> str:
    """One local node for partition debug (the default) and partition gpu on Mithril."""
    return (f"ClusterName={cluster}\n"
            "NodeName=node1 CPUs=2 RealMemory=2000\n"
            "PartitionName=debug Nodes=node1 Default=YES MaxTime=INFINITE State=UP\n"
            f"PartitionName=gpu Backend=mithril MaxTime={gpu_max_time} State=UP\n")


class Site:
    """The shims run in ``work`` with ``env``; records are read from the store in ``home``."""

    def __init__(self, emu, home: str, work: str, env: dict, stdin=None):
        self.emu, self.home, self.work, self.env, self.stdin = emu, home, work, env, stdin

    def run(self, *argv: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), cwd=self.work, env=self.env, input=input, capture_output=True, text=True,
                              timeout=timeout, stdin=self.stdin if input is None else None)

    def start(self, *argv: str) -> subprocess.Popen:
        return subprocess.Popen(list(argv), cwd=self.work, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)

    def sbatch(self, script: str, name: str = "job.sh") -> int:
        with open(os.path.join(self.work, name), "w") as handle:
            handle.write(script)
        done = self.run("sbatch", "--parsable", name)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())

    def job(self, job_id: int):
        return store.read_jobs(self.home, "job_id = ?", (job_id,))[0]

    def jobs(self, job_id: int):
        """The job's records: every task of an array."""
        return store.read_jobs(self.home, job_ids=[job_id])

    def wait(self, job_id: int, test, timeout: float = 40.0, what: str = ""):
        """The job's record once ``test`` holds for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self.job(job_id)
            if test(rec):
                return rec
            time.sleep(0.05)
        rec = self.job(job_id)
        raise AssertionError(f"job {job_id} never {what}: state {rec.state}, reason {rec.reason}\n"
                             f"{self.log()}")

    def wait_jobs(self, job_id: int, test, timeout: float = 30.0, what: str = ""):
        """The job's records (see ``jobs``) once ``test`` holds for the list."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.jobs(job_id)
            if records and test(records):
                return records
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} never {what}: {[(r.job_id, r.state, r.reason) for r in self.jobs(job_id)]}"
                             f"\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        try:
            with open(os.path.join(self.home, "controller.log")) as handle:
                return handle.read()[-tail:]
        except OSError:
            return ""

    def read(self, name: str) -> str:
        with open(os.path.join(self.work, name)) as handle:
            return handle.read()

    def output(self, name: str) -> str:
        """A job's output file in ``work``; empty until the job writes it."""
        try:
            return self.read(name)
        except OSError:
            return ""

    def wait_output(self, name: str, text: str, timeout: float = 40.0) -> str:
        """The output file once it holds ``text``, or as it stands at the deadline."""
        deadline = time.monotonic() + timeout
        while text not in self.output(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.output(name)

    def bids(self, job_id: int):
        return store.read_bids(self.home, job_id)

    def rows(self):
        """Every bid record."""
        conn = store.reader(self.home)
        try:
            return bids.read(conn)
        finally:
            conn.close()

    def settled(self, *job_ids: int, timeout: float = 15.0):
        """The jobs' bid records once every deletion is confirmed (the job records have their final cost)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = [r for r in self.rows() if r.job_id in job_ids]
            if rows and all(r.ended is not None for r in rows):
                return rows
            time.sleep(0.05)
        raise AssertionError(f"bids of jobs {job_ids} still live: "
                             f"{[r for r in self.rows() if r.job_id in job_ids and r.ended is None]}")

    def market_bid(self, bid_id: str):
        with self.emu.service.lock:
            return self.emu.market.bids[bid_id]

    def demand(self, *steps: tuple[str, int], instance_type: str = "8xh100", region: str = REGION) -> None:
        """Other users' bids for a pool from now on, one (price, quantity) per step; none clears them."""
        with self.emu.service.lock:
            self.emu.service.script({"region": region, "instance_type": instance_type,
                                     "demand": [[0, price, quantity] for price, quantity in steps]},
                                    self.emu.service.clock())


@contextlib.contextmanager
def open_site(root, conf: str, key: str, env: dict | None = None, drop: tuple[str, ...] = (), stdin=None,
              **emulator):
    """A Site under ``root`` with slurm.conf ``conf``, the emulator started with ``emulator`` over EMULATOR.

    ``env`` adds to (or overrides) ENV for the shims; names starting with ``drop``
    are removed from it along with DROP. At exit the jobs are cancelled, the
    controller shut down and the emulator closed.
    """
    home, work = root / "home", root / "work"
    home.mkdir()
    work.mkdir()
    conf_path = root / "slurm.conf"
    conf_path.write_text(conf)
    saved = os.environ.get("SFLOW_HOME")
    os.environ["SFLOW_HOME"] = str(home)  # the emulated instances keep their homes under it
    emu = start_emulator(**{**EMULATOR, **emulator}, api_key=key, host_factory=sshhost.host_factory)
    shim_env = {**os.environ, "SFLOW_HOME": str(home), "SFLOW_CONF": str(conf_path),
                "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
                "SFLOW_CONFIG": str(root / "no-config.toml"), "MITHRIL_API_URL": emu.url, "MITHRIL_API_KEY": key,
                **ENV, **(env or {})}
    for name in [n for n in shim_env if n.startswith(DROP + tuple(drop))]:
        del shim_env[name]
    s = Site(emu, str(home), str(work), shim_env, stdin=stdin)
    try:
        yield s
    finally:
        from sflow.queue import client

        try:
            s.run("scancel", "-u", os.environ.get("USER") or "root", timeout=30)
            time.sleep(0.5)
            client.call(str(home), "shutdown", start=False)
        except Exception:
            pass
        emu.close()
        if saved is None:
            os.environ.pop("SFLOW_HOME", None)
        else:
            os.environ["SFLOW_HOME"] = saved


def site_fixture(name: str, conf: str, key: str, **options):
    """A module-scoped ``site`` fixture: one Site (see ``open_site`` for ``options``) under a fresh ``name`` dir."""

    @pytest.fixture(scope="module")
    def site(tmp_path_factory):
        with open_site(tmp_path_factory.mktemp(name), conf, key, **options) as s:
            yield s

    return site
