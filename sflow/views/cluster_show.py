"""``scontrol show node|partition|config|hostnames|hostlist``, in SLURM 22.05's formats.

Pure renderers: the cluster (``sflow.conf.Cluster``) and each node's runtime
state (``NodeUsage``) in, text out. Times are arguments so tests can fix
them; ``machine_facts`` reads this machine for callers that show it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from sflow.conf import config_rows
from sflow.slurm.display import format_memory_mb
from sflow.slurm.values import InvalidValue, compress_hostlist, expand_hostlist, format_timelimit_scontrol
from sflow.users import name_of, uid_of

SLURM_VERSION = "22.05.8"
# A node's state as sflow tracks it; DRAINED/DRAINING are drained nodes without/with jobs.
NODE_STATES = ("IDLE", "MIXED", "ALLOCATED", "DOWN", "DRAINED", "DRAINING")


@dataclass
class NodeUsage:
    """What a node is doing now: its jobs' allocations, its state, and what its OS reports."""

    alloc_cpus: int = 0
    alloc_mem_mb: int = 0
    alloc_gpus: int = 0
    state: str = "IDLE"  # one of NODE_STATES
    reason: str | None = None  # why it is down or drained
    reason_user: str | None = None  # who set a reason (SLURM keeps it after a resume)
    reason_uid: int | None = None
    reason_time: float | None = None
    cpu_load: float | None = None  # None: not known (N/A)
    free_mem_mb: int | None = None
    arch: str | None = None
    os: str | None = None  # "Linux 6.1.0 #1 SMP ..." (sysname release version)
    boot_time: float | None = None
    slurmd_start_time: float | None = None
    last_busy_time: float | None = None
    version: str = SLURM_VERSION

    @classmethod
    def from_allocation(cls, node, alloc_cpus: int = 0, alloc_mem_mb: int = 0, alloc_gpus: int = 0, *,
                        drain: bool = False, down: bool = False, **facts) -> "NodeUsage":
        """The state SLURM would show for these allocations: idle, mixed or allocated (by CPUs)."""
        if down:
            state = "DOWN"
        elif drain:
            state = "DRAINING" if alloc_cpus > 0 else "DRAINED"
        elif alloc_cpus <= 0:
            state = "IDLE"
        else:
            state = "ALLOCATED" if alloc_cpus >= node.cpus else "MIXED"
        return cls(alloc_cpus, alloc_mem_mb, alloc_gpus, state, **facts)


IDLE_NODE = NodeUsage()


def base_state(node, use: NodeUsage) -> str:
    """IDLE, MIXED, ALLOCATED or DOWN: the state without the drain flag."""
    if use.state in ("IDLE", "MIXED", "ALLOCATED", "DOWN"):
        return use.state
    if use.alloc_cpus <= 0:
        return "IDLE"
    return "ALLOCATED" if use.alloc_cpus >= node.cpus else "MIXED"


def is_drained(use: NodeUsage) -> bool:
    return use.state in ("DRAINED", "DRAINING")


def slurm_state(node, use: NodeUsage) -> str:
    """The state as scontrol shows it: ``IDLE``, ``MIXED+DRAIN``..."""
    return base_state(node, use) + ("+DRAIN" if is_drained(use) else "")


def node_states(allocated, cluster) -> dict:
    """Each configured node's usage as SLURM would report it, from the running jobs' ``allocated`` nodes."""
    held: dict[str, list[int]] = {}
    for node in allocated:
        use = held.setdefault(node.name, [0, 0, 0])
        use[0] += node.cpus
        use[1] += node.mem_mb
        use[2] += len(node.gpu_indices)
    facts = machine_facts()  # every virtual node is this machine
    return {node.name: NodeUsage.from_allocation(node, *held.get(node.name, (0, 0, 0)), **facts)
            for node in cluster.nodes}


