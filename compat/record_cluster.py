#!/usr/bin/env python3
"""Record what real SLURM 22.05's sinfo and scontrol show print for compat/cases/cluster.toml.

    sudo python3 compat/record_cluster.py [--only SCENARIO ...]

Needs the running reference SLURM (../shared/slurm/start-slurm.sh). Each
scenario of the cases file puts the cluster in a state (jobs, drained or down
nodes, extra partitions), records every command of its groups, then undoes
everything. It writes compat/golden/cluster/<scenario>.json with:

  conf     the slurm.conf text that describes the same cluster to sflow
  nodes    per node, what the cluster's runtime state was (allocations, state,
           reason, load, free memory, OS, boot times): the renderers' input
  cases    argv, env, stdout, stderr, exit_code, and `now` (the second the
           command ran, local time; sinfo -l and show config print it); run
           as user nobody, as sflow's users are not root

and compat/golden/cluster/slurm.conf, the reference cluster's own file.
Times are kept as local ISO strings (the tests turn them back into epochs).
The state is snapshotted before and after the commands; if anything moved in
between (a load average, a free-memory sample), the scenario is recorded again.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time

from recorder import ensure_slurm, load_toml, only_arg

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases", "cluster.toml")
OUT = os.path.join(HERE, "golden", "cluster")
SLURM_CONF = "/etc/slurm/slurm.conf"
BIN = {"sinfo": "/usr/bin/sinfo", "scontrol": "/usr/bin/scontrol", "sbatch": "/usr/bin/sbatch",
       "squeue": "/usr/bin/squeue", "scancel": "/usr/bin/scancel"}
NODE_KEYS = (
    "NodeName Arch CoresPerSocket CPUAlloc CPUEfctv CPUTot CPULoad AvailableFeatures ActiveFeatures "
    "Gres GresDrain GresUsed NodeAddr NodeHostName Port Version OS RealMemory AllocMem FreeMem Sockets "
    "Boards State ThreadsPerCore TmpDisk Weight Owner MCS_label Partitions BootTime SlurmdStartTime "
    "LastBusyTime ResumeAfterTime CfgTRES AllocTRES CapWatts CurrentWatts AveWatts ExtSensorsJoules "
    "ExtSensorsWatts ExtSensorsTemp Reason Comment Extra NextState"
).split()
_BOUNDARY = re.compile(r"(?:^| )(" + "|".join(sorted(NODE_KEYS, key=len, reverse=True)) + r")=")
STATES = {"IDLE": "IDLE", "MIXED": "MIXED", "ALLOCATED": "ALLOCATED", "DOWN": "DOWN",
          "IDLE+DRAIN": "DRAINED", "DOWN+DRAIN": "DRAINED", "MIXED+DRAIN": "DRAINING",
          "ALLOCATED+DRAIN": "DRAINING"}
USER = pwd.getpwnam("nobody")
# What moves by itself while a scenario is recorded; a change means record again.
VOLATILE = ("CPULoad", "FreeMem", "LastBusyTime", "State", "CPUAlloc")


def run(argv: list[str], env: dict | None = None, check: bool = False,
        as_user: bool = False) -> subprocess.CompletedProcess:
    """argv[0] is the command's name (as a user types it); the real binary is run.

    ``as_user`` runs it as an unprivileged user, as sflow's users are (root
    sees hidden partitions, for one).
    """
    who = {"user": USER.pw_uid, "group": USER.pw_gid, "extra_groups": []} if as_user else {}
    return subprocess.run(argv, executable=BIN[argv[0]], capture_output=True, text=True, env=env,
                          cwd="/tmp", check=check, timeout=60, **who)


def clean_env(extra: dict | None = None, user=None) -> dict:
    user = user or pwd.getpwuid(os.getuid())
    env = {"PATH": "/usr/bin:/bin", "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name,
           "LANG": "C", "TZ": os.environ.get("TZ", "UTC")}
    env.update(extra or {})
    return env


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


def parse_node_line(line: str) -> dict[str, str]:
    marks = [(m.start(1), m.end(), m.group(1)) for m in _BOUNDARY.finditer(line)]
    out = {}
    for i, (_, start, key) in enumerate(marks):
        end = marks[i + 1][0] - 1 if i + 1 < len(marks) else len(line)
        out[key] = line[start:end].strip()
    return out


def snapshot() -> dict[str, dict[str, str]]:
    out = run(["scontrol", "-a", "-o", "show", "node"], env=clean_env(), check=True).stdout
    nodes = {fields["NodeName"]: fields for fields in map(parse_node_line, out.splitlines()) if fields}
    # who set a node's reason outlives the reason (resume keeps it): only sinfo shows it
    out = run(["sinfo", "-a", "-N", "-h", "-o", "%N|%U"], env=clean_env(), check=True).stdout
    for line in out.splitlines():
        name, user = line.split("|")
        nodes[name]["ReasonUser"] = user
    return nodes


def node_state(raw: dict[str, str]) -> dict:
    """The runtime state of one node, as sflow's renderers take it (NodeUsage)."""
    if raw["State"] not in STATES:
        raise SystemExit(f"node {raw['NodeName']} is in state {raw['State']}: wait until it settles")
    gpus = re.search(r"gres/gpu=(\d+)", raw.get("AllocTRES", ""))
    reason, stamp = raw.get("Reason"), None
    if reason:
        match = re.fullmatch(r"(.*) \[(.+)@(\S+)\]", reason)
        if match:
            reason, _, stamp = match.groups()
    user, uid = None, None
    match = re.fullmatch(r"(.+)\((\d+)\)", raw.get("ReasonUser", ""))
    if match:
        user, uid = match.group(1), int(match.group(2))
    return {
        "state": STATES[raw["State"]], "slurm_state": raw["State"],
        "alloc_cpus": int(raw["CPUAlloc"]), "alloc_mem_mb": int(raw["AllocMem"]),
        "alloc_gpus": int(gpus.group(1)) if gpus else 0,
        "reason": reason, "reason_user": user, "reason_uid": uid, "reason_time": stamp,
        "cpu_load": raw["CPULoad"], "free_mem_mb": int(raw["FreeMem"]),
        "arch": raw["Arch"], "os": raw["OS"], "version": raw["Version"],
        "boot_time": raw["BootTime"], "slurmd_start_time": raw["SlurmdStartTime"],
        "last_busy_time": raw["LastBusyTime"],
    }


