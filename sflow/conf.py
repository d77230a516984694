"""The cluster description, read from slurm.conf syntax.

``$SFLOW_CONF``, else ``$SFLOW_HOME/slurm.conf``, else this machine as a
one-node cluster. An admin's own slurm.conf works: node and partition lines
and the keys sflow acts on are read, every other key is kept and shown by
``scontrol show config``. sflow adds one partition key, ``Backend=local|mithril``.

Every shim reads the cluster, so ``load_cluster`` keeps the parsed form in
``$SFLOW_HOME/cache`` keyed by each file's path, size and mtime; parsing
(and importing lark) happens only when a file changed.
"""

from __future__ import annotations

import marshal
import os
from dataclasses import asdict, dataclass, field, replace

from sflow._resources import load_compat_table
from sflow.errors import SlurmError
from sflow.queue import paths
from sflow.records import INFINITE

CACHE_VERSION = 3  # bump when the dataclasses below change shape


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
    # Beyond what scheduling needs: what sinfo and scontrol show.
    boards: int = 1
    addr: str | None = None  # NodeAddr; None: the node's name
    hostname: str | None = None  # NodeHostname; None: the node's name
    port: int | None = None  # Port, when the file sets one
    tmp_disk_mb: int = 0
    weight: int = 1
    gres: tuple[str, ...] = ()  # as configured: ("gpu:h100:8",)
    state: str | None = None  # State= in the file (DOWN, DRAIN, FUTURE...); None: UNKNOWN
    reason: str | None = None  # Reason= in the file (or a DownNodes line)


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: tuple[str, ...]
    default: bool = False
    max_time: int | None = None  # minutes; INFINITE for UNLIMITED; None if unset (= UNLIMITED)
    default_time: int | None = None
    max_nodes: int | None = None
    state: str = "UP"  # UP, DOWN, DRAIN, INACTIVE
    backend: str = "local"  # sflow extension: local | mithril
    backend_given: bool = True  # False: no Backend= on its line, so sflow's config file may choose
    # Beyond what scheduling needs: what sinfo and scontrol show.
    min_nodes: int = 0
    hidden: bool = False
    priority_tier: int = 1
    priority_job_factor: int = 1
    oversubscribe: str = "NO"  # NO, EXCLUSIVE, YES:n, FORCE:n
    root_only: bool = False
    exclusive_user: bool = False
    disable_root_jobs: bool = False
    lln: bool = False
    req_resv: bool = False
    allow_groups: str = "ALL"
    allow_accounts: str = "ALL"
    allow_qos: str = "ALL"
    alloc_nodes: str = "ALL"
    qos: str | None = None
    grace_time: int = 0
    preempt_mode: str | None = None  # None: the cluster's PreemptMode
    over_time_limit: int | None = None
    max_cpus_per_node: int | None = None
    def_mem_per_cpu: int | None = None
    def_mem_per_node: int | None = None
    max_mem_per_cpu: int | None = None
    max_mem_per_node: int | None = None
    select_type_parameters: str | None = None
    job_defaults: str | None = None


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
    controllers: tuple[str, ...] = ()  # SlurmctldHost lines, in order

    def partition(self, name: str | None = None) -> Partition:
        """The named partition, or the default one (``None``); of a list (``a,b``), the one tried first."""
        if name and "," in name:
            return self.partitions_for(name)[0]
        for part in self.partitions:
            if (part.default if name is None else part.name == name):
                return part
        if name is None:
            raise SlurmError("Batch job submission failed: No partition specified or system default partition")
        raise SlurmError(
            f"invalid partition specified: {name}\n"
            "Batch job submission failed: Invalid partition name specified"
        )

    def partitions_for(self, names: str | None) -> list[Partition]:
        """A job's partitions (``--partition=a,b``) in the order SLURM tries them: by priority tier,
        then as given. Every name must exist."""
        chosen: list[Partition] = []
        for name in (names or "").split(",") if names else [None]:
            part = self.partition(name or None)
            if part not in chosen:
                chosen.append(part)
        return sorted(chosen, key=lambda part: -part.priority_tier)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise SlurmError(f"Invalid node name specified: {name}")

    def config_value(self, key: str, default: str | None = None) -> str | None:
        """A slurm.conf key, compared case-insensitively as SLURM does."""
        wanted = key.lower()
        for name, value in self.config.items():
            if name.lower() == wanted:
                return value
        return default


