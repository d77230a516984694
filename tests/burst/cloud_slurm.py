"""A private real SLURM 22.05 whose CLOUD partition is powered up and down by programs we choose.

    with CloudSlurm(tmp_dir, resume_program=..., suspend_program=...) as slurm:
        slurm.run("sbatch", "-p", "cloud", "-N2", "--wrap", "hostname")
        slurm.boot_node("cloud1"); slurm.stop_node("cloud1")

It runs beside the reference SLURM (/etc/slurm, ports 6817-6819, 127.0.0.11-14)
without touching it: its own config directory (SLURM_CONF=DIR/slurm.conf,
daemons started with -f), ports (26817 slurmctld, 26819 slurmdbd, 27000 the
ordinary node, 27000+i cloud node i), loopback addresses (127.0.2.x), state
under DIR, and accounting database (StorageLoc=burst_acct_db, dropped at
start) in the shared MariaDB. munged is shared; MariaDB and munged are started
only when not running, and then stopped again.

Cluster ``burst``: node ``base1`` (partition ``base``, the default) and
``cloud[1-N]`` (State=CLOUD, partition ``cloud``, Gres=gpu:<type>:<n> on fake
device nodes, Feature=...). SlurmctldParameters: enable_configless (cloud
slurmds fetch their configs with --conf-server, as a cloud image would),
cloud_reg_addrs (a registering cloud node's NodeAddr/NodeHostName become the
address it connected from: 127.0.0.1 here, and each node has its own Port, so
no ``scontrol update NodeAddr=`` is needed), idle_on_node_suspend,
power_save_interval=1 (the power-save thread looks every second instead of
10). PrivateData=cloud shows powered-down nodes in sinfo. TreeWidth=65533:
the controller talks to every node directly (cloud names do not resolve).

Booting is in tests/burst/nodes.py so that a ResumeProgram (a separate
executable run by slurmctld as SlurmUser) can do it: ``booter_argv("boot")``
gives its command line; ``write_program`` writes a ResumeProgram,
SuspendProgram or ResumeFailProgram that records its calls and boots, stops
or does nothing.

What SLURM 22.05 does here, which the harness is built around (the recorded
details are in compat/golden/power_save.json, by compat/record_power_save.py):

- Without a SuspendProgram, power saving is off altogether ("power_save module
  disabled, NULL SuspendProgram"), ResumeProgram or not.
- The programs run with argv [program, hostlist] and an environment of only
  SLURM_CONF, LC_CTYPE and (ResumeProgram) SLURM_RESUME_FILE: no PATH.
- A powering-up node counts as resumed only when its slurmd registers with a
  newer BootTime: the booter starts slurmd with -b, as this machine does not
  reboot. A node that does not register within ResumeTimeout becomes down~
  "ResumeTimeout reached", its job is requeued (PENDING, Restarts=1), and
  ResumeFailProgram gets its hostlist.
- Once the nodes have registered, the job leaves CONFIGURING only at the
  controller's periodic check (every 30 s in 22.05; not configurable): from
  sbatch to RUNNING takes up to ~30 s even when nodes boot at once.
- The ordinary node is in SuspendExcNodes, or SLURM powers it down too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from . import nodes  # the booter, also runnable on its own by file path
from .started import Started

HERE = os.path.dirname(os.path.abspath(__file__))

BIN = "/usr/bin"
SBIN = "/usr/sbin"
MYSQL_SOCKET = "/run/mysqld/mysqld.sock"
DB_USER, DB_PASS, DB_NAME = "slurm", "slurmref", "burst_acct_db"


def missing(with_dbd: bool = True) -> str | None:
    """Why the harness cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (slurmd, namespaces, device nodes)"
    needed = [f"{SBIN}/slurmctld", f"{SBIN}/slurmd", f"{BIN}/sbatch", f"{BIN}/scontrol", f"{SBIN}/munged",
              f"{BIN}/munge", "/usr/bin/unshare"]
    if with_dbd:
        needed += [f"{SBIN}/slurmdbd", f"{SBIN}/mariadbd", f"{BIN}/sacctmgr"]
    for path in needed:
        if not os.path.exists(path):
            return f"{path} is not installed"
    if not _munge_answers() and not os.path.exists("/etc/munge/munge.key"):
        return "munged is not running and there is no /etc/munge/munge.key"
    if with_dbd and not os.path.isdir("/var/lib/mysql/mysql"):
        return "MariaDB has no data directory (mariadb-install-db)"
    return None


