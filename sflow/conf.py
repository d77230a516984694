"""The cluster description, read from slurm.conf syntax.

``$SFLOW_CONF``, else ``$SFLOW_HOME/slurm.conf``, else this machine as a
one-node cluster. An admin's own slurm.conf works: the keys sflow acts on are
read, the others kept and shown by ``scontrol show config``. sflow adds one
partition key, ``Backend=local|mithril``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace

from sflow.errors import SlurmError

INFINITE = 0xFFFFFFFE


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    real_memory_mb: int
    gpus: int = 0
    gpu_type: str | None = None
    features: tuple[str, ...] = ()
    sockets: int = 1
    cores_per_socket: int | None = None
    threads_per_core: int = 1


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: tuple[str, ...]
    default: bool = False
    max_time: int | None = None  # minutes; INFINITE or None: no limit
    default_time: int | None = None
    max_nodes: int | None = None
    state: str = "UP"
    backend: str = "local"


@dataclass(frozen=True)
class Cluster:
    name: str
    nodes: tuple[Node, ...]
    partitions: tuple[Partition, ...]
    config: dict[str, str] = field(default_factory=dict)
    first_job_id: int = 1
    kill_wait: int = 30
    min_job_age: int = 300
    max_array_size: int = 1001
    source: str | None = None

    def partition(self, name: str | None = None) -> Partition:
        for part in self.partitions:
            if (name is None and part.default) or part.name == name:
                return part
        if name is None and self.partitions:
            return self.partitions[0]
        raise SlurmError(
            f"invalid partition specified: {name}\n"
            "Batch job submission failed: Invalid partition name specified"
        )

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise SlurmError(f"Invalid node name specified: {name}")


def sflow_home(env=os.environ) -> str:
    home = env.get("SFLOW_HOME")
    if not home:
        state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        home = os.path.join(state, "sflow")
    os.makedirs(home, mode=0o700, exist_ok=True)
    return home


def _meminfo_mb() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 1024


def _gpu_count() -> int:
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def default_cluster() -> Cluster:
    """This machine as one node named after its short hostname, in partition ``debug``."""
    name = socket.gethostname().split(".")[0] or "localhost"
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    node = Node(name, cpus, _meminfo_mb(), _gpu_count())
    config = {"ClusterName": "sflow", "FirstJobId": "1"}
    return Cluster("sflow", (node,), (Partition("debug", (name,), default=True),), config)


# ------------------------------------------------------------------ parsing


def _logical_lines(path: str, seen: tuple[str, ...] = ()):
    """(file, line number, text) with comments stripped and ``\\`` continuations joined."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = handle.read().split("\n")
    except OSError as err:
        raise SlurmError(f"Unable to read configuration file {path}: {err.strerror}") from None
    pending, start = "", 0
    for number, line in enumerate(raw, start=1):
        line = line.split("#", 1)[0].rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield path, start, pending + line
        pending = ""


def _pairs(path: str, seen: tuple[str, ...] = ()):
    from lark.exceptions import LarkError

    from sflow.slurm.grammars import parser

    for source, number, text in _logical_lines(path):
        if not text.strip():
            continue
        try:
            tree = parser("slurm_conf", "line").parse(text.strip())
        except LarkError:
            raise SlurmError(f"{source} line {number}: cannot parse: {text.strip()}") from None
        if tree.data == "include":
            target = str(tree.children[1])
            if not os.path.isabs(target):
                target = os.path.join(os.path.dirname(path), target)
            if target in seen:
                raise SlurmError(f"{source} line {number}: Include loop through {target}")
            yield from _pairs(target, seen + (path,))
            continue
        pairs = []
        for pair in tree.children:
            key = str(pair.children[0])
            value_tree = pair.children[1]
            value = str(value_tree.children[0]) if value_tree.children else ""
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            pairs.append((key, value))
        yield source, number, pairs