# ------------------------------------------------------------------ where things live


def config_path(env=os.environ) -> str | None:
    if env.get("SFLOW_CONF"):
        return env["SFLOW_CONF"]
    candidate = os.path.join(paths.home_path(env), "slurm.conf")  # looking needs no home made
    return candidate if os.path.isfile(candidate) else None


# ------------------------------------------------------------------ this machine


def _meminfo_mb() -> int:
    """MemTotal in MB, rounded down, as ``slurmd -C`` reports RealMemory."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _topology(cpus: int) -> tuple[int, int, int]:
    """(sockets, cores per socket, threads per core) of the CPUs we may use, as slurmd -C counts them."""
    try:
        usable = sorted(os.sched_getaffinity(0))
        threads: dict[tuple[str, str], int] = {}
        for cpu in usable:
            base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
            with open(base + "physical_package_id") as handle:
                package = handle.read().strip()
            with open(base + "core_id") as handle:
                core = handle.read().strip()
            threads[(package, core)] = threads.get((package, core), 0) + 1
        sockets = len({package for package, _ in threads})
        per_core = max(threads.values())
        if sockets * (len(threads) // sockets) * per_core == cpus and len(threads) % sockets == 0:
            return sockets, len(threads) // sockets, per_core
    except (OSError, AttributeError, ValueError, ZeroDivisionError):
        pass
    return 1, cpus, 1


def _gpu_count() -> int:
    """GPUs listed by ``nvidia-smi -L`` (0 without the binary); cached per boot, it takes a while."""
    import shutil  # deferred: ~2 ms (it brings zlib, bz2, lzma); a cluster read from slurm.conf never needs it

    binary = shutil.which("nvidia-smi")
    if not binary:
        return 0
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
    except OSError:
        boot = ""
    cache = os.path.join(paths.home(), "cache", f"gpus-{boot}") if boot else None
    if cache:
        try:
            with open(cache) as handle:
                return int(handle.read())
        except (OSError, ValueError):
            pass
    import subprocess  # deferred: ~3 ms; nvidia-smi runs once per boot, then the cache answers

    try:
        out = subprocess.run([binary, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    if cache:
        _write_atomic(cache, str(count))
    return count


def default_cluster() -> Cluster:
    """This machine as one node named after its short hostname, in partition ``debug``."""
    name = os.uname().nodename.split(".")[0] or "localhost"
    cpus = _cpu_count()
    sockets, cores, threads = _topology(cpus)
    gpus = _gpu_count()
    node = Node(name, cpus, _meminfo_mb(), gpus, sockets=sockets, cores_per_socket=cores,
                threads_per_core=threads, gres=(f"gpu:{gpus}",) if gpus else ())
    config = _with_defaults({"ClusterName": "sflow", "FirstJobId": "1"})
    return Cluster("sflow", (node,), (Partition("debug", (name,), default=True, backend_given=False),), config)


# ------------------------------------------------------------------ reading the file


def _read_lines(path: str, where: str | None = None):
    """(file, line number, text) per logical line: comments cut, ``\\`` continuations joined."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            raw = handle.read().split("\n")
    except OSError as err:
        raise SlurmError(f"Unable to open configuration file {path}: {err.strerror}"
                         + (f" ({where})" if where else "")) from None
    pending, start = "", 0
    for number, line in enumerate(raw, start=1):
        line = line.split("#", 1)[0].rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text:
            yield path, start, text


