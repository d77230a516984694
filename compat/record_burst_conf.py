"""Record how a real slurmctld 22.05 reads the slurm.conf and gres.conf lines of ``flow burst config``.

slurmctld has no check-only mode, so a private one runs in the foreground on
its own port and state directory (the reference cluster is left alone) with a
small cluster of one node of its own plus the burst lines, is asked with
scontrol, and is stopped. Records compat/golden/burst_conf.json; the tests
render the same lines and compare.

    python3 compat/record_burst_conf.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from recorder import clean_env  # noqa: E402
from sflow.burst.config import PartitionSpec, Programs, Timing, gres_conf, resolve, slurm_conf  # noqa: E402
from sflow.mithril.catalog import Catalog, InstanceType, Market  # noqa: E402

OUT = os.path.join(HERE, "golden", "burst_conf.json")
CATALOG = Catalog(
    (InstanceType("it_h100", "8xh100", 8, "h100", 224, 1800), InstanceType("it_a100", "1xa100", 1, "a100", 16, 120)),
    (Market("it_h100", "us-central1-a", capacity=32, spot_price_cents=1600, minimum_price_cents=800),
     Market("it_a100", "us-central1-a", capacity=4, spot_price_cents=100, minimum_price_cents=60)))
SPECS = [PartitionSpec("gpu", "8xh100", 4, limit_price="$2.40/gpu-hr"), PartitionSpec("small", "1xa100", 1)]
PROGRAMS = Programs("/bin/true", "/bin/true", "/bin/true")  # never run: no job asks for the nodes
PORT = 16817


def rendered() -> tuple[str, str]:
    parts, _ = resolve(SPECS, CATALOG)
    return slurm_conf(parts, Timing(), PROGRAMS), gres_conf(parts)


def _base(state: str) -> str:
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    return (f"ClusterName=burstcheck\nSlurmctldHost={host}(127.0.0.1)\nSlurmUser=root\n"
            f"SlurmctldPort={PORT}\nSlurmdPort={PORT + 1}\nAuthType=auth/munge\nStateSaveLocation={state}\n"
            f"SlurmctldPidFile={state}/slurmctld.pid\nSlurmctldLogFile={state}/slurmctld.log\n"
            "SlurmctldDebug=debug\nDebugFlags=Power\nMailProg=/bin/true\nProctrackType=proctrack/linuxproc\n"
            "TaskPlugin=task/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            "AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\n"
            f"NodeName=own1 NodeAddr=127.0.0.1 Port={PORT + 2} CPUs=2 RealMemory=1000\n"
            "PartitionName=debug Nodes=own1 Default=YES\n")


def _pairs(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S*)", text))


def record() -> dict:
    conf_text, gres_text = rendered()
    with tempfile.TemporaryDirectory() as state:
        conf = os.path.join(state, "slurm.conf")
        with open(conf, "w") as handle:
            handle.write(_base(state) + conf_text)
        with open(os.path.join(state, "gres.conf"), "w") as handle:
            handle.write(gres_text)
        env = clean_env({"SLURM_CONF": conf})
        log = open(os.path.join(state, "out.txt"), "w+")
        ctld = subprocess.Popen(["/usr/sbin/slurmctld", "-D", "-c", "-f", conf], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 60
            while "Power save mode" not in open(log.name).read():
                if time.monotonic() > deadline or ctld.poll() is not None:
                    raise SystemExit(f"slurmctld never started:\n{open(log.name).read()}")
                time.sleep(0.5)

            def show(*what: str) -> str:
                return subprocess.run(["/usr/bin/scontrol", "show", *what], capture_output=True, text=True,
                                      env=env).stdout
            said = open(log.name).read()
            config = {k: v for k, v in re.findall(r"^(\w+)\s+= (.*)$", show("config"), re.M)
                      if k.startswith(("Resume", "Suspend", "TreeWidth", "SlurmctldParameters", "GresTypes",
                                       "PrivateData"))}
            return {
                "slurm_conf": conf_text, "gres_conf": gres_text,
                "power_save": re.search(r"Power save mode: (\d+) nodes", said).group(0),
                "parse_errors": [line for line in said.splitlines() if "Parsing error" in line or "fatal" in line],
                "nodes": {name: _pairs(show("node", name)) for name in ("mithril-gpu-4", "mithril-small-1", "own1")},
                "partitions": {name: _pairs(show("partition", name)) for name in ("gpu", "small", "debug")},
                "config": config,
            }
        finally:
            ctld.terminate()
            ctld.wait(timeout=30)


def main() -> None:
    result = record()
    with open(OUT, "w") as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
        handle.write("\n")
    print(f"{OUT}: {result['power_save']}, {len(result['parse_errors'])} parse errors", file=sys.stderr)


if __name__ == "__main__":
    main()