def wait_until(predicate, what: str, limit: float = 120) -> None:
    deadline = time.time() + limit
    while not predicate():
        if time.time() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.5)


def queue_empty() -> bool:
    return run(["squeue", "-h"], env=clean_env()).stdout.strip() == ""


def nodes_idle() -> bool:
    states = run(["sinfo", "-h", "-N", "-o", "%N %T"], env=clean_env()).stdout.split()
    return all(s == "idle" for s in states[1::2])


def submit(args: list[str]) -> str:
    done = run(["sbatch", "--parsable", "-o", "/dev/null", *args, "--wrap", "sleep 600"], env=clean_env(),
               check=True)
    return done.stdout.strip().split(";")[0]


def running(job_ids: list[str]) -> bool:
    out = run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], env=clean_env()).stdout.split()
    return len(out) == 2 * len(job_ids) and all(s == "RUNNING" for s in out[1::2])


def scenario_conf(base: str, scenario: dict) -> str:
    lines = base.rstrip("\n").split("\n")
    for node, extra in scenario.get("nodes", {}).items():
        lines = [f"{line} {extra}" if line.startswith(f"NodeName={node} ") else line for line in lines]
    lines += scenario.get("partitions", [])
    return "\n".join(lines) + "\n"


def scontrol_node_settings(text: str) -> list[str]:
    """slurm.conf's node keys as scontrol update spells them."""
    out = []
    for item in text.split():
        key, _, value = item.partition("=")
        if key.lower() in ("features", "feature"):
            out += [f"AvailableFeatures={value}", f"ActiveFeatures={value}"]
        else:
            out.append(item)
    return out