def _parse_line(text: str, path: str, number: int):
    """("include", path) or ("pairs", [(key, value), ...])."""
    # deferred: lark costs ~40 ms; every shim reads the cluster, parsed only when a file changed
    from sflow.slurm.grammars import UnexpectedInput, parser

    try:
        tree = parser("slurm_conf").parse(text)
    except UnexpectedInput as err:
        word = text.split()[0] if "=" not in text.split()[0] else text[max(0, err.column - 1):].split()[0]
        raise SlurmError(f"Parsing error at unrecognized key: {word}", line=number, source=path) from None
    first = tree.children[0]
    if first.data == "include":
        return "include", str(first.children[0])
    pairs = []
    for pair in tree.children:
        key = str(pair.children[0])
        value = str(pair.children[1].children[0]) if len(pair.children) > 1 else ""
        if value.startswith('"'):
            value = value[1:-1]
        pairs.append((key, value))
    return "pairs", pairs


def _statements(path: str, top_dir: str, cluster_name: list[str], stack: tuple[str, ...] = ()):
    """(file, line, pairs) for every line of the file and of the files it includes."""
    for source, number, text in _read_lines(path):
        kind, payload = _parse_line(text, source, number)
        if kind == "pairs":
            for key, value in payload:
                if key.lower() == "clustername":
                    cluster_name[0] = value.lower()  # %c in later Include lines (SLURM lowercases it)
            yield source, number, payload
            continue
        target = payload.replace("%c", cluster_name[0] or "")
        if not os.path.isabs(target):
            target = os.path.join(top_dir, target)  # relative to slurm.conf's directory, as SLURM does
        target = os.path.normpath(target)
        if target in stack + (os.path.normpath(path),):
            raise SlurmError(f"Include loop: {target} includes itself", line=number, source=source)
        if not os.path.exists(target):
            raise SlurmError(f"Unable to open configuration file {target}: No such file or directory",
                             line=number, source=source)
        yield from _statements(target, top_dir, cluster_name, stack + (os.path.normpath(path),))
        yield source, number, [("\0include", target)]  # noted for the cache's file list


# ------------------------------------------------------------------ values


class _Where:
    """Where a value came from, for error messages."""

    def __init__(self, source: str, line: int):
        self.source, self.line = source, line

    def error(self, message: str) -> SlurmError:
        return SlurmError(message, line=self.line, source=self.source)

    def int(self, key: str, value: str, low: int | None = None, high: int | None = None) -> int:
        text = value.strip()
        if not text.lstrip("-").isdecimal():
            raise self.error(f'"{key}" value "{value}" is not a valid number')
        number = int(text)
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = f"{low} to {high}" if high is not None else f"at least {low}"
            raise self.error(f'"{key}" value "{value}" is out of range ({bounds})')
        return number

    def yes_no(self, key: str, value: str) -> bool:
        word = value.strip().upper()
        if word in ("YES", "Y", "1", "TRUE"):
            return True
        if word in ("NO", "N", "0", "FALSE"):
            return False
        raise self.error(f'"{key}" value "{value}" is not YES or NO')

    def minutes(self, key: str, value: str) -> int:
        # deferred: values costs ~8 ms at squeue's start; only parsing a changed slurm.conf needs it
        from sflow.slurm.values import InvalidValue, parse_time_limit

        if value.strip().upper() in ("INFINITE", "UNLIMITED"):
            return INFINITE
        try:
            return parse_time_limit(value)
        except InvalidValue:
            raise self.error(f'"{key}" value "{value}" is not a valid time') from None

    def limit(self, key: str, value: str) -> int | None:
        """An integer or UNLIMITED/INFINITE (None)."""
        if value.strip().upper() in ("UNLIMITED", "INFINITE"):
            return None
        return self.int(key, value, 0)

    def hosts(self, key: str, value: str) -> list[str]:
        from sflow.slurm.values import InvalidValue, expand_hostlist  # deferred: as in minutes()

        try:
            return expand_hostlist(value)
        except InvalidValue:
            raise self.error(f'"{key}" value "{value}" is not a valid hostlist') from None