def _munge_answers() -> bool:
    return subprocess.run(f"{BIN}/munge -n | {BIN}/unmunge", shell=True, capture_output=True).returncode == 0


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until it returns something true; its value, or TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class CloudSlurm(Started):
    """One private cluster under ``root`` (a directory of its own, e.g. a pytest tmp dir).

    Attributes: ``dir`` (slurm.conf, gres.conf, slurmdbd.conf, nodes.json, log/, pids/, spool/, ctld/,
    dev/), ``conf`` (DIR/slurm.conf), ``env`` (SLURM_CONF and a plain PATH: pass it to SLURM's
    commands), ``cloud_nodes`` (the cloud node names), ``partition`` ("cloud").
    """

    def __init__(self, root: str, *, cloud_nodes: int = 2, cpus: int = 2, memory: int = 2000, gpus: int = 8,
                 gpu_type: str = "h100", features: str = "mithril,h100", resume_program: str | None = None,
                 suspend_program: str | None = None, resume_fail_program: str | None = None,
                 suspend_time: int = 5, suspend_timeout: int = 5, resume_timeout: int = 15,
                 with_dbd: bool = True, port_base: int = 26817, node_port_base: int = 27000,
                 extra_conf: str = ""):
        self.dir = os.path.abspath(root)
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.cluster, self.partition = "burst", "cloud"
        self.cloud_nodes = [f"cloud{i}" for i in range(1, cloud_nodes + 1)]
        self.cpus, self.memory, self.gpus, self.gpu_type, self.features = cpus, memory, gpus, gpu_type, features
        self.programs = {"ResumeProgram": resume_program, "SuspendProgram": suspend_program,
                         "ResumeFailProgram": resume_fail_program}
        self.timings = {"SuspendTime": suspend_time, "SuspendTimeout": suspend_timeout,
                        "ResumeTimeout": resume_timeout}
        self.with_dbd = with_dbd
        self.ctld_port, self.dbd_port, self.node_port_base = port_base, port_base + 2, node_port_base
        self.extra_conf = extra_conf
        self.env = {**nodes.slurm_env(self.dir), "HOME": "/root", "USER": "root", "TZ": "UTC"}
        self._pids: list[tuple[str, int]] = []  # (what, pid) of every daemon started here, in order
        self._mariadb_started = False

    # ------------------------------------------------------------------ commands
    def run(self, cmd: str, *args: str, timeout: float = 60, check: bool = False,
            **kwargs) -> subprocess.CompletedProcess:
        """A real SLURM command (``/usr/bin/<cmd>``) against this cluster."""
        return subprocess.run([os.path.join(BIN, cmd), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check, cwd=self.dir, **kwargs)

    def booter_argv(self, action: str) -> list[str]:
        """The command line that boots ("boot") or stops ("stop") nodes; append a hostlist."""
        return [sys.executable, os.path.join(HERE, "nodes.py"), action, self.dir]

    def boot_node(self, name: str, set_addr: bool = False) -> int:
        """Start NAME's slurmd (configless, own UTS namespace with hostname NAME, own Port)."""
        return nodes.boot(self.dir, name, set_addr=set_addr)

    def stop_node(self, name: str) -> bool:
        """Stop exactly NAME's slurmd (the one the booter started). False if it was not running."""
        return nodes.stop(self.dir, name)

    def slurmd_pid(self, name: str) -> int | None:
        return nodes.running_pid(self.dir, name)

    def node_states(self) -> dict[str, tuple[str, str]]:
        """Per node: sinfo's compact state (``idle~``, ``alloc#``, ``down~``...) and its reason."""
        out = self.run("sinfo", "-h", "-N", "-o", "%N|%t|%E").stdout
        states = {}
        for line in out.splitlines():
            name, state, reason = line.split("|", 2)
            states[name] = (state, reason)
        return states

    def show_node(self, name: str) -> dict[str, str]:
        """``scontrol show node NAME`` as a dict (Reason keeps its spaces: it is the last field)."""
        out = self.run("scontrol", "show", "node", "-o", name).stdout.strip()
        fields, key = {}, None
        for word in out.split(" "):
            if "=" in word and key != "Reason":
                key, _, value = word.partition("=")
                fields[key] = value
            elif key:
                fields[key] += " " + word
        return fields

    def job(self, job_id: str) -> dict[str, str]:
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout.strip()
        return dict(w.partition("=")[::2] for w in out.split(" ") if "=" in w)

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        for port in (self.ctld_port, self.dbd_port, self.node_port_base):
            if not _port_free(port):
                raise RuntimeError(f"port {port} is in use (another private SLURM still running?)")
        for sub in ("ctld", "log", "pids", "spool", "dev"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        for i in range(self.gpus):
            dev = os.path.join(self.dir, "dev", f"nvidia{i}")
            if not os.path.exists(dev):
                os.mknod(dev, 0o666 | 0o020000, os.makedev(195, i))  # char device, NVIDIA's major
        self._ensure_munge()
        self._write_configs()
        if self.with_dbd:
            self._start_dbd()
        self._daemon("slurmctld", [f"{SBIN}/slurmctld", "-D", "-f", self.conf])
        wait_for(lambda: "UP" in self.run("scontrol", "ping").stdout, 60, "slurmctld to answer")
        # The ordinary node: a static node reads the same file, as the reference cluster's do.
        self._daemon("slurmd-base1", ["unshare", "--uts", "--", "sh", "-c",
                                      f"hostname base1 && exec {SBIN}/slurmd -D -N base1 -f {self.conf}"])
        wait_for(lambda: self.node_states().get("base1", ("",))[0] == "idle", 60, "base1 to be idle")

    def stop(self) -> None:
        """Stop the cloud slurmds, then every daemon started here, last first; drop nothing else."""
        for name in self.cloud_nodes:
            try:
                self.stop_node(name)
            except OSError:
                pass
        for what, pid in reversed(self._pids):
            _terminate(pid)
        self._pids.clear()
        if self._mariadb_started:
            subprocess.run([f"{BIN}/mariadb-admin", f"--socket={MYSQL_SOCKET}", "shutdown"], capture_output=True)
            self._mariadb_started = False

    def _daemon(self, what: str, argv: list[str]) -> int:
        out = open(os.path.join(self.dir, "log", f"{what}.out"), "ab")
        proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
        out.close()
        self._pids.append((what, proc.pid))
        with open(os.path.join(self.dir, "pids", f"{what}.pid"), "w") as handle:
            handle.write(f"{proc.pid}\n")
        return proc.pid

    def _ensure_munge(self) -> None:
        if _munge_answers():
            return
        if not os.path.exists("/etc/munge/munge.key"):
            raise RuntimeError("munged is not running and /etc/munge/munge.key does not exist")
        os.makedirs("/run/munge", exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        self._daemon("munged", ["runuser", "-u", "munge", "--", f"{SBIN}/munged", "-F"])
        wait_for(_munge_answers, 20, "munged")

    def _mysql(self, sql: str) -> None:
        subprocess.run([f"{BIN}/mariadb", f"--socket={MYSQL_SOCKET}", "-e", sql], check=True, capture_output=True)

    def _start_dbd(self) -> None:
        ping = [f"{BIN}/mariadb-admin", f"--socket={MYSQL_SOCKET}", "ping"]
        if subprocess.run(ping, capture_output=True).returncode != 0:
            os.makedirs("/run/mysqld", exist_ok=True)
            shutil.chown("/run/mysqld", "mysql", "mysql")
            subprocess.Popen([f"{SBIN}/mariadbd", "--user=mysql", "--skip-networking", f"--socket={MYSQL_SOCKET}",
                              "--pid-file=/run/mysqld/mysqld.pid"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            self._mariadb_started = True
            wait_for(lambda: subprocess.run(ping, capture_output=True).returncode == 0, 60, "MariaDB")
        # A fresh database each time: job ids restart with the fresh StateSaveLocation.
        self._mysql(f"DROP DATABASE IF EXISTS {DB_NAME}; "
                    f"CREATE USER IF NOT EXISTS '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASS}'; "
                    f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'localhost'; FLUSH PRIVILEGES;")
        # slurmdbd has no -f: it reads slurmdbd.conf beside $SLURM_CONF.
        self._daemon("slurmdbd", [f"{SBIN}/slurmdbd", "-D"])
        wait_for(lambda: self.run("sacctmgr", "-n", "list", "cluster").returncode == 0, 60, "slurmdbd")
        self.run("sacctmgr", "-i", "add", "cluster", self.cluster, check=True)

    # ------------------------------------------------------------------ configuration
    def _write_configs(self) -> None:
        lay = {"conf_server": f"127.0.0.1:{self.ctld_port}",
               "nodes": {n: {"addr": f"127.0.2.{i}", "port": self.node_port_base + i}
                         for i, n in enumerate(self.cloud_nodes, 1)}}
        _write(os.path.join(self.dir, "nodes.json"), json.dumps(lay, indent=1) + "\n")
        _write(self.conf, self.slurm_conf())
        dev = os.path.join(self.dir, "dev", f"nvidia[0-{self.gpus - 1}]")
        _write(os.path.join(self.dir, "gres.conf"),
               f"AutoDetect=off\nNodeName=base1 Name=gpu File={dev}\n"
               f"NodeName={self.cloud_hostlist()} Name=gpu Type={self.gpu_type} File={dev}\n")
        _write(os.path.join(self.dir, "slurmdbd.conf"), "\n".join([
            "AuthType=auth/munge", "DbdAddr=127.0.0.1", "DbdHost=localhost", f"DbdPort={self.dbd_port}",
            "SlurmUser=root", "DebugLevel=info", f"LogFile={self.dir}/log/slurmdbd.log",
            f"PidFile={self.dir}/slurmdbd.pid", "StorageType=accounting_storage/mysql", "StorageHost=localhost",
            f"StorageUser={DB_USER}", f"StoragePass={DB_PASS}", f"StorageLoc={DB_NAME}", ""]), mode=0o600)

    def cloud_hostlist(self) -> str:
        return f"cloud[1-{len(self.cloud_nodes)}]"

    def slurm_conf(self) -> str:
        d = self.dir
        if self.with_dbd:
            acct = (f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n"
                    f"AccountingStoragePort={self.dbd_port}\nJobAcctGatherType=jobacct_gather/linux")
        else:
            acct = "AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none"
        power = "".join(f"{key}={value}\n" for key, value in {**self.programs, **self.timings}.items()
                        if value is not None)
        cloud = "".join(
            f"NodeName={n} Port={self.node_port_base + i} CPUs={self.cpus} RealMemory={self.memory} "
            f"Gres=gpu:{self.gpu_type}:{self.gpus} Feature={self.features} State=CLOUD\n"
            for i, n in enumerate(self.cloud_nodes, 1))
        return f"""# A private cluster for bursting tests
ClusterName={self.cluster}
SlurmctldHost={socket.gethostname().split('.')[0]}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation={d}/ctld
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
GresTypes=gpu
AccountingStorageTRES=gres/gpu
{acct}
JobCompType=jobcomp/none
SlurmctldTimeout=60
SlurmdTimeout=120
InactiveLimit=0
TreeWidth=65533
PrivateData=cloud
SlurmctldParameters=enable_configless,cloud_reg_addrs,idle_on_node_suspend,power_save_interval=1,power_save_min_interval=0
ResumeRate=0
SuspendRate=0
SuspendExcNodes=base1
{power}{self.extra_conf}
NodeName=base1 NodeHostname=base1 NodeAddr=127.0.2.100 Port={self.node_port_base} CPUs=2 RealMemory=2000 Gres=gpu:{self.gpus} State=UNKNOWN
{cloud}PartitionName=base Nodes=base1 Default=YES MaxTime=INFINITE State=UP
PartitionName={self.partition} Nodes={self.cloud_hostlist()} MaxTime=INFINITE State=UP
"""


def _write(path: str, text: str, mode: int = 0o644) -> None:
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def _terminate(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; reap it (every daemon here is our child)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


PROGRAM = '''#!{python}
# A power-saving program for the private SLURM: records how it was called, then {what}.
import json, os, sys, time
sys.path.insert(0, {here!r})
import nodes
call = {{"argv": sys.argv, "env": dict(os.environ), "uid": os.getuid(), "cwd": os.getcwd(), "time": time.time()}}
if os.environ.get("SLURM_RESUME_FILE"):
    with open(os.environ["SLURM_RESUME_FILE"]) as handle:
        call["resume_file"] = handle.read()
with open({log!r}, "a") as handle:
    handle.write(json.dumps(call) + "\\n")
if {action!r}:
    sys.exit(nodes.main([{action!r}, {dir!r}, sys.argv[1]]))
'''


def write_program(root: str, name: str, action: str | None = None) -> str:
    """An executable DIR/NAME that appends each call (argv, env, SLURM_RESUME_FILE's text) to DIR/NAME.calls
    as a JSON line, then boots ("boot") or stops ("stop") the nodes of its hostlist argument, or does
    nothing (None). Give its path as ResumeProgram, SuspendProgram or ResumeFailProgram."""
    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, name)
    what = {"boot": "boots the nodes", "stop": "stops the nodes", None: "does nothing"}[action]
    _write(path, PROGRAM.format(python=sys.executable, here=HERE, log=path + ".calls", action=action,
                                dir=root, what=what), mode=0o755)
    return path


def calls(program: str) -> list[dict]:
    """The calls a program written by ``write_program`` recorded, oldest first."""
    try:
        with open(program + ".calls") as handle:
            return [json.loads(line) for line in handle]
    except FileNotFoundError:
        return []
