"""The whole bursting chain: real SLURM 22.05, sflow's programs and service, the Mithril emulator.

    with BurstSite(tmp_dir, limit_price="$20.00/hr") as site:
        site.slurm.run("sbatch", "-p", "cloud", "-N2", ...)

- The emulator runs in this process with a fast auction, and each instance it
  starts is a real SSH server on loopback (``sshhost.HostPool``) whose
  commands run on this machine.
- burst.toml sits beside the private cluster's slurm.conf: slurmctld gives its
  programs SLURM_CONF and nothing else, and that is how they find it. The API
  key is in a 0600 file, as on a real slurmctld host.
- slurm.conf's ResumeProgram, SuspendProgram and ResumeFailProgram are small
  executables that run ``sflow.burst.programs`` from this tree, as the
  installed console scripts do: the first call starts the service detached.
- The service boots a node by running ``boot_command`` over SSH on its
  instance: here the harness's booter (``nodes.py boot``), which starts a
  configless slurmd for the node. When the emulator ends an instance, the
  slurmd booted on it is stopped, as a deleted instance's would be.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

from sflow.burst import store
from sflow.burst.config import real_memory_mb
from sflow.mithril.emulator import start_emulator
from sflow.mithril.emulator.catalog import default_catalog
from sflow.mithril.sshhost import HostPool

from . import nodes
from .burst_harness import demand
from .started import Started
from .cloud_slurm import CloudSlurm, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "fkey_burst_e2e_5ecret_value_9"
REGION = "us-central1-a"
INSTANCE_TYPE = "8xh100"
EMULATOR = {"tick": 0.2, "startup": 1.0, "notice": 5.0}  # a fast auction; instances running ~1 s after a win
BOOTED_MARK = "booted-node"  # in the instance's home: which node the boot command made of it
PROGRAMS = {"resume": ("sflow-burst-resume", "resume_main"), "suspend": ("sflow-burst-suspend", "suspend_main"),
            "resume_fail": ("sflow-burst-resume-fail", "resume_fail_main")}
WRAPPER = """#!{python}
# What pip's console script does, with this tree first on sys.path.
import sys
sys.path.insert(0, {root!r})
from sflow.burst.programs import {main}
sys.argv[0] = {name!r}
{main}()
"""


def node_shape(instance_type: str = INSTANCE_TYPE) -> dict:
    """CloudSlurm's node options for the emulator's instance type, as ``flow burst config`` writes them."""
    kind = default_catalog().find(instance_type)
    return {"cpus": kind.num_cpus, "memory": real_memory_mb(SimpleNamespace(memory_mb=kind.ram_gb * 1024)),
            "gpus": kind.num_gpus, "gpu_type": kind.gpu_type.lower(),
            "features": f"{instance_type},{REGION}"}


def write_wrappers(directory: str) -> dict[str, str]:
    """The three programs as executables in ``directory``: {kind: absolute path}."""
    paths = {}
    for kind, (name, main) in PROGRAMS.items():
        path = os.path.join(directory, name)
        with open(path, "w") as handle:
            handle.write(WRAPPER.format(python=sys.executable, root=ROOT, main=main, name=name))
        os.chmod(path, 0o755)
        paths[kind] = path
    return paths


class BurstSite(Started):
    """The emulator, its SSH instances, the private SLURM and the burst service, under ``root``.

    ``slurm`` (CloudSlurm), ``emu`` (the emulator), ``state_dir`` (the service's),
    ``config`` (burst.toml). Stopping stops the service, the cluster, the instances
    and the emulator, in that order.
    """

    def __init__(self, root: str, *, limit_price: str = "$20.00/hr", resume_timeout: int = 40,
                 timeout_margin: int = 25, suspend_time: int = 5, suspend_timeout: int = 5, cloud_nodes: int = 2,
                 poll_seconds: float = 0.2, preempt_grace: float | None = None, emulator: dict | None = None,
                 extra_conf: str = ""):
        self.root = os.path.abspath(root)
        self.limit_price, self.resume_timeout, self.timeout_margin = limit_price, resume_timeout, timeout_margin
        self.suspend_time, self.suspend_timeout, self.cloud_nodes = suspend_time, suspend_timeout, cloud_nodes
        self.poll_seconds, self.preempt_grace = poll_seconds, preempt_grace
        self.emulator_options = {**EMULATOR, **(emulator or {})}
        self.extra_conf = extra_conf  # slurm.conf lines of the test's own
        self.slurm_dir = os.path.join(self.root, "slurm")
        self.state_dir = os.path.join(self.root, "state")
        self.config = os.path.join(self.slurm_dir, "burst.toml")
        self.emu = None
        self.hosts: HostPool | None = None
        self.slurm: CloudSlurm | None = None
        self.booted: dict[str, str] = {}  # instance id -> node name

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        os.makedirs(self.slurm_dir, exist_ok=True)
        self.hosts = HostPool(os.path.join(self.root, "instances"))
        self.emu = start_emulator(**self.emulator_options, api_key=KEY, host_factory=self.start_instance)
        self.write_config()
        programs = write_wrappers(self.root)
        self.slurm = CloudSlurm(self.slurm_dir, cloud_nodes=self.cloud_nodes, **node_shape(),
                                resume_program=programs["resume"], suspend_program=programs["suspend"],
                                resume_fail_program=programs["resume_fail"], suspend_time=self.suspend_time,
                                suspend_timeout=self.suspend_timeout, resume_timeout=self.resume_timeout,
                                extra_conf=self.extra_conf)
        self.slurm.start()

    def stop(self) -> None:
        self.stop_service()
        if self.slurm is not None:
            self.slurm.stop()
        if self.emu is not None:
            self.emu.close()
        if self.hosts is not None:
            self.hosts.close()

    def write_config(self) -> None:
        key_file = os.path.join(self.root, "mithril-key.toml")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(f'[mithril]\napi_key = "{KEY}"\n')
        boot = (f"{shlex.quote(sys.executable)} {shlex.quote(os.path.join(HERE, 'nodes.py'))} boot "
                f"{shlex.quote(self.slurm_dir)} {{node}} && echo {{node}} > {BOOTED_MARK}")
        text = f"""[burst]
api_url = "{self.emu.url}"
api_key_file = "{key_file}"
state_dir = "{self.state_dir}"
conf_server = "127.0.0.1:26817"
slurm_bin = "/usr/bin"
boot_command = {_toml(boot)}
resume_timeout = {self.resume_timeout}
timeout_margin = {self.timeout_margin}
poll_seconds = {self.poll_seconds}
{f"preempt_grace = {self.preempt_grace}" if self.preempt_grace is not None else ""}

[burst.partitions.cloud]
nodes = "cloud[1-{self.cloud_nodes}]"
instance_type = "{INSTANCE_TYPE}"
region = "{REGION}"
limit_price = "{self.limit_price}"
"""
        with open(self.config, "w") as handle:
            handle.write(text)

    def start_instance(self, fid: str, hostname: str, keys) -> tuple[str, object]:
        """The emulator's host factory: an SSH server for the instance; when the instance ends,
        the slurmd its boot command started goes with it."""
        host = self.hosts.start(fid, keys, hostname=hostname)

        def close() -> None:
            node = self.node_booted_on(host.root)
            if node:
                nodes.stop(self.slurm_dir, node)
            self.hosts.stop(fid)

        return host.address, close

    @staticmethod
    def node_booted_on(instance_root: str) -> str | None:
        try:
            with open(os.path.join(instance_root, BOOTED_MARK)) as handle:
                return handle.read().strip() or None
        except OSError:
            return None

    def service_pid(self) -> int | None:
        """The service the programs started (the last one its log names)."""
        try:
            with open(os.path.join(self.state_dir, "service.log")) as handle:
                pids = re.findall(r"started \(pid (\d+)\)", handle.read())
        except OSError:
            return None
        return int(pids[-1]) if pids else None

    def stop_service(self) -> None:
        pid = self.service_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def kill_service(self) -> int | None:
        """SIGKILL the service, as a crash would; its pid, once it is gone."""
        pid = self.service_pid()
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return pid
        wait_for(lambda: not _alive(pid), 20, f"service {pid} to die")
        return pid

    def start_service(self) -> None:
        """Start the service as a program run by slurmctld does: ``start_service`` with
        slurmctld's environment (SLURM_CONF and nothing else), burst.toml found beside slurm.conf."""
        code = (f"import sys; sys.path.insert(0, {ROOT!r})\n"
                "from sflow.burst.programs import start_service\n"
                f"start_service({self.config!r}, {self.state_dir!r})\n")
        subprocess.run([sys.executable, "-c", code], env={"SLURM_CONF": self.slurm.conf, "LC_CTYPE": "C.UTF-8"},
                       check=True, timeout=60, stdin=subprocess.DEVNULL)

    # ------------------------------------------------------------------ what to look at
    def service_log(self) -> str:
        try:
            with open(os.path.join(self.state_dir, "service.log")) as handle:
                return handle.read()
        except OSError:
            return ""

    def requests(self) -> list[store.Request]:
        if not os.path.exists(store.db_path(self.state_dir)):
            return []
        conn = store.open_store(self.state_dir)
        try:
            return [store.Request(*row[:3], None, *row[4:]) for row in
                    conn.execute("SELECT seq, kind, hostlist, payload, received, taken FROM requests ORDER BY seq")]
        finally:
            conn.close()

    def bids(self) -> list:
        with self.emu.service.lock:
            return list(self.emu.market.bids.values())

    def live_bids(self) -> list:
        """Bids Open or Allocated (or being preempted)."""
        return [b for b in self.bids() if b.status in ("Open", "Allocated", "Preempting")]

    def instances(self, bid) -> list:
        with self.emu.service.lock:
            return [self.emu.market.instances[fid] for fid in bid.instances if fid in self.emu.market.instances]

    def hold_bid_answers(self) -> SimpleNamespace:
        """From now on a bid's create takes effect but its answer waits until ``release`` is set, as
        when Mithril placed the bid and the answer was lost. ``held`` is set once a create waits;
        ``creates`` holds each create's Idempotency-Key."""
        hold = SimpleNamespace(held=threading.Event(), release=threading.Event(), creates=[])
        handle = self.emu.service.handle

        def holding(method, path, query, headers, *args, **kwargs):
            response = handle(method, path, query, headers, *args, **kwargs)
            if method == "POST" and path.rstrip("/").endswith("/spot/bids"):
                hold.creates.append({k.lower(): v for k, v in headers.items()}.get("idempotency-key"))
                hold.held.set()
                hold.release.wait(60)
            return response

        self.emu.service.handle = holding
        return hold

    def demand(self, price: str, quantity: int) -> None:
        """Other users' bids for the partition's pool from now on."""
        demand(self.emu, price, quantity, INSTANCE_TYPE, REGION)

    def wait(self, predicate, timeout: float, what: str):
        """``wait_for`` that says, on a timeout, what the service and slurmctld logged last."""
        try:
            return wait_for(predicate, timeout, what, interval=0.1)
        except TimeoutError as err:
            raise AssertionError(f"{err}\n--- service.log\n{self.service_log()[-3000:]}\n--- slurmctld.log\n"
                                 f"{_tail(os.path.join(self.slurm_dir, 'log', 'slurmctld.log'))}") from None


class Timeline:
    """What each probe returned, sampled in a thread every ``interval`` seconds while running:
    ``changes`` holds (seconds since start, probe name, value) each time a value differs from the
    probe's last one (an exception counts as a value: its repr).

        with Timeline({"nodes": slurm.node_states}) as timeline: ...
        timeline.first("nodes", lambda v: "cloud1" in v)   # seconds since start, or None
    """

    def __init__(self, probes: dict, interval: float = 0.3, origin: float | None = None):
        self.probes, self.interval = probes, interval
        self.changes: list[tuple[float, str, object]] = []
        self.origin = origin  # another timeline's start, to share its clock
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timeline", daemon=True)

    def __enter__(self) -> "Timeline":
        self.started = time.monotonic() if self.origin is None else self.origin
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        last: dict[str, object] = {}
        while not self._stop.is_set():
            for name, probe in self.probes.items():
                try:
                    value = probe()
                except Exception as err:  # a probe's failure is something to see, not to stop on
                    value = repr(err)
                if name not in last or last[name] != value:
                    last[name] = value
                    self.changes.append((time.monotonic() - self.started, name, value))
            self._stop.wait(self.interval)

    def at(self, seconds: float) -> float:
        """A ``time.monotonic()`` value as seconds since start."""
        return seconds - self.started

    def first(self, name: str, predicate) -> float | None:
        for when, probe, value in list(self.changes):
            if probe == name and predicate(value):
                return when
        return None

    def values(self, name: str) -> list[tuple[float, object]]:
        return [(when, value) for when, probe, value in list(self.changes) if probe == name]

    def text(self) -> str:
        return "\n".join(f"  +{when:6.1f}s {name}: {value}" for when, name, value in list(self.changes))


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours is gone too
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _tail(path: str, size: int = 3000) -> str:
    try:
        with open(path, errors="replace") as handle:
            return handle.read()[-size:]
    except OSError:
        return ""