NODE_KEYS = {
    "nodename", "nodehostname", "nodeaddr", "bcastaddr", "boards", "corespeccount", "corespersocket",
    "cpubind", "cpus", "cpuspeclist", "features", "feature", "gres", "memspeclimit", "port", "procs",
    "realmemory", "reason", "sockets", "socketsperboard", "state", "threadspercore", "tmpdisk", "weight",
}
PARTITION_KEYS = {
    "partitionname", "allocnodes", "allowaccounts", "allowgroups", "allowqos", "alternate", "cpubind",
    "default", "defaulttime", "defcpupergpu", "defmempercpu", "defmempergpu", "defmempernode",
    "denyaccounts", "denyqos", "disablerootjobs", "exclusiveuser", "gracetime", "hidden", "lln",
    "maxcpuspernode", "maxmempercpu", "maxmempernode", "maxnodes", "maxtime", "minnodes", "nodes",
    "oversubscribe", "overtimelimit", "preemptmode", "priority", "priorityjobfactor", "prioritytier", "qos",
    "reqresv", "resumetimeout", "rootonly", "selecttypeparameters", "shared", "state", "suspendtime",
    "suspendtimeout", "tresbillingweights", "jobdefaults", "backend",
}
NODE_STATES = {"UNKNOWN", "IDLE", "DOWN", "DRAIN", "FAIL", "FAILING", "FUTURE", "CLOUD"}
PARTITION_STATES = {"UP", "DOWN", "DRAIN", "INACTIVE"}
BACKENDS = ("local", "mithril")


def _check_keys(pairs, allowed: set[str], where: _Where) -> None:
    for key, _ in pairs:
        if key.lower() not in allowed:
            raise where.error(f"Parsing error at unrecognized key: {key}")


def _per_node(key: str, value: str | None, count: int, where: _Where) -> list[str | None]:
    """NodeAddr/NodeHostname/Port: one value for all nodes of the line, or one per node."""
    if value is None:
        return [None] * count
    items = where.hosts(key, value) if key != "Port" else _ports(value, where)
    if len(items) == 1:
        return items * count
    if len(items) != count:
        raise where.error(f"{key} count ({len(items)}) does not match NodeName count ({count})")
    return items


def _ports(value: str, where: _Where) -> list[str]:
    """``6818``, or one per node: ``[7001-7004]``, ``7001,7003``."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    ports = []
    for item in text.split(","):
        low, _, high = item.partition("-")
        if not low.isdecimal() or (high and not high.isdecimal()) or (high and int(high) < int(low)):
            raise where.error(f'"Port" value "{value}" is not a valid number')
        ports += [str(p) for p in range(int(low), int(high or low) + 1)]
    return ports


def _gres(value: str, where: _Where) -> tuple[tuple[str, ...], int, str | None]:
    """``gpu:h100:8,mps:100`` -> (the items, GPU count, GPU type)."""
    items, gpus, gtype = [], 0, None
    for item in filter(None, (part.strip() for part in value.split(","))):
        bare = item.split("(", 1)[0]  # gpu:8(S:0-1): the socket binding does not change the count
        bits = bare.split(":")
        count = 1
        if len(bits) > 1 and bits[-1].isdecimal():
            count = int(bits[-1])
            kind = bits[1] if len(bits) == 3 else None
        elif len(bits) <= 2:
            kind = bits[1] if len(bits) == 2 else None
        else:
            raise where.error(f'"Gres" value "{value}" is not valid')
        if bits[0].lower() == "gpu":
            gpus += count
            gtype = gtype or kind
        items.append(bare)
    return tuple(items), gpus, gtype


def _make_nodes(spec: dict[str, str], names: list[str], where: _Where) -> list[Node]:
    def number(key: str, default: int, low: int = 0) -> int:
        return where.int(key, spec[key.lower()], low) if key.lower() in spec else default

    boards = number("Boards", 1, 1)
    threads = number("ThreadsPerCore", 1, 1)
    cores = number("CoresPerSocket", 1, 1)
    if "sockets" in spec:
        sockets = number("Sockets", 1, 1)
    elif "socketsperboard" in spec:
        sockets = boards * number("SocketsPerBoard", 1, 1)
    else:
        sockets = None
    if "cpus" in spec or "procs" in spec:
        key = "CPUs" if "cpus" in spec else "Procs"
        cpus = where.int(key, spec[key.lower()], 1)
        if sockets is None:  # inferred from CPUs, as slurm.conf(5) says
            sockets = max(1, cpus // (cores * threads))
    else:
        sockets = sockets or 1
        cpus = sockets * cores * threads
    gres, gpus, gtype = _gres(spec.get("gres", ""), where)
    state = spec.get("state", "").upper() or None
    if state and state.split("+")[0] not in NODE_STATES:
        raise where.error(f'"State" value "{spec["state"]}" is not a valid node state')
    features = tuple(f for f in (spec.get("features", spec.get("feature", ""))).split(",") if f)
    addrs = _per_node("NodeAddr", spec.get("nodeaddr"), len(names), where)
    hostnames = _per_node("NodeHostname", spec.get("nodehostname"), len(names), where)
    ports = _per_node("Port", spec.get("port"), len(names), where)
    common = dict(
        cpus=cpus, real_memory_mb=number("RealMemory", 1, 1), gpus=gpus, gpu_type=gtype, features=features,
        sockets=sockets, cores_per_socket=cores, threads_per_core=threads, boards=boards,
        tmp_disk_mb=number("TmpDisk", 0), weight=number("Weight", 1, 0), gres=gres, state=state,
        reason=spec.get("reason") or None,
    )
    return [Node(name=name, addr=addr, hostname=host, port=int(port) if port else None, **common)
            for name, addr, host, port in zip(names, addrs, hostnames, ports)]


def _split_top(text: str) -> list[str]:
    """Comma-separated items, not splitting inside brackets: ``a[1-2,4],ALL`` -> [``a[1-2,4]``, ``ALL``]."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text + ","):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            if text[start:i]:
                items.append(text[start:i])
            start = i + 1
    return items


