"""``sinfo`` and ``scontrol show node|partition|config``: the cluster and what is in use."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sflow.records import INFINITE


@dataclass
class NodeUsage:
    alloc_cpus: int = 0
    alloc_mem_mb: int = 0
    alloc_gpus: int = 0

    def state(self, node) -> str:
        if self.alloc_cpus == 0:
            return "idle"
        return "alloc" if self.alloc_cpus >= node.cpus else "mix"


LONG_STATES = {"idle": "idle", "alloc": "allocated", "mix": "mixed"}


def _limit(minutes: int | None) -> str:
    from sflow.slurm.values import format_timelimit_squeue

    if minutes in (None, INFINITE):
        return "infinite"
    return format_timelimit_squeue(minutes)


def sinfo_main(argv: list[str], cluster, usage: dict[str, NodeUsage], now: float | None = None) -> tuple[str, str, int]:
    from sflow.slurm.getopt import getopt
    from sflow.slurm.values import compress_hostlist

    now = time.time() if now is None else now
    parsed = getopt("sinfo", argv)
    per_node = long = False
    header = True
    partitions: set[str] = set()
    for option, raw in parsed.options:
        if option.long == "Node":
            per_node = True
        elif option.long == "long":
            long = True
        elif option.long == "noheader":
            header = False
        elif option.long == "partition":
            partitions |= set(raw.split(","))
        elif option.long in ("help", "usage"):
            from sflow.slurm.help import render_help

            return render_help("sinfo") + "\n", "", 0
        elif option.long == "version":
            from sflow.slurm.help import VERSION_LINE

            return VERSION_LINE + "\n", "", 0
    lines = []
    if long and header:
        lines.append(time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now)))
    nodes = {n.name: n for n in cluster.nodes}
    if per_node:
        if header:
            lines.append("NODELIST   NODES PARTITION STATE " if not long else
                         "NODELIST   NODES PARTITION       STATE CPUS    S:C:T MEMORY TMP_DISK WEIGHT AVAIL_FE REASON              ")
        for part in cluster.partitions:
            if partitions and part.name not in partitions:
                continue
            label = part.name + ("*" if part.default else "")
            for name in part.nodes:
                state = usage.get(name, NodeUsage()).state(nodes[name])
                if long:
                    node = nodes[name]
                    lines.append(f"{name:<10} {1:>5} {label:>9} {LONG_STATES[state]:>11} {node.cpus:>4} "
                                 f"{f'{node.sockets}:{node.cpus // max(1, node.sockets)}:{node.threads_per_core}':>8} "
                                 f"{node.real_memory_mb:>6} {0:>8} {1:>6} {'(null)':>8} {'none':<20}")
                else:
                    lines.append(f"{name:<10} {1:>5} {label:>9} {state:<6}")
        return "\n".join(lines) + "\n", "", 0
    if header:
        lines.append("PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST" if not long else
                     "PARTITION AVAIL  TIMELIMIT   JOB_SIZE ROOT OVERSUBS     GROUPS  NODES       STATE NODELIST")
    for part in cluster.partitions:
        if partitions and part.name not in partitions:
            continue
        label = part.name + ("*" if part.default else "")
        groups: dict[str, list[str]] = {}
        for name in part.nodes:
            groups.setdefault(usage.get(name, NodeUsage()).state(nodes[name]), []).append(name)
        for state in ("mix", "alloc", "idle"):
            names = groups.get(state)
            if not names:
                continue
            avail = part.state.lower()
            if long:
                lines.append(f"{label:<9} {avail:>5} {_limit(part.max_time):>10} {'1-infinite':>10} {'no':>4} "
                             f"{'NO':>8} {'all':>10} {len(names):>6} {LONG_STATES[state]:>11} {compress_hostlist(names)}")
            else:
                lines.append(f"{label:<9} {avail:>5} {_limit(part.max_time):>10} {len(names):>6} {state:>6} "
                             f"{compress_hostlist(names)}")
    return "\n".join(lines) + "\n", "", 0


def show_node(cluster, usage: dict[str, NodeUsage], name: str | None = None, one_liner: bool = False) -> str:
    import platform

    blocks = []
    for node in cluster.nodes:
        if name and node.name != name:
            continue
        use = usage.get(node.name, NodeUsage())
        parts = ",".join(p.name for p in cluster.partitions if node.name in p.nodes)
        gres = f"gpu:{node.gpu_type + ':' if node.gpu_type else ''}{node.gpus}" if node.gpus else "(null)"
        lines = [
            f"NodeName={node.name} Arch={platform.machine()} CoresPerSocket={max(1, node.cpus // max(1, node.sockets))} ",
            f"CPUAlloc={use.alloc_cpus} CPUEfctv={node.cpus} CPUTot={node.cpus} CPULoad=0.00",
            "AvailableFeatures=" + (",".join(node.features) or "(null)"),
            "ActiveFeatures=" + (",".join(node.features) or "(null)"),
            f"Gres={gres}",
            f"NodeAddr={node.name} NodeHostName={node.name} Version=22.05.8",
            f"RealMemory={node.real_memory_mb} AllocMem={use.alloc_mem_mb} FreeMem=N/A Sockets={node.sockets} Boards=1",
            f"State={LONG_STATES[use.state(node)].upper()} ThreadsPerCore={node.threads_per_core} TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A",
            f"Partitions={parts} ",
            f"CfgTRES=cpu={node.cpus},mem={node.real_memory_mb}M,billing={node.cpus}" + (f",gres/gpu={node.gpus}" if node.gpus else ""),
            "AllocTRES=" + (f"cpu={use.alloc_cpus}" if use.alloc_cpus else ""),
        ]
        blocks.append(" ".join(lines) + "\n" if one_liner else lines[0] + "\n" + "".join(f"   {l}\n" for l in lines[1:]))
    if not blocks:
        return ""
    return "\n".join(blocks) + ("" if one_liner else "\n")


def show_partition(cluster, name: str | None = None, one_liner: bool = False) -> str:
    from sflow.slurm.values import compress_hostlist

    nodes = {n.name: n for n in cluster.nodes}
    blocks = []
    for part in cluster.partitions:
        if name and part.name != name:
            continue
        cpus = sum(nodes[n].cpus for n in part.nodes)
        mem = sum(nodes[n].real_memory_mb for n in part.nodes)
        gpus = sum(nodes[n].gpus for n in part.nodes)
        lines = [
            f"PartitionName={part.name}",
            "AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL",
            f"AllocNodes=ALL Default={'YES' if part.default else 'NO'} QoS=N/A",
            f"DefaultTime={_limit(part.default_time).upper() if part.default_time else 'NONE'} DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO",
            f"MaxNodes={part.max_nodes or 'UNLIMITED'} MaxTime={'UNLIMITED' if part.max_time in (None, INFINITE) else _limit(part.max_time)} MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED",
            f"Nodes={compress_hostlist(list(part.nodes))}",
            "PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO",
            "OverTimeLimit=NONE PreemptMode=OFF",
            f"State={part.state} TotalCPUs={cpus} TotalNodes={len(part.nodes)} SelectTypeParameters=NONE",
            "JobDefaults=(null)",
            "DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED",
            f"TRES=cpu={cpus},mem={mem}M,node={len(part.nodes)},billing={cpus}" + (f",gres/gpu={gpus}" if gpus else ""),
        ]
        blocks.append(" ".join(lines) + "\n" if one_liner else lines[0] + "\n" + "".join(f"   {l}\n" for l in lines[1:]))
    return "\n".join(blocks) + ("" if one_liner else "\n")


# scontrol show config: SLURM's defaults for the keys sflow acts on or shows.
CONFIG_DEFAULTS = {
    "AccountingStorageType": "accounting_storage/none", "ClusterName": "sflow", "FirstJobId": "1",
    "JobRequeue": "1", "KillWait": "30 sec", "MaxArraySize": "1001", "MaxJobCount": "10000",
    "MinJobAge": "300 sec", "ProctrackType": "proctrack/linuxproc", "SchedulerType": "sched/backfill",
    "SelectType": "select/cons_tres", "SlurmctldPort": "6817", "SlurmdPort": "6818",
}


def show_config(cluster, now: float | None = None) -> str:
    now = time.time() if now is None else now
    values = dict(CONFIG_DEFAULTS)
    for key, value in cluster.config.items():
        values[key] = f"{value} sec" if key in ("KillWait", "MinJobAge") else value
    values["ClusterName"] = cluster.name
    values["FirstJobId"] = str(cluster.first_job_id)
    values["KillWait"] = f"{cluster.kill_wait} sec"
    values["MinJobAge"] = f"{cluster.min_job_age} sec"
    values["MaxArraySize"] = str(cluster.max_array_size)
    values["SLURM_CONF"] = cluster.source or "(built-in: this machine)"
    values["SLURM_VERSION"] = "22.05.8"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
    lines = [f"Configuration data as of {stamp}"]
    lines += [f"{key:<23} = {values[key]}" for key in sorted(values, key=str.lower)]
    return "\n".join(lines) + "\n"
