"""The burst service in this process against the Mithril emulator, with a recording Slurm and booter."""

from __future__ import annotations

import contextlib
import threading

from polling import wait_for
from sflow.burst.service import BurstService
from sflow.burst.settings import BurstSettings, PartitionSettings
from sflow.burst.slurm import parse_show
from sflow.mithril.emulator import start_emulator

KEY = "fkey_burst_5ecret_value_7"
REGION = "us-central1-a"
EMULATOR = {"tick": 0.2, "startup": 0.3, "notice": 5.0}


class FakeSlurm:
    """Records every command; answers batch scripts and job records from dicts."""

    def __init__(self, scripts: dict | None = None, jobs: dict | None = None):
        self.calls: list[tuple] = []
        self.scripts = scripts or {}
        self.jobs = jobs or {}
        self.lock = threading.Lock()

    def _record(self, *call) -> None:
        with self.lock:
            self.calls.append(call)

    def update_node(self, nodes, **fields):
        self._record("update_node", tuple(nodes), fields)

    def update_job(self, job_id, **fields):
        self._record("update_job", job_id, fields)

    def set_admin_comment(self, job_id, text):
        self._record("update_job", job_id, {"AdminComment": text})

    def requeue(self, job_id):
        self._record("requeue", job_id)

    def signal(self, job_id, signal="TERM", batch_only=False):
        self._record("signal", job_id, signal, batch_only)

    def batch_script(self, job_id):
        return self.scripts.get(job_id)

    def show_job(self, job_id):
        return parse_show(self.jobs.get(job_id, ""))

    def jobs_on(self, nodes):
        return []

    def of(self, kind: str) -> list[tuple]:
        with self.lock:
            return [c for c in self.calls if c[0] == kind]


class FakeBooter:
    def __init__(self):
        self.calls: list[tuple] = []

    def boot(self, node_name, ssh_destination, conf_server, instance=None):
        self.calls.append((node_name, ssh_destination, conf_server))


def fake_hosts(fid: str, hostname: str, keys: list) -> tuple:
    """Every emulated instance is 'reachable' at a loopback address no one dials: the booter is a fake."""
    return "127.0.0.1:2222", lambda: None


def settings_for(state_dir: str, url: str, limit: str = "$30.00/hr", resume_timeout: int = 1800,
                 margin: int = 60, preempt_grace: float = 60.0) -> BurstSettings:
    part = PartitionSettings("gpu", "mithril-gpu-[1-4]", "8xh100", "8xh100", REGION, limit)
    return BurstSettings(path="burst.toml", state_dir=state_dir, api_url=url, resume_timeout=resume_timeout,
                         timeout_margin=margin, conf_server="ctl:6817", poll_seconds=0.2,
                         preempt_grace=preempt_grace, partitions={"gpu": part})


def settings_toml(state_dir: str, url: str, limit: str = "$30.00/hr") -> str:
    return (f'[burst]\nstate_dir = "{state_dir}"\napi_url = "{url}"\nconf_server = "ctl:6817"\npoll_seconds = 0.2\n'
            f'[burst.partitions.gpu]\nnodes = "mithril-gpu-[1-4]"\ninstance_type = "8xh100"\n'
            f'region = "{REGION}"\nlimit_price = "{limit}"\n')


@contextlib.contextmanager
def emulator(**options):
    emu = start_emulator(**{**EMULATOR, **options}, api_key=KEY, host_factory=fake_hosts)
    try:
        yield emu
    finally:
        emu.close()


@contextlib.contextmanager
def running(settings: BurstSettings, slurm: FakeSlurm, booter: FakeBooter):
    """The service's loop on a thread, stopped (and its bids' worker closed) at exit."""
    service = BurstService(settings, slurm=slurm, booter=booter)
    stop = threading.Event()
    thread = threading.Thread(target=service.serve, args=(stop, 0.05), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        stop.set()
        thread.join(10)
        service.close()


def market_bids(emu) -> list:
    with emu.service.lock:
        return list(emu.market.bids.values())


def live_bids(emu) -> list:
    return [b for b in market_bids(emu) if b.status in ("Open", "Allocated", "Preempting")]


def demand(emu, price: str, quantity: int, instance_type: str = "8xh100", region: str = REGION,
           bids: int = 1) -> None:
    """Other users' bids for the pool from now on: ``bids`` of ``quantity`` each, all-or-nothing
    like a user's (a quantity of 0 clears them)."""
    with emu.service.lock:
        emu.service.script({"region": region, "instance_type": instance_type,
                            "demand": [[0, price, quantity]] * bids}, emu.service.clock())