def _make_partition(name: str, spec: dict[str, str], nodes: list[Node], nodesets: dict[str, list[str]],
                    where: _Where) -> Partition:
    known = {n.name: i for i, n in enumerate(nodes)}
    members: set[str] = set()
    for item in _split_top(spec.get("nodes", "")):
        if item.upper() == "ALL":
            members |= set(known)
        elif item in nodesets:
            members |= set(nodesets[item])
        else:
            for host in where.hosts("Nodes", item):
                if host not in known:
                    raise where.error(f'Partition "{name}": node {host} is not defined by a NodeName line')
                members.add(host)
    state = spec.get("state", "UP").upper()
    if state not in PARTITION_STATES:
        raise where.error(f'"State" value "{spec["state"]}" is not UP, DOWN, DRAIN or INACTIVE')
    backend = spec.get("backend", "local").lower()
    if backend not in BACKENDS:
        raise where.error(f'"Backend" value "{spec["backend"]}" is not local or mithril')
    oversubscribe = spec.get("oversubscribe", spec.get("shared", "NO")).upper()
    if oversubscribe in ("YES", "FORCE"):
        oversubscribe += ":4"  # SLURM's default job count per resource

    def opt_int(key: str, low: int = 0) -> int | None:
        return where.int(key, spec[key.lower()], low) if key.lower() in spec else None

    def flag(key: str) -> bool:
        return where.yes_no(key, spec[key.lower()]) if key.lower() in spec else False

    priority = opt_int("Priority")  # the old spelling sets both
    tier = opt_int("PriorityTier")
    factor = opt_int("PriorityJobFactor")
    over_time = spec.get("overtimelimit")
    return Partition(
        name=name,
        nodes=tuple(sorted(members, key=known.__getitem__)),
        default=flag("Default"),
        max_time=where.minutes("MaxTime", spec["maxtime"]) if "maxtime" in spec else None,
        default_time=where.minutes("DefaultTime", spec["defaulttime"]) if "defaulttime" in spec else None,
        max_nodes=where.limit("MaxNodes", spec["maxnodes"]) if "maxnodes" in spec else None,
        state=state, backend=backend, backend_given="backend" in spec,
        min_nodes=opt_int("MinNodes") or 0,
        hidden=flag("Hidden"),
        priority_tier=tier if tier is not None else (priority if priority is not None else 1),
        priority_job_factor=factor if factor is not None else (priority if priority is not None else 1),
        oversubscribe=oversubscribe,
        root_only=flag("RootOnly"), exclusive_user=flag("ExclusiveUser"),
        disable_root_jobs=flag("DisableRootJobs"), lln=flag("LLN"), req_resv=flag("ReqResv"),
        allow_groups=spec.get("allowgroups", "ALL"), allow_accounts=spec.get("allowaccounts", "ALL"),
        allow_qos=spec.get("allowqos", "ALL"), alloc_nodes=spec.get("allocnodes", "ALL"),
        qos=spec.get("qos") or None,
        grace_time=opt_int("GraceTime") or 0,
        preempt_mode=spec["preemptmode"].upper() if "preemptmode" in spec else None,
        over_time_limit=(None if over_time is None or over_time.upper() in ("UNLIMITED", "INFINITE")
                         else where.int("OverTimeLimit", over_time, 0)),
        max_cpus_per_node=where.limit("MaxCPUsPerNode", spec["maxcpuspernode"]) if "maxcpuspernode" in spec
        else None,
        def_mem_per_cpu=opt_int("DefMemPerCPU"), def_mem_per_node=opt_int("DefMemPerNode"),
        max_mem_per_cpu=opt_int("MaxMemPerCPU"), max_mem_per_node=opt_int("MaxMemPerNode"),
        select_type_parameters=spec.get("selecttypeparameters", "").upper() or None,
        job_defaults=spec.get("jobdefaults") or None,
    )


