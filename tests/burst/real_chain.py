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
import sys
import time
from types import SimpleNamespace

from sflow.burst import store
from sflow.burst.config import real_memory_mb
from sflow.mithril.emulator import start_emulator
from sflow.mithril.emulator.catalog import default_catalog
from sflow.mithril.sshhost import HostPool

from . import nodes
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


class BurstSite:
    """The emulator, its SSH instances, the private SLURM and the burst service, under ``root``.

    ``slurm`` (CloudSlurm), ``emu`` (the emulator), ``state_dir`` (the service's),
    ``config`` (burst.toml). Stopping stops the service, the cluster, the instances
    and the emulator, in that order.
    """

    def __init__(self, root: str, *, limit_price: str = "$20.00/hr", resume_timeout: int = 40,
                 timeout_margin: int = 25, suspend_time: int = 5, suspend_timeout: int = 5, cloud_nodes: int = 2,
                 poll_seconds: float = 0.2, emulator: dict | None = None):
        self.root = os.path.abspath(root)
        self.limit_price, self.resume_timeout, self.timeout_margin = limit_price, resume_timeout, timeout_margin
        self.suspend_time, self.suspend_timeout, self.cloud_nodes = suspend_time, suspend_timeout, cloud_nodes
        self.poll_seconds = poll_seconds
        self.emulator_options = {**EMULATOR, **(emulator or {})}
        self.slurm_dir = os.path.join(self.root, "slurm")
        self.state_dir = os.path.join(self.root, "state")
        self.config = os.path.join(self.slurm_dir, "burst.toml")
        self.emu = None
        self.hosts: HostPool | None = None
        self.slurm: CloudSlurm | None = None
        self.booted: dict[str, str] = {}  # instance id -> node name

    # ------------------------------------------------------------------ start / stop
    def __enter__(self) -> "BurstSite":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        os.makedirs(self.slurm_dir, exist_ok=True)
        self.hosts = HostPool(os.path.join(self.root, "instances"))
        self.emu = start_emulator(**self.emulator_options, api_key=KEY, host_factory=self.start_instance)
        self.write_config()
        programs = write_wrappers(self.root)
        self.slurm = CloudSlurm(self.slurm_dir, cloud_nodes=self.cloud_nodes, **node_shape(),
                                resume_program=programs["resume"], suspend_program=programs["suspend"],
                                resume_fail_program=programs["resume_fail"], suspend_time=self.suspend_time,
                                suspend_timeout=self.suspend_timeout, resume_timeout=self.resume_timeout)
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

    def demand(self, price: str, quantity: int) -> None:
        """Other users' bids for the partition's pool from now on."""
        with self.emu.service.lock:
            self.emu.service.script({"region": REGION, "instance_type": INSTANCE_TYPE,
                                     "demand": [[0, price, quantity]]}, self.emu.service.clock())

    def wait(self, predicate, timeout: float, what: str):
        """``wait_for`` that says, on a timeout, what the service and slurmctld logged last."""
        try:
            return wait_for(predicate, timeout, what, interval=0.1)
        except TimeoutError as err:
            raise AssertionError(f"{err}\n--- service.log\n{self.service_log()[-3000:]}\n--- slurmctld.log\n"
                                 f"{_tail(os.path.join(self.slurm_dir, 'log', 'slurmctld.log'))}") from None


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
