"""Boot and stop the slurmd of a CLOUD node of a private SLURM, from any process.

    python3 -m tests.burst.nodes boot DIR HOSTLIST [--set-addr]
    python3 tests/burst/nodes.py stop DIR HOSTLIST

DIR is the harness directory (the one holding slurm.conf and nodes.json, which
CloudSlurm writes); a path to its slurm.conf is accepted too. A ResumeProgram
or SuspendProgram, being a separate executable run by slurmctld, calls this.
Standard library only, so it runs by file path under any python3.

Each booted slurmd runs configless (``--conf-server``, as a cloud image would),
in its own UTS namespace whose hostname is the node name, and in its own mount
namespace with a private /run/slurm (where configless slurmd caches its
configs), with -b (report a boot now: the controller takes a powering-up node
as resumed only once its BootTime moves, and this machine does not reboot),
in the foreground (-D) of a new session: the pid we start is the
slurmd's, recorded as DIR/pids/NAME.pid, and stop signals exactly that pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

SCONTROL = "/usr/bin/scontrol"
SLURMD = "/usr/sbin/slurmd"


def harness_dir(path: str) -> str:
    return os.path.dirname(path) if path.endswith(".conf") else path


def layout(dirpath: str) -> dict:
    """nodes.json: the controller's address and, per cloud node, its loopback address and port."""
    with open(os.path.join(dirpath, "nodes.json")) as handle:
        return json.load(handle)


def slurm_env(dirpath: str) -> dict:
    return {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C",
            "SLURM_CONF": os.path.join(dirpath, "slurm.conf")}


def hostnames(dirpath: str, hostlist: str) -> list[str]:
    """SLURM's own expansion of a hostlist expression."""
    out = subprocess.run([SCONTROL, "show", "hostnames", hostlist], env=slurm_env(dirpath),
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def pidfile(dirpath: str, name: str) -> str:
    return os.path.join(dirpath, "pids", f"{name}.pid")


def _alive(pid: int, name: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return b"slurmd" in os.path.basename(argv[0]) and name.encode() in argv


def running_pid(dirpath: str, name: str) -> int | None:
    """The pid of NAME's slurmd that we started, if it still runs."""
    try:
        pid = int(open(pidfile(dirpath, name)).read().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid, name) else None


def boot(dirpath: str, name: str, set_addr: bool = False) -> int:
    """Start NAME's slurmd (idempotent); with ``set_addr``, first tell the controller its address,
    as a ResumeProgram does once the cloud gives it one. Returns the slurmd's pid."""
    dirpath = harness_dir(dirpath)
    pid = running_pid(dirpath, name)
    if pid:
        return pid
    lay = layout(dirpath)
    node = lay["nodes"][name]
    if set_addr:
        subprocess.run([SCONTROL, "update", f"NodeName={name}", f"NodeAddr={node['addr']}",
                        f"NodeHostname={name}"], env=slurm_env(dirpath), check=True, capture_output=True)
    os.makedirs(os.path.join(dirpath, "pids"), exist_ok=True)
    os.makedirs(os.path.join(dirpath, "spool", name), exist_ok=True)
    # unshare and sh exec in place, so the pid Popen sees is slurmd's.
    inner = (f"hostname {name} && mkdir -p /run/slurm && mount -t tmpfs tmpfs /run/slurm && "
             f"exec {SLURMD} -D -b -N {name} --conf-server {lay['conf_server']}")
    log = open(os.path.join(dirpath, "log", f"slurmd-{name}.out"), "ab")
    proc = subprocess.Popen(["unshare", "--uts", "--mount", "--", "sh", "-c", inner], env=slurm_env(dirpath),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    with open(pidfile(dirpath, name), "w") as handle:
        handle.write(f"{proc.pid}\n")
    return proc.pid


def stop(dirpath: str, name: str, timeout: float = 15.0) -> bool:
    """Stop NAME's slurmd that we started (SIGTERM, then SIGKILL). False if none was running."""
    dirpath = harness_dir(dirpath)
    pid = running_pid(dirpath, name)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid, name) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _alive(pid, name):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)
    os.unlink(pidfile(dirpath, name))
    return True


def _reap(pid: int) -> None:
    """Collect the zombie when the slurmd is our own child (booted in this process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("boot", "stop"):
        print("usage: nodes.py boot|stop DIR HOSTLIST [--set-addr]", file=sys.stderr)
        return 2
    action, dirpath, hostlist = argv[0], harness_dir(argv[1]), argv[2]
    for name in hostnames(dirpath, hostlist):
        if action == "boot":
            boot(dirpath, name, set_addr="--set-addr" in argv[3:])
        else:
            stop(dirpath, name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