# ------------------------------------------------------------------ the configuration keys


def config_rows() -> list[dict]:
    """compat/scontrol_config.toml's rows: every key scontrol show config prints, in order."""
    return load_compat_table("scontrol_config.toml")["key"]


def _config_table() -> dict[str, dict]:
    """The rows by lower-cased name and alias."""
    table = {}
    for row in config_rows():
        table[row["name"].lower()] = row
        for alias in row.get("alias", ()):
            table[alias.lower()] = row
    return table


def _with_defaults(given: dict[str, str]) -> dict[str, str]:
    """The keys as given, then SLURM's default for every key it shows that the file leaves unset."""
    table = _config_table()
    config = dict(given)
    seen = {table[k.lower()]["name"] if k.lower() in table else k for k in given}
    for row in {id(r): r for r in table.values()}.values():
        if row["name"] in seen or row.get("show") == "derived" or row["default"] in ("(null)", ""):
            continue
        config[row["name"]] = row["default"]
    return config


# ------------------------------------------------------------------ building the cluster


def load_file(path: str) -> Cluster:
    """Parse one slurm.conf (and what it includes) into a Cluster; errors name the file and line."""
    return _load(path)[0]


def _load(path: str) -> tuple[Cluster, list[str]]:
    path = os.path.abspath(path)
    table = _config_table()
    files = [path]
    given: dict[str, str] = {}
    controllers: list[str] = []
    node_default: dict[str, str] = {}
    part_default: dict[str, str] = {}
    nodes: list[Node] = []
    node_index: dict[str, int] = {}
    partitions: list[Partition] = []
    nodesets: dict[str, list[str]] = {}
    for source, number, pairs in _statements(path, os.path.dirname(path), [""]):
        where = _Where(source, number)
        head, value = pairs[0][0].lower(), pairs[0][1]
        spec = {k.lower(): v for k, v in pairs}
        if head == "\0include":
            files.append(value)
        elif head == "nodename":
            _check_keys(pairs, NODE_KEYS, where)
            if value.upper() == "DEFAULT":
                node_default.update({k: v for k, v in spec.items() if k != "nodename"})
                continue
            names = where.hosts("NodeName", value)
            for node in _make_nodes({**node_default, **spec}, names, where):
                if node.name in node_index:
                    raise where.error(f"Duplicated NodeName {node.name}")
                node_index[node.name] = len(nodes)
                nodes.append(node)
        elif head == "partitionname":
            _check_keys(pairs, PARTITION_KEYS, where)
            if value.upper() == "DEFAULT":
                part_default.update({k: v for k, v in spec.items() if k != "partitionname"})
                continue
            if any(p.name == value for p in partitions):
                raise where.error(f"Duplicated PartitionName {value}")
            part = _make_partition(value, {**part_default, **spec}, nodes, nodesets, where)
            if part.default:  # the last Default=YES wins
                partitions = [replace(p, default=False) for p in partitions]
            partitions.append(part)
        elif head == "downnodes":
            _check_keys(pairs, {"downnodes", "reason", "state"}, where)
            for host in where.hosts("DownNodes", value):
                if host not in node_index:
                    raise where.error(f"DownNodes: node {host} is not defined by a NodeName line")
                old = nodes[node_index[host]]
                nodes[node_index[host]] = replace(old, state=spec.get("state", "DOWN").upper(),
                                                  reason=spec.get("reason") or old.reason)
        elif head == "nodeset":
            members = where.hosts("Nodes", spec["nodes"]) if "nodes" in spec else \
                [n.name for n in nodes if spec.get("feature") in n.features]
            nodesets[value] = members
        elif head in ("frontendname", "switchname"):
            continue  # front-end and topology lines: nothing sflow does depends on them
        else:
            for key, val in pairs:
                row = table.get(key.lower())
                # SLURM's own spelling of a key it knows (alternative names keep theirs)
                spellings = [row["name"], *row.get("alias", ())] if row else []
                name = next((s for s in spellings if s.lower() == key.lower()), key)
                if key.lower() in ("slurmctldhost", "controlmachine"):
                    controllers.append(val)
                    name = "SlurmctldHost"
                given[name] = val
    if not nodes:
        raise SlurmError(f"{path}: no NodeName lines: a cluster needs nodes")
    if not partitions:
        # sflow's convenience (SLURM would run no jobs): every node in one default partition
        partitions.append(Partition("debug", tuple(n.name for n in nodes), default=True, backend_given=False))
    where = _Where(path, 0)

    def setting(key: str, default: int, low: int, high: int | None = None) -> int:
        for name, val in given.items():
            if name.lower() == key.lower():
                return where.int(key, val, low, high)
        return default

    first_job_id = setting("FirstJobId", 1, 1)
    kill_wait = setting("KillWait", 30, 0, 65533)
    min_job_age = setting("MinJobAge", 300, 0)
    max_array_size = setting("MaxArraySize", 1001, 0, 4000001)
    for key, val in given.items():
        if key.lower() == "nodenameresolution":  # sflow's own key (sflow.exec.node_names)
            where.yes_no(key, val)
    name = next((v for k, v in given.items() if k.lower() == "clustername"), "sflow").lower()
    cluster = Cluster(
        name=name, nodes=tuple(nodes), partitions=tuple(partitions), config=_with_defaults(given),
        first_job_id=first_job_id, kill_wait=kill_wait, min_job_age=min_job_age,
        max_array_size=max_array_size, source=path, controllers=tuple(controllers),
    )
    return cluster, files