def set_up(scenario: dict) -> list[str]:
    wait_until(queue_empty, "an empty queue (other jobs are running)")
    wait_until(nodes_idle, "all nodes idle")
    for line in scenario.get("partitions", []):
        # scontrol create defaults MinNodes to 1, slurm.conf to 0: give slurm.conf's
        extra = [] if "minnodes=" in line.lower() else ["MinNodes=0"]
        run(["scontrol", "create", *line.split(), *extra], env=clean_env(), check=True)
    for node, settings in scenario.get("nodes", {}).items():
        run(["scontrol", "update", f"NodeName={node}", *scontrol_node_settings(settings)], env=clean_env(),
            check=True)
    jobs = [submit(args) for args in scenario.get("jobs", [])]
    if jobs:
        wait_until(lambda: running(jobs), "the scenario's jobs to run", 60)
    for args in scenario.get("update", []):
        run(["scontrol", "update", *args], env=clean_env(), check=True)
    time.sleep(0.5)
    return jobs


def tear_down(scenario: dict, jobs: list[str]) -> None:
    if jobs:
        run(["scancel", *jobs], env=clean_env())
    for args in scenario.get("update", []):
        node = next(a for a in args if a.lower().startswith("nodename="))
        run(["scontrol", "update", node, "State=RESUME"], env=clean_env())
    for line in scenario.get("partitions", []):
        run(["scontrol", "delete", line.split()[0]], env=clean_env())
    if scenario.get("nodes"):
        # features cannot be set back to unset by update; reconfigure re-reads slurm.conf
        run(["scontrol", "reconfigure"], env=clean_env())
    wait_until(queue_empty, "the scenario's jobs to end")
    wait_until(nodes_idle, "the nodes to be idle again")


def run_case(argv: list[str], env_extra: dict) -> dict:
    for _ in range(10):
        start = time.time()
        done = run(argv, env=clean_env(env_extra, USER), as_user=True)
        if int(time.time()) == int(start):  # the second it printed is the second we note
            break
    return {"argv": argv, "env": env_extra, "stdout": done.stdout, "stderr": done.stderr,
            "exit_code": done.returncode, "now": iso(start)}


def record_scenario(scenario: dict, groups: list[dict], base_conf: str) -> dict:
    commands = [(g.get("env", {}), argv) for g in groups if scenario["name"] in g["scenarios"]
                for argv in g["commands"]]
    jobs = set_up(scenario)
    try:
        for attempt in range(5):
            before = snapshot()
            cases = [run_case(argv, env) for env, argv in commands]
            after = snapshot()
            moved = [(n, k) for n in before for k in VOLATILE if before[n].get(k) != after[n].get(k)]
            if not moved:
                break
            print(f"  state moved during recording ({moved[:3]}), again", file=sys.stderr)
        else:
            raise SystemExit("the cluster state would not hold still")
    finally:
        tear_down(scenario, jobs)
    return {
        "scenario": scenario["name"],
        "conf": scenario_conf(base_conf, scenario),
        "nodes": {name: node_state(raw) for name, raw in before.items()},
        "cases": cases,
    }


def main() -> None:
    only = only_arg(__doc__)
    ensure_slurm()
    spec = load_toml(CASES)
    with open(SLURM_CONF) as handle:
        base_conf = handle.read()
    os.makedirs(OUT, exist_ok=True)
    shutil.copy(SLURM_CONF, os.path.join(OUT, "slurm.conf"))
    for scenario in spec["scenario"]:
        if only and scenario["name"] not in only:
            continue
        print(f"recording {scenario['name']}", file=sys.stderr)
        result = record_scenario(scenario, spec["group"], base_conf)
        with open(os.path.join(OUT, f"{scenario['name']}.json"), "w") as handle:
            json.dump(result, handle, indent=1)
            handle.write("\n")
        print(f"  {len(result['cases'])} commands", file=sys.stderr)


if __name__ == "__main__":
    main()