def machine_facts() -> dict:
    """This machine's arch, OS, load, free memory and boot time, as NodeUsage fields."""
    uname = os.uname()
    facts = {"arch": uname.machine, "os": f"{uname.sysname} {uname.release} {uname.version}"}
    try:
        facts["cpu_load"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemFree:"):
                    facts["free_mem_mb"] = int(line.split()[1]) // 1024
        with open("/proc/uptime") as handle:
            facts["boot_time"] = int(time.time() - float(handle.read().split()[0]))
    except (OSError, ValueError, IndexError):
        pass
    return facts


# ------------------------------------------------------------------ small formats


def iso_time(epoch: float | None) -> str:
    """scontrol's timestamps: local ``2026-11-24T16:22:34``; None for unset."""
    if epoch is None:
        return "None"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


def memory(mb: int) -> str:
    return format_memory_mb(mb)


def _yes(flag: bool) -> str:
    return "YES" if flag else "NO"


def _hms(minutes: int | None, unset: str) -> str:
    return unset if minutes is None else format_timelimit_scontrol(minutes)


def visible_partitions(cluster, show_all: bool = False) -> list:
    """Partitions an ordinary user sees: hidden ones only with -a."""
    return [p for p in cluster.partitions if show_all or not p.hidden]


def gpu_gres(node, count: int) -> str:
    return f"gpu:{node.gpu_type}:{count}" if node.gpu_type else f"gpu:{count}"


# ------------------------------------------------------------------ scontrol show node


def _node_lines(cluster, node, use: NodeUsage, show_all: bool) -> list[str]:
    features = ",".join(node.features) or "(null)"
    parts = ",".join(p.name for p in visible_partitions(cluster, show_all) if node.name in p.nodes)
    port = f" Port={node.port}" if node.port else ""
    cfg = [f"cpu={node.cpus}", f"mem={memory(node.real_memory_mb)}", f"billing={node.cpus}"]
    if node.gpus:
        cfg.append(f"gres/gpu={node.gpus}")
    alloc = [f"cpu={use.alloc_cpus}"] if use.alloc_cpus else []
    if use.alloc_mem_mb:
        alloc.append(f"mem={memory(use.alloc_mem_mb)}")
    if use.alloc_gpus:
        alloc.append(f"gres/gpu={use.alloc_gpus}")
    lines = [
        f"NodeName={node.name} Arch={use.arch or '(null)'} CoresPerSocket={node.cores_per_socket or 1} ",
        f"CPUAlloc={use.alloc_cpus} CPUEfctv={node.cpus} CPUTot={node.cpus} "
        f"CPULoad={'N/A' if use.cpu_load is None else f'{use.cpu_load:.2f}'}",
        f"AvailableFeatures={features}",
        f"ActiveFeatures={features}",
        f"Gres={','.join(node.gres) or '(null)'}",
        f"NodeAddr={node.addr or node.name} NodeHostName={node.hostname or node.name}{port} Version={use.version}",
        f"OS={use.os or '(null)'} ",
        f"RealMemory={node.real_memory_mb} AllocMem={use.alloc_mem_mb} "
        f"FreeMem={'N/A' if use.free_mem_mb is None else use.free_mem_mb} Sockets={node.sockets} Boards={node.boards}",
        f"State={slurm_state(node, use)} ThreadsPerCore={node.threads_per_core} TmpDisk={node.tmp_disk_mb} "
        f"Weight={node.weight} Owner=N/A MCS_label=N/A",
    ]
    if parts:
        lines.append(f"Partitions={parts} ")
    lines += [
        f"BootTime={iso_time(use.boot_time)} SlurmdStartTime={iso_time(use.slurmd_start_time)}",
        f"LastBusyTime={iso_time(use.last_busy_time)}",
        f"CfgTRES={','.join(cfg)}",
        f"AllocTRES={','.join(alloc)}",
        "CapWatts=n/a",
        "CurrentWatts=0 AveWatts=0",
        "ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s",
    ]
    if use.reason:
        lines.append(f"Reason={use.reason} [{use.reason_user or 'root'}@{iso_time(use.reason_time)}]")
    return lines


def _blocks(line_sets: list[list[str]], one_liner: bool) -> str:
    if one_liner:
        return "".join(" ".join(lines) + "\n" for lines in line_sets)
    return "".join(lines[0] + "\n" + "".join(f"   {line}\n" for line in lines[1:]) + "\n" for lines in line_sets)


def show_node(cluster, node_states: dict, name: str | None = None, *, one_liner: bool = False,
              show_all: bool = False) -> str:
    """``scontrol show node [NAME]``; NAME may be a hostlist. Empty when no node matches."""
    wanted = None
    if name is not None:
        try:
            wanted = set(expand_hostlist(name))
        except InvalidValue:
            wanted = {name}
    chosen = [n for n in cluster.nodes if wanted is None or n.name in wanted]
    return _blocks([_node_lines(cluster, n, node_states.get(n.name, IDLE_NODE), show_all) for n in chosen],
                   one_liner)


# ------------------------------------------------------------------ scontrol show partition


def _partition_lines(cluster, part) -> list[str]:
    by_name = {n.name: n for n in cluster.nodes}
    members = [by_name[n] for n in part.nodes if n in by_name]
    cpus = sum(n.cpus for n in members)
    mem = sum(n.real_memory_mb for n in members)
    gpus = sum(n.gpus for n in members)
    tres = f"cpu={cpus},mem={memory(mem)},node={len(members)},billing={cpus}" + (f",gres/gpu={gpus}" if gpus else "")
    preempt = (part.preempt_mode or cluster.config_value("PreemptMode", "OFF")).upper()
    return [
        f"PartitionName={part.name}",
        f"AllowGroups={part.allow_groups} AllowAccounts={part.allow_accounts} AllowQos={part.allow_qos}",
        f"AllocNodes={part.alloc_nodes} Default={_yes(part.default)} QoS={part.qos or 'N/A'}",
        f"DefaultTime={_hms(part.default_time, 'NONE')} DisableRootJobs={_yes(part.disable_root_jobs)} "
        f"ExclusiveUser={_yes(part.exclusive_user)} GraceTime={part.grace_time} Hidden={_yes(part.hidden)}",
        f"MaxNodes={part.max_nodes if part.max_nodes is not None else 'UNLIMITED'} "
        f"MaxTime={_hms(part.max_time, 'UNLIMITED')} MinNodes={part.min_nodes} LLN={_yes(part.lln)} "
        f"MaxCPUsPerNode={part.max_cpus_per_node if part.max_cpus_per_node is not None else 'UNLIMITED'}",
        f"Nodes={compress_hostlist([n.name for n in members]) or '(null)'}",
        f"PriorityJobFactor={part.priority_job_factor} PriorityTier={part.priority_tier} "
        f"RootOnly={_yes(part.root_only)} ReqResv={_yes(part.req_resv)} OverSubscribe={part.oversubscribe}",
        f"OverTimeLimit={'NONE' if part.over_time_limit is None else part.over_time_limit} PreemptMode={preempt}",
        f"State={part.state} TotalCPUs={cpus} TotalNodes={len(members)} "
        f"SelectTypeParameters={part.select_type_parameters or 'NONE'}",
        f"JobDefaults={part.job_defaults or '(null)'}",
        f"{_mem_limit(cluster, part, 'Def')} {_mem_limit(cluster, part, 'Max')}",
        f"TRES={tres}",
    ]


def _mem_limit(cluster, part, kind: str) -> str:
    """DefMemPerNode=UNLIMITED, DefMemPerCPU=100...: the partition's, else the cluster's."""
    per_cpu = getattr(part, f"{kind.lower()}_mem_per_cpu")
    per_node = getattr(part, f"{kind.lower()}_mem_per_node")
    if per_cpu is not None:
        return f"{kind}MemPerCPU={per_cpu}"
    if per_node is not None:
        return f"{kind}MemPerNode={per_node}"
    for unit in ("CPU", "Node"):
        value = cluster.config_value(f"{kind}MemPer{unit}")
        if value is not None and value.upper() != "UNLIMITED":
            return f"{kind}MemPer{unit}={value}"
    return f"{kind}MemPerNode=UNLIMITED"


def show_partition(cluster, node_states: dict | None = None, name: str | None = None, *,
                   one_liner: bool = False, show_all: bool = False) -> str:
    """``scontrol show partition [NAME]``. Empty when no (visible) partition matches."""
    chosen = [p for p in visible_partitions(cluster, show_all) if name is None or p.name == name]
    return _blocks([_partition_lines(cluster, p) for p in chosen], one_liner)


# ------------------------------------------------------------------ scontrol show config

_TRES_ALWAYS = "cpu,mem,energy,node,billing,fs/disk,vmem,pages"
_UNITS = ("sec", "min", "usec", "percent", "nodes/min")


def _config_rows() -> list[dict]:
    return config_rows()


def _user(name: str) -> str:
    if name.isdecimal():
        return f"{name_of(int(name)) or name}({name})"
    uid = uid_of(name)
    return f"{name}({4294967294 if uid is None else uid})"


def _config_value(row: dict, given: str | None, cluster, derived: dict) -> tuple[str, str]:
    """(key as printed, value as printed) for one row of the table."""
    name, show = row["name"], row.get("show")
    if show == "derived":
        return name, derived[name]
    value = row["default"] if given is None else given
    if show in _UNITS:
        return name, value if value in ("(null)", "INFINITE", "UNLIMITED") else f"{value} {show}"
    if show == "yesno":
        return name, "Yes" if value.strip().upper() in ("YES", "Y", "1", "TRUE") else "No"
    if show == "upper":
        return name, value.upper()
    if show == "lower":
        return name, value.lower()
    if show == "user":
        return name, _user(value)
    if show == "cred":
        return name, value.replace("crypto/", "cred/")
    if show == "tres":
        items = _TRES_ALWAYS.split(",")
        for item in (given or "").lower().split(","):
            if item and item not in items:
                items.append(item)
        return name, ",".join(items)
    if show == "suspend":
        if value.strip().upper() in ("INFINITE", "NONE", "-1"):
            return name, "INFINITE"
        return name, f"{value} sec"
    if show == "hms":
        if value.strip().lstrip("-").isdecimal():
            seconds = max(0, int(value))
            return name, f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return name, value
    return name, value


def show_config(cluster, *, now: float | None = None, boot_time: float | None = None,
                next_job_id: int | None = None, controller_up: bool = True) -> str:
    """``scontrol show config``: SLURM's keys in its order, the cluster's values, SLURM's defaults."""
    now = time.time() if now is None else now
    rows = _config_rows()
    lower = {k.lower(): k for k in cluster.config}
    used: set[str] = set()
    controllers = list(cluster.controllers) or [os.uname().nodename.split(".")[0]]
    max_jobs = int(cluster.config_value("MaxJobCount", "10000") or 10000)
    derived = {
        "BOOT_TIME": iso_time(boot_time if boot_time is not None else now),
        "ClusterName": cluster.name,
        "MaxDBDMsgs": str(max(10000, max_jobs * 2 + len(cluster.nodes) * 4)),
        "MaxNodeCount": str(len(cluster.nodes)),
        "NEXT_JOB_ID": str(next_job_id if next_job_id is not None else cluster.first_job_id),
        "SLURM_CONF": cluster.source or "(null)",
        "SlurmctldHost[0]": controllers[0],
    }
    lines = [f"Configuration data as of {iso_time(now)}"]

    def emit(key: str, value: str) -> None:
        lines.append(f"{key:<23} = {value}")

    for row in rows:
        names = [row["name"], *row.get("alias", ())]
        found = [lower[n.lower()] for n in names if n.lower() in lower]
        used.update(found)
        given = cluster.config[found[0]] if found else None
        if row["name"] == "SlurmctldHost[0]":
            for index, host in enumerate(controllers):
                emit(f"SlurmctldHost[{index}]", host)
            continue
        key, value = _config_value(row, given, cluster, derived)
        if row.get("show") == "mem_per" and found:
            # DefMemPerCPU given: printed in DefMemPerNode's place, under its own name
            key = next((a for a in names if a.lower() == found[0].lower()), key)
        emit(key, value)
    for key, value in cluster.config.items():  # keys SLURM itself would not know, as given
        if key not in used and key.lower() not in {r["name"].lower() for r in rows} \
                and key.lower() not in ("slurmctldhost", "controlmachine"):
            emit(key, value)
    lines.append("")
    for index, host in enumerate(controllers):
        role = "primary" if index == 0 else "backup"
        lines.append(f"Slurmctld({role}) at {host.split('(')[0]} is {'UP' if controller_up else 'DOWN'}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ hostnames and hostlists


def _range_error(text: str) -> str:
    """scontrol's first line for a bracket range it cannot read (``node[3-1]``), else nothing."""
    for body in re.findall(r"\[([^\[\]]*)\]", text):
        for item in body.split(","):
            low, _, high = item.partition("-")
            if not (low.isdecimal() and (not high or high.isdecimal())) or (high and int(high) < int(low)):
                return f"scontrol: error: _parse_single_range: Invalid range: `{item}'\n"
    return ""


def _expand(text: str) -> list[str] | None:
    try:
        return expand_hostlist(text)
    except InvalidValue:
        return None


def show_hostnames(text: str) -> tuple[str, str, int]:
    """``scontrol show hostnames TEXT``: (stdout, stderr, exit code). A bad list still exits 0, as in SLURM."""
    if not text:
        return "", "", 0
    names = _expand(text)
    if names is None:
        return "", f"{_range_error(text)}Invalid hostlist: {text}\n", 0
    return "".join(f"{n}\n" for n in names), "", 0


def _natural(name: str) -> tuple:
    match = re.match(r"^(.*?)(\d*)$", name)
    return (match.group(1), int(match.group(2)) if match.group(2) else -1, name)


def show_hostlist(text: str, sort: bool = False) -> tuple[str, str, int]:
    """``scontrol show hostlist[sorted] TEXT``: TEXT is a list, or a file (absolute path) of names."""
    if text.startswith("/"):
        try:
            with open(text) as handle:
                text = ",".join(w for w in handle.read().replace("\n", ",").split(",") if w.strip())
        except OSError:
            return f"Can not open {text}\n", "", 1
    if not text:
        return "\n", "", 0
    names = _expand(text)
    if names is None:
        return "", f"{_range_error(text)}Invalid hostlist: {text}\n", 1
    if sort:
        names = sorted(names, key=_natural)
    return compress_hostlist(names) + "\n", "", 0


# ------------------------------------------------------------------ the show command


ENTITIES = ("config", "hostlist", "hostlistsorted", "hostnames", "node", "partition")


def _entity(word: str) -> str | None:
    """show's entity, as scontrol matches it: a case-insensitive prefix (``part``, ``conf``, ``nodes``)."""
    low = word.lower()
    if low in ("nodes", "partitions", "configuration"):
        low = low.rstrip("s") if low != "configuration" else "config"
    if low in ENTITIES:
        return low
    matches = [e for e in ENTITIES if e.startswith(low)] if len(low) >= 3 else []
    return matches[0] if len(matches) == 1 else None


def scontrol_show(args: list[str], cluster, node_states: dict, *, one_liner: bool = False,
                  show_all: bool = False, env=os.environ, now: float | None = None,
                  boot_time: float | None = None, next_job_id: int | None = None,
                  controller_up: bool = True) -> tuple[str, str, int] | None:
    """``scontrol show ENTITY [ID]`` for the cluster's entities: (stdout, stderr, exit code).

    None for an entity this module does not show (job, step...), for the caller.
    """
    if not args:
        return "", "too few arguments for keyword:show\n", 1
    entity = _entity(args[0])
    if entity is None:
        if args[0].lower() in ("job", "jobs", "jobid", "step", "steps"):
            return None
        return "", f"invalid entity:{args[0]} for keyword:show \n", 1
    if len(args) > 2:
        return "", "too many arguments for keyword:show\n", 1
    target = args[1] if len(args) > 1 else None
    if entity == "hostnames":
        if target is None:  # 22.05 falls back on SLURM_NODELIST (not SLURM_JOB_NODELIST, as its man page says)
            target = env.get("SLURM_NODELIST")
            if not target:
                return "", "scontrol: error: host list is empty\n", 0
        return show_hostnames(target)
    if entity in ("hostlist", "hostlistsorted"):
        if target is None:
            return None  # SLURM prints its usage here; the caller has it
        return show_hostlist(target, sort=entity == "hostlistsorted")
    if entity == "config":
        return show_config(cluster, now=now, boot_time=boot_time, next_job_id=next_job_id,
                           controller_up=controller_up), "", 0
    if entity == "node":
        text = show_node(cluster, node_states, target, one_liner=one_liner, show_all=show_all)
        return (text, "", 0) if text else (f"Node {target} not found\n", "", 1)
    text = show_partition(cluster, node_states, target, one_liner=one_liner, show_all=show_all)
    return (text, "", 0) if text else (f"Partition {target} not found\n", "", 1)