# ------------------------------------------------------------------ the cache


def _stamp(path: str) -> list | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [path, stat.st_size, stat.st_mtime_ns]


def _cache_path(path: str, env) -> str:
    import zlib  # deferred: only a slurm.conf in use needs it; zlib, as hashlib would cost 2 ms

    digest = f"{zlib.crc32(path.encode()):08x}"  # a clash only costs a parse: the entry names its files
    return os.path.join(paths.home_path(env), "cache", f"cluster-{digest}.bin")  # made when written


def _private_dirs(path: str) -> None:
    """Make ``path`` and any missing parent 0700 (makedirs gives parents the umask's mode): the
    cache may be the first thing written under a new home."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        os.mkdir(directory, 0o700)


def _write_atomic(target: str, data: str | bytes) -> None:
    try:
        _private_dirs(os.path.dirname(target))
        temporary = f"{target}.{os.getpid()}"
        with open(temporary, "wb" if isinstance(data, bytes) else "w") as handle:
            handle.write(data)
        os.replace(temporary, target)
    except OSError:
        pass  # a cache we cannot write only costs time


def _from_saved(data: dict) -> Cluster:
    data = dict(data)
    data["nodes"] = tuple(Node(**{**n, "features": tuple(n["features"]), "gres": tuple(n["gres"])})
                          for n in data["nodes"])
    data["partitions"] = tuple(Partition(**{**p, "nodes": tuple(p["nodes"])}) for p in data["partitions"])
    data["controllers"] = tuple(data["controllers"])
    return Cluster(**data)


RUNTIME_PARTITIONS = "partitions.conf"


def runtime_partitions_path(env=os.environ) -> str:
    """Partitions made or removed by ``scontrol create|delete`` since start: the controller's, not slurm.conf's."""
    return os.path.join(paths.home_path(env), RUNTIME_PARTITIONS)


def make_partition(cluster: Cluster, pairs: list[tuple[str, str]], source: str = "scontrol") -> Partition:
    """A partition from ``Key=Value`` pairs over the cluster's nodes (a SlurmError names what is wrong)."""
    where = _Where(source, 0)
    _check_keys(pairs, PARTITION_KEYS, where)
    spec = {k.lower(): v for k, v in pairs}
    return _make_partition(spec["partitionname"], spec, list(cluster.nodes), {}, where)