def _int(value: str, key: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SlurmError(f"{where}: invalid value for {key}: {value}") from None


def _time(value: str, where: str) -> int | None:
    from sflow.slurm.values import InvalidValue, parse_time_limit

    try:
        return parse_time_limit(value)
    except InvalidValue:
        raise SlurmError(f"{where}: invalid time: {value}") from None


def load_file(path: str) -> Cluster:
    from sflow.slurm.values import InvalidValue, expand_hostlist

    config: dict[str, str] = {}
    node_defaults: dict[str, str] = {}
    part_defaults: dict[str, str] = {}
    nodes: list[Node] = []
    partitions: list[Partition] = []
    for source, number, pairs in _pairs(path):
        where = f"{source} line {number}"
        keys = {k.lower(): v for k, v in pairs}
        head = pairs[0][0].lower()
        if head == "nodename":
            if pairs[0][1].upper() == "DEFAULT":
                node_defaults.update({k.lower(): v for k, v in pairs[1:]})
                continue
            spec = {**node_defaults, **keys}
            try:
                names = expand_hostlist(pairs[0][1])
            except InvalidValue:
                raise SlurmError(f"{where}: invalid NodeName: {pairs[0][1]}") from None
            gpus, gtype = 0, None
            for gres in filter(None, spec.get("gres", "").split(",")):
                bits = gres.split(":")
                if bits[0] == "gpu":
                    count = bits[-1] if len(bits) > 1 and bits[-1].isdigit() else "1"
                    gpus += int(count)
                    if len(bits) == 3:
                        gtype = bits[1]
            for name in names:
                nodes.append(Node(
                    name=name,
                    cpus=_int(spec.get("cpus", spec.get("procs", "1")), "CPUs", where),
                    real_memory_mb=_int(spec.get("realmemory", "1"), "RealMemory", where),
                    gpus=gpus, gpu_type=gtype,
                    features=tuple(filter(None, spec.get("features", spec.get("feature", "")).split(","))),
                    sockets=_int(spec.get("sockets", "1"), "Sockets", where),
                    threads_per_core=_int(spec.get("threadspercore", "1"), "ThreadsPerCore", where),
                ))
        elif head == "partitionname":
            if pairs[0][1].upper() == "DEFAULT":
                part_defaults.update({k.lower(): v for k, v in pairs[1:]})
                continue
            spec = {**part_defaults, **keys}
            members = spec.get("nodes", "")
            if members.upper() == "ALL":
                member_names = tuple(n.name for n in nodes)
            else:
                try:
                    member_names = tuple(expand_hostlist(members)) if members else ()
                except InvalidValue:
                    raise SlurmError(f"{where}: invalid Nodes: {members}") from None
            backend = spec.get("backend", "local").lower()
            if backend not in ("local", "mithril"):
                raise SlurmError(f"{where}: Backend must be local or mithril, not {backend}")
            partitions.append(Partition(
                name=pairs[0][1], nodes=member_names,
                default=spec.get("default", "NO").upper() == "YES",
                max_time=_time(spec["maxtime"], where) if "maxtime" in spec else None,
                default_time=_time(spec["defaulttime"], where) if "defaulttime" in spec else None,
                max_nodes=None if spec.get("maxnodes", "UNLIMITED").upper() == "UNLIMITED"
                else _int(spec["maxnodes"], "MaxNodes", where),
                state=spec.get("state", "UP").upper(), backend=backend,
            ))
        else:
            for key, value in pairs:
                config[key] = value
    lower = {k.lower(): v for k, v in config.items()}
    where = path
    if not nodes:
        raise SlurmError(f"{path}: no NodeName lines: a cluster needs nodes")
    if not partitions:
        partitions.append(Partition("debug", tuple(n.name for n in nodes), default=True))
    known = {n.name for n in nodes}
    for part in partitions:
        missing = [n for n in part.nodes if n not in known]
        if missing:
            raise SlurmError(f"{path}: partition {part.name} names unknown nodes: {','.join(missing)}")
    return Cluster(
        name=lower.get("clustername", "sflow"),
        nodes=tuple(nodes), partitions=tuple(partitions), config=config,
        first_job_id=_int(lower.get("firstjobid", "1"), "FirstJobId", where),
        kill_wait=_int(lower.get("killwait", "30"), "KillWait", where),
        min_job_age=_int(lower.get("minjobage", "300"), "MinJobAge", where),
        max_array_size=_int(lower.get("maxarraysize", "1001"), "MaxArraySize", where),
        source=os.path.abspath(path),
    )


def config_path(env=os.environ) -> str | None:
    if env.get("SFLOW_CONF"):
        return env["SFLOW_CONF"]
    candidate = os.path.join(sflow_home(env), "slurm.conf")
    return candidate if os.path.exists(candidate) else None


def load_cluster(env=os.environ) -> Cluster:
    path = config_path(env)
    return load_file(path) if path else default_cluster()


__all__ = ["Cluster", "Node", "Partition", "default_cluster", "load_cluster", "load_file", "sflow_home", "replace"]