def with_runtime_partitions(cluster: Cluster, env=os.environ) -> Cluster:
    """The cluster with the controller's partition changes applied: a ``PartitionName=...`` line adds
    (or replaces) one, a ``-NAME`` line removes one."""
    path = runtime_partitions_path(env)
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return cluster
    partitions = list(cluster.partitions)
    for line in lines:
        if line.startswith("-"):
            partitions = [p for p in partitions if p.name != line[1:]]
        elif line.strip():
            try:
                part = make_partition(cluster, [tuple(w.split("=", 1)) for w in line.split()], path)
            except (SlurmError, ValueError):
                continue  # checked when made; a node since removed from slurm.conf drops it
            if part.default:
                partitions = [replace(p, default=False) for p in partitions]
            partitions = [p for p in partitions if p.name != part.name] + [part]
    return replace(cluster, partitions=tuple(partitions))


def load_cluster(env=os.environ) -> Cluster:
    return with_runtime_partitions(_load_cluster(env)[0], env)


def load_cluster_watched(env=os.environ) -> tuple[Cluster, tuple]:
    """The cluster and the stamp of what it was read from, for ``conf_stamp`` to compare with later."""
    cluster, files = _load_cluster(env)
    return with_runtime_partitions(cluster, env), conf_stamp(env, files)


def conf_stamp(env=os.environ, files=()) -> tuple:
    """Which slurm.conf is in force and each file read from it, with size and mtime: it differs
    once a file is made, edited, removed or included, or another one is named."""
    path = config_path(env)
    path = path and os.path.abspath(path)
    names = list(files) if files and files[0] == path else [path] if path else []
    return (path, tuple(tuple(_stamp(name) or (name,)) for name in names))


def _load_cluster(env=os.environ) -> tuple[Cluster, list[str]]:
    """The cluster: $SFLOW_CONF, else $SFLOW_HOME/slurm.conf, else this machine.

    The parsed form is cached (marshal: built in, no import cost) with each
    file's size and mtime; any change to the file or what it includes parses again.
    """
    path = config_path(env)
    if not path:
        return default_cluster(), []
    path = os.path.abspath(path)
    cache = _cache_path(path, env)
    try:
        with open(cache, "rb") as handle:
            saved = marshal.load(handle)
        if saved["version"] == CACHE_VERSION and all(_stamp(f[0]) == list(f) for f in saved["files"]):
            return _from_saved(saved["cluster"]), [f[0] for f in saved["files"]]
    except (OSError, ValueError, TypeError, KeyError, EOFError):
        pass
    stamps = [_stamp(path)]  # before parsing: an edit during the parse makes the next call parse again
    cluster, files = _load(path)
    stamps += [_stamp(f) for f in files[1:]]
    if all(stamps):
        _write_atomic(cache, marshal.dumps({"version": CACHE_VERSION, "files": stamps, "cluster": asdict(cluster)}))
    return cluster, files


__all__ = ["Cluster", "Node", "Partition", "INFINITE", "config_path", "default_cluster", "load_cluster",
           "load_file", "replace"]
