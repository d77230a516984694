"""``sinfo``: partitions and nodes, grouped and formatted as SLURM 22.05's sinfo does.

Nodes become output lines ("records") in three steps, all driven by the
fields being printed (compat/sinfo_format.toml):

1. which nodes: the visible partitions (-p, -a, hidden ones), then -n, -t,
   -d, -r and -R;
2. how they group: one record per partition when a partition field is shown
   (else nodes are counted once), nodes share a record when every "key" field
   agrees (and, with -e, every "min" field); -N makes each node-partition pair
   a record; a partition left with no node still gets a record ("0 n/a");
3. order: -S, else partitions as configured then state, descending (-N: by node).

``sinfo_main`` parses argv and renders once; ``parse_args`` and ``render`` are
there for a caller that repeats (``-i``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import lru_cache

from sflow.errors import SlurmError, UsageError, render as render_error
from sflow.records import INFINITE
from sflow.slurm.getopt import getopt, with_environment
from sflow.slurm.help import VERSION_LINE, recorded
from sflow.slurm.values import InvalidValue, compress_hostlist, expand_hostlist, format_elapsed
from sflow.views.cluster_show import IDLE_NODE, base_state, gpu_gres, is_drained, iso_time, slurm_state
from sflow.views.fmt import load_table

USAGE = ("Usage: sinfo [-abdelNRrsTv] [-i seconds] [-t states] [-p partition] [-n nodes]\n"
         "             [-S fields] [-o format] [-O Format] [--federation] [--local]\n")
# The formats sinfo uses by itself; "#" is a width sized to the widest value (at least 9).
FORMATS = {
    "default": "%#P %.5a %.10l %.6D %.6t %N",
    "long": "%#P %.5a %.10l %.10s %.4r %.8h %.10g %.6D %.11T %N",
    "summarize": "%#P %.5a %.10l %.16F %N",
    "node": "%#N %.6D %.#P %6t",
    "node_long": "%#N %.6D %.#P %.11T %4c %.8z %.6m %.8d %.6w %.8f %20E",
    "reasons": "%20E %9u %19H %N",
    "reasons_long": "%20E %12U %19H %6t %N",
}
ALL_FORMAT = ("%a|%b|%c|%d|%e|%f|%g|%h|%l|%m|%n|%o|%p|%r|%s|%t|%u|%v|%w|%z|"
              "%A |%B |%C |%D |%E |%F |%G |%H |%I |%L |%M |%N |%O |%P |%R |%S |%T |%U |%V |%X |%Y |%Z ")
DYNAMIC_MIN = 9
LONG_WIDTH = 20  # -O fields without a width
# -t: the states sinfo knows, in the order it lists them, and other spellings it takes.
STATE_NAMES = ("unknown,down,idle,allocated,?,mixed,future,drain,drained,draining,no_respond,reserved,"
               "perfctrs,cloud,completing,powering_down,powered_down,power_down,powering_up,fail,maint,"
               "reboot,reboot^,unknown")
STATE_ALIASES = {"alloc": "allocated", "comp": "completing", "futr": "future", "mix": "mixed", "npc": "perfctrs",
                 "resv": "reserved", "unk": "unknown", "planned": "planned", "drng": "draining",
                 "reboot_issued": "reboot", "reboot_requested": "reboot"}
COMPACT = {"IDLE": "idle", "MIXED": "mix", "ALLOCATED": "alloc", "DOWN": "down"}
LONG = {"IDLE": "idle", "MIXED": "mixed", "ALLOCATED": "allocated", "DOWN": "down"}
# SLURM's node state numbers, which its sort uses; the drain flag weighs more than any state.
STATE_RANK = {"DOWN": 1, "IDLE": 2, "ALLOCATED": 3, "MIXED": 5}
DRAIN_FLAG = 0x200


@lru_cache(maxsize=None)
def fields() -> tuple[dict, ...]:
    return tuple(load_table("sinfo_format.toml"))


@lru_cache(maxsize=None)
def _by_letter() -> dict[str, dict]:
    return {f["letter"]: f for f in fields() if "letter" in f}


@lru_cache(maxsize=None)
def _by_name() -> dict[str, dict]:
    return {f["name"].lower(): f for f in fields()}


# ------------------------------------------------------------------ formats


@dataclass
class Spec:
    """One printed field: its table row, width (None: as wide as the value; "#": widest value), alignment."""

    field: dict
    width: int | str | None
    right: bool
    suffix: str = ""


@dataclass
class Format:
    prefix: str
    specs: list[Spec]
    errors: list[str] = field(default_factory=list)


def parse_format(text: str, dynamic: bool = False) -> Format:
    """``-o``: ``%[.][size]type[suffix]``. An unknown type is printed as written, with a complaint."""
    text = text.replace("%all", ALL_FORMAT)
    out = Format("", [])
    literal = []  # text before the first field, or after the last one
    i = 0
    while i < len(text):
        if text[i] != "%":
            literal.append(text[i])
            i += 1
            continue
        start, j = i, i + 1
        right = j < len(text) and text[j] == "."
        j += right
        digits = re.match(r"#|\d*", text[j:]).group() if dynamic else re.match(r"\d*", text[j:]).group()
        j += len(digits)
        if j >= len(text):  # a lone "%" at the end prints nothing
            i = j
            continue
        kind = text[j]
        i = j + 1
        if kind == "%":  # "%%" prints nothing either
            continue
        row = _by_letter().get(kind)
        if row is None:
            out.errors.append(f"Invalid node format specification: {kind}\n")
            literal.append(text[start:i])
            continue
        width = "#" if digits == "#" else ((int(digits) or None) if digits else None)  # 0: no width
        _attach(out, "".join(literal))
        literal = []
        out.specs.append(Spec(row, width, right))
    _attach(out, "".join(literal))
    return out


def _attach(fmt: Format, literal: str) -> None:
    if fmt.specs:
        fmt.specs[-1].suffix += literal
    else:
        fmt.prefix += literal


def parse_long_format(text: str) -> Format:
    """``-O``: ``Name[:[.][size][suffix]]`` items, comma separated; names match case-insensitively."""
    out = Format("", [])
    for item in text.split(","):
        if not item:
            continue
        name, colon, rest = item.partition(":")
        if name.lower() == "all":
            parsed = parse_format(ALL_FORMAT)
            out.prefix += parsed.prefix
            out.specs += parsed.specs
            continue
        row = _by_name().get(name.lower())
        if row is None:
            out.errors.append(f"sinfo: error: Invalid job format specification: {name}\n")
            continue
        width, right, suffix = (LONG_WIDTH, False, "")
        if colon:
            match = re.match(r"(\.?)(\d*)(.*)", rest, re.S)
            right = bool(match.group(1))
            width = int(match.group(2)) if match.group(2) else 0
            width = width or None
            suffix = match.group(3)
        out.specs.append(Spec(row, width, right, suffix))
    return out


# ------------------------------------------------------------------ arguments


@dataclass
class SinfoArgs:
    node_mode: bool = False
    long: bool = False
    summarize: bool = False
    noheader: bool = False
    exact: bool = False
    show_all: bool = False
    dead: bool = False
    responding: bool = False
    reasons: bool = False
    reservations: bool = False
    partitions: list[str] | None = None
    nodes: str | None = None
    states: str | None = None
    sort: str | None = None
    format: str | None = None
    long_format: bool = False  # -O was given: the format is read as -O
    iterate: int | None = None
    clusters: str | None = None
    action: str | None = None  # help, usage, version
    verbose: int = 0


def parse_args(argv: list[str], env=None) -> SinfoArgs:
    env = env or {}
    # sinfo checks its variables before reading the command line, so this beats even --help;
    # a variable that is set counts, whatever its value.
    if "SINFO_ALL" in env and "SINFO_PARTITION" in env:
        raise SlurmError(CONFLICT.format("SINFO_ALL", "SINFO_PARTITION"))
    command_line = getopt("sinfo", argv)
    given = {option.long for option, _ in command_line.options}
    parsed = with_environment("sinfo", command_line, env)
    args = SinfoArgs()
    flags = {"Node": "node_mode", "long": "long", "summarize": "summarize", "noheader": "noheader",
             "exact": "exact", "all": "show_all", "dead": "dead", "responding": "responding",
             "list-reasons": "reasons", "reservation": "reservations"}
    for option, value in parsed.options:
        name = option.long
        if name in flags:
            setattr(args, flags[name], True)
        elif name == "hide":
            args.show_all = False
        elif name == "partition":
            args.partitions = [p for p in value.split(",") if p]
        elif name == "nodes":
            args.nodes = value
        elif name == "states":
            args.states = value
        elif name == "sort":
            args.sort = value
        elif name == "format":
            args.format = value
        elif name == "Format":
            args.format, args.long_format = value, True
        elif name == "iterate":
            digits = re.match(r"\s*(\d*)", value).group(1)  # read as far as it is a number ("5s" is 5)
            if not digits or int(digits) <= 0:
                raise SlurmError(f"Error: invalid entry for --iterate={value}")
            args.iterate = int(digits)
        elif name == "clusters":
            args.clusters = value
        elif name == "verbose":
            args.verbose += 1
        elif name in ("help", "usage", "version"):
            args.action = args.action or name
    if not args.action and {"all", "partition"} <= given:  # --hide after -a does not lift it
        raise SlurmError(CONFLICT.format("-a", "-p"))
    return args


CONFLICT = "Conflicting options, {} and {}, specified. Please choose one or the other."


# sinfo -v names which kinds of value its format needs; -O name -> the flag it sets.
DUMP_FLAGS = {
    "allocmem": "alloc_mem_flag", "available": "avail_flag", "comment": "comment_flag", "cpus": "cpus_flag",
    "defaulttime": "default_time_flag", "disk": "disk_flag", "extra": "extra_flag", "features": "features_flag",
    "features_act": "features_flag_act", "groups": "groups_flag", "gres": "gres_flag",
    "gresused": "gres_used_flag", "size": "job_size_flag", "time": "max_time_flag", "memory": "memory_flag",
    "partition": "partition_flag", "partitionname": "partition_flag", "port": "port_flag",
    "priorityjobfactor": "priority_job_factor_flag", "prioritytier": "priority_tier_flag",
    "reason": "reason_flag", "timestamp": "reason_timestamp_flag", "user": "reason_user_flag",
    "userlong": "reason_user_flag", "root": "root_flag", "oversubscribe": "oversubscribe_flag",
    "statecompact": "state_flag", "statelong": "state_flag", "statecomplete": "statecomplete_flag",
    "weight": "weight_flag",
}
# The flags in sinfo's order, each with its label as sinfo aligns it.
DUMP_LABELS = (
    ("all_flag", "all_flag        = "), ("alloc_mem_flag", "alloc_mem_flag  = "),
    ("avail_flag", "avail_flag      = "), ("comment_flag", "comment_flag    = "),
    ("cpus_flag", "cpus_flag       = "), ("default_time_flag", "default_time_flag ="),
    ("disk_flag", "disk_flag       = "), ("extra_flag", "extra_flag      = "),
    ("features_flag", "features_flag   = "), ("features_flag_act", "features_flag_act = "),
    ("groups_flag", "groups_flag     = "), ("gres_flag", "gres_flag       = "),
    ("gres_used_flag", "gres_used_flag  = "), ("job_size_flag", "job_size_flag   = "),
    ("max_time_flag", "max_time_flag   = "), ("memory_flag", "memory_flag     = "),
    ("partition_flag", "partition_flag  = "), ("port_flag", "port_flag       = "),
    ("priority_job_factor_flag", "priority_job_factor_flag   = "),
    ("priority_tier_flag", "priority_tier_flag   = "), ("reason_flag", "reason_flag     = "),
    ("reason_timestamp_flag", "reason_timestamp_flag = "), ("reason_user_flag", "reason_user_flag = "),
    ("reservation_flag", "reservation_flag = "), ("root_flag", "root_flag       = "),
    ("oversubscribe_flag", "oversubscribe_flag      = "), ("state_flag", "state_flag      = "),
    ("statecomplete_flag", "statecomplete_flag = "), ("weight_flag", "weight_flag     = "),
)


def dump_options(args: SinfoArgs) -> str:
    """-v: the options as sinfo read them and the kinds of value its format needs."""
    def flag(value) -> str:
        return "true" if value else "false"

    default = FORMATS[_default_format_name(args)]
    fmt = (parse_long_format(args.format) if args.long_format else
           parse_format(args.format) if args.format is not None else parse_format(default, dynamic=True))
    if args.format is not None:
        shown = args.format
    else:
        def width(spec) -> str:
            if spec.width == "#":
                return ("." if spec.right else "") + ("9" if spec.field["value"] == "partition" else "0")
            return ("." if spec.right else "") + str(spec.width or 0)

        shown = ",".join(f"{spec.field['name'].lower()}:{width(spec)}{spec.suffix}" for spec in fmt.specs)
    states = args.states if args.states is not None else "down" if args.reasons else None
    filtering = bool(args.partitions is not None or args.nodes is not None or states or args.dead
                     or args.responding)
    rows = [("dead", flag(args.dead)), ("exact", "1" if args.exact else "0"), ("filtering", flag(filtering)),
            ("format", shown), ("iterate", str(args.iterate or 0)), ("long", flag(args.long)),
            ("no_header", flag(args.noheader)), ("node_field", flag(args.node_mode)),
            ("node_format", flag(args.node_mode and args.format is None)),
            ("nodes", args.nodes if args.nodes is not None else "n/a"),
            ("part_field", flag(args.format is None and "#P" in default)),
            ("partition", ",".join(args.partitions) if args.partitions is not None else "n/a"),
            ("responding", flag(args.responding)), ("states", states if states is not None else "(null)"),
            ("sort", args.sort if args.sort is not None else "(null)"), ("summarize", flag(args.summarize)),
            ("verbose", str(args.verbose))]
    needed = {DUMP_FLAGS[s.field["name"].lower()] for s in fmt.specs if s.field["name"].lower() in DUMP_FLAGS}
    rule = "-" * 29
    lines = [rule, *(f"{key:<11} = {value}" for key, value in rows), rule]
    if args.show_all or args.partitions is not None:  # a partition asked for by name shows even if hidden
        needed.add("all_flag")
    lines += [label + flag(key in needed) for key, label in DUMP_LABELS]
    return "\n".join([*lines, rule, "", ""])


def _default_format_name(args: SinfoArgs) -> str:
    return ("summarize" if args.summarize else "node_long" if args.node_mode and args.long else
            "node" if args.node_mode else "reasons_long" if args.reasons and args.long else
            "reasons" if args.reasons else "long" if args.long else "default")


# ------------------------------------------------------------------ node states and filters


def _node_state_words(node, use) -> set[str]:
    """The -t words this node answers to."""
    base = base_state(node, use)
    words = {LONG[base]}
    if is_drained(use):
        words |= {"drain", "draining" if base in ("MIXED", "ALLOCATED") else "drained"}
    return words


def _state_matcher(text: str):
    """-t: ``idle,mix`` (any) or ``idle&drain`` (all); a word may be shortened. Bad words are errors."""
    known = [s for s in STATE_NAMES.split(",")]
    joiner = "&" if "&" in text else ","
    wanted = []
    for word in text.split(joiner):
        low = word.strip().lower()
        name = STATE_ALIASES.get(low) or next((s for s in known if low and s.startswith(low)), None)
        if name is None:
            raise SlurmError(f'Bad state string: "{word}"\nvalid states: {STATE_NAMES}')
        wanted.append(name)
    test = all if joiner == "&" else any
    return lambda node, use: test(w in _node_state_words(node, use) for w in wanted)


def _natural(name: str) -> tuple:
    match = re.match(r"^(.*?)(\d*)$", name)
    return match.group(1), int(match.group(2)) if match.group(2) else -1, name


# ------------------------------------------------------------------ records and their values


@dataclass
class Record:
    partition: object | None  # sflow.conf.Partition, or None when nodes are counted across partitions
    nodes: list = field(default_factory=list)
    uses: list = field(default_factory=list)


def _minimum(values: list[int], empty: str = "0") -> str:
    if not values:
        return empty
    low = min(values)
    return f"{low}+" if max(values) > low else str(low)


def _range(values: list, shown) -> str:
    low, high = min(values), max(values)
    return shown(low) if low == high else f"{shown(low)}-{shown(high)}"


def _limit(minutes: int | None, unset: str) -> str:
    if minutes is None:
        return unset
    return "infinite" if minutes == INFINITE else format_elapsed(minutes * 60)


def _counts(rec: Record) -> tuple[int, int, int]:
    """(allocated, idle, other) nodes: mixed and draining count as allocated, drained and down as other."""
    a = i = o = 0
    for node, use in zip(rec.nodes, rec.uses):
        base = base_state(node, use)
        if base in ("MIXED", "ALLOCATED"):
            a += 1
        elif base == "IDLE" and not is_drained(use):
            i += 1
        else:
            o += 1
    return a, i, o


class Values:
    """The value of each field for a record (named by the table's ``value``); None prints as (null)."""

    def __init__(self, cluster):
        self._cluster = cluster

    def get(self, name: str, rec: Record) -> str | None:
        return getattr(self, name)(rec)

    # partition settings
    def avail(self, rec):
        return {"INACTIVE": "inact"}.get(rec.partition.state, rec.partition.state.lower())

    def max_cpus_per_node(self, rec):
        value = rec.partition.max_cpus_per_node
        return "UNLIMITED" if value is None else str(value)

    def groups(self, rec):
        value = rec.partition.allow_groups
        return "all" if value.upper() == "ALL" else value

    def alloc_nodes(self, rec):
        value = rec.partition.alloc_nodes
        return "all" if value.upper() == "ALL" else value

    def oversubscribe(self, rec):
        return rec.partition.oversubscribe

    def priority_job_factor(self, rec):
        return str(rec.partition.priority_job_factor)

    def priority_tier(self, rec):
        return str(rec.partition.priority_tier)

    def time_limit(self, rec):
        return _limit(rec.partition.max_time, "infinite")

    def default_time(self, rec):
        return _limit(rec.partition.default_time, "n/a")

    def preempt_mode(self, rec):
        return (rec.partition.preempt_mode or self._cluster.config_value("PreemptMode", "OFF")).upper()

    def partition(self, rec):
        return rec.partition.name + ("*" if rec.partition.default else "")

    def partition_name(self, rec):
        return rec.partition.name

    def root_only(self, rec):
        return "yes" if rec.partition.root_only else "no"

    def job_size(self, rec):
        part = rec.partition
        low = max(1, part.min_nodes)
        high = "infinite" if part.max_nodes is None else str(part.max_nodes)
        return str(low) if high == str(low) else f"{low}-{high}"

    def cluster(self, rec):
        return "N/A"

    # counts over the record's nodes
    def node_count(self, rec):
        return str(len(rec.nodes))

    def nodes_ai(self, rec):
        a, i, _ = _counts(rec)
        return f"{a}/{i}"

    def nodes_aiot(self, rec):
        a, i, o = _counts(rec)
        return f"{a}/{i}/{o}/{len(rec.nodes)}"

    def cpus_aiot(self, rec):
        a = i = o = t = 0
        for node, use in zip(rec.nodes, rec.uses):
            busy = min(use.alloc_cpus, node.cpus)
            a, t = a + busy, t + node.cpus
            if base_state(node, use) == "DOWN" or is_drained(use):
                o += node.cpus - busy
            else:
                i += node.cpus - busy
        return f"{a}/{i}/{o}/{t}"

    def alloc_mem(self, rec):
        return str(sum(use.alloc_mem_mb for use in rec.uses))

    def node_list(self, rec):
        return compress_hostlist([n.name for n in rec.nodes])

    # node attributes: the smallest ("2+"), a range, or shared by the record's nodes
    def cpus(self, rec):
        return _minimum([n.cpus for n in rec.nodes])

    def memory(self, rec):
        return _minimum([n.real_memory_mb for n in rec.nodes])

    def tmp_disk(self, rec):
        return _minimum([n.tmp_disk_mb for n in rec.nodes])

    def weight(self, rec):
        return _minimum([n.weight for n in rec.nodes])

    def sockets(self, rec):
        return _minimum([n.sockets for n in rec.nodes])

    def cores(self, rec):
        return _minimum([n.cores_per_socket or 1 for n in rec.nodes])

    def threads(self, rec):
        return _minimum([n.threads_per_core for n in rec.nodes])

    def sct(self, rec):
        return f"{self.sockets(rec)}:{self.cores(rec)}:{self.threads(rec)}"

    def free_mem(self, rec):
        values = [use.free_mem_mb for use in rec.uses]
        if not values:
            return "0"
        return "N/A" if None in values else _range(values, str)

    def cpu_load(self, rec):
        values = [use.cpu_load for use in rec.uses]
        if not values:
            return "0.00"
        return "N/A" if None in values else _range(values, lambda v: f"{v:.2f}")

    def features(self, rec):
        return ",".join(rec.nodes[0].features) or None if rec.nodes else None

    active_features = features

    def gres(self, rec):
        return ",".join(rec.nodes[0].gres) or None if rec.nodes else None

    def gres_used(self, rec):
        if not rec.nodes or not rec.nodes[0].gpus:
            return None

        return gpu_gres(rec.nodes[0], sum(use.alloc_gpus for use in rec.uses))

    def reason(self, rec):
        return (rec.uses[0].reason if rec.uses else None) or "none"

    def reason_time(self, rec):
        stamp = rec.uses[0].reason_time if rec.uses else None
        return "Unknown" if stamp is None else iso_time(stamp)

    def reason_user(self, rec):
        if not rec.uses:
            return "root"  # an empty record's user id is 0, as in SLURM
        return rec.uses[0].reason_user or "Unknown"

    def reason_user_long(self, rec):
        if not rec.uses:
            return "root(0)"
        use = rec.uses[0]
        return f"{use.reason_user}({use.reason_uid})" if use.reason_user else "Unknown"

    def state_compact(self, rec):
        if not rec.nodes:
            return "n/a"
        node, use = rec.nodes[0], rec.uses[0]
        if is_drained(use):
            return "drng" if base_state(node, use) in ("MIXED", "ALLOCATED") else "drain"
        return COMPACT[base_state(node, use)]

    def state_long(self, rec):
        if not rec.nodes:
            return "n/a"
        node, use = rec.nodes[0], rec.uses[0]
        if is_drained(use):
            return "draining" if base_state(node, use) in ("MIXED", "ALLOCATED") else "drained"
        return LONG[base_state(node, use)]

    def state_complete(self, rec):
        if not rec.nodes:
            return "n/a"
        node, use = rec.nodes[0], rec.uses[0]
        if is_drained(use) and base_state(node, use) == "MIXED":
            return "allocated+drain"  # sinfo's word for a partly used draining node (scontrol: MIXED+DRAIN)
        return slurm_state(node, use).lower()

    def version(self, rec):
        return rec.uses[0].version if rec.uses else None

    def comment(self, rec):
        return None

    extra = comment

    def hostnames(self, rec):
        return ",".join(n.hostname or n.name for n in rec.nodes)

    def addresses(self, rec):
        return ",".join(n.addr or n.name for n in rec.nodes)

    def port(self, rec):
        if not rec.nodes:
            return "0"
        return str(rec.nodes[0].port or self._cluster.config_value("SlurmdPort", "6818"))


def _state_rank(rec: Record) -> int:
    if not rec.nodes:
        return 0
    node, use = rec.nodes[0], rec.uses[0]
    return STATE_RANK[base_state(node, use)] + (DRAIN_FLAG if is_drained(use) else 0)


# ------------------------------------------------------------------ building the records


def _records(args: SinfoArgs, specs: list[Spec], cluster, node_states: dict, values: Values) -> list[Record]:
    if args.partitions is not None:
        parts = [p for p in cluster.partitions if p.name in args.partitions]
    else:
        parts = [p for p in cluster.partitions if args.show_all or not p.hidden]
    wanted_nodes = None
    if args.nodes is not None:
        try:
            wanted_nodes = set(expand_hostlist(args.nodes))
        except InvalidValue:
            wanted_nodes = set()
    state_ok = _state_matcher(args.states) if args.states else None
    by_name = {n.name: n for n in cluster.nodes}

    def passes(node) -> bool:
        use = node_states.get(node.name, IDLE_NODE)
        if args.dead:  # every sflow node answers
            return False
        if wanted_nodes is not None and node.name not in wanted_nodes:
            return False
        if args.reasons and not (is_drained(use) or base_state(node, use) == "DOWN"):
            return False
        return state_ok is None or state_ok(node, use)

    groups = {s.field["group"] for s in specs}
    keyed = [s.field for s in specs if s.field["group"] in ("key", "node") or
             (args.exact and s.field["group"] == "min")]

    def key_of(node, use) -> tuple:
        single = Record(None, [node], [use])
        out = []
        for row in keyed:
            if row["group"] == "node":
                out.append(node.name)
            else:
                out.append(values.get(row["value"], single))
        return tuple(out)

    def group(part, names) -> list[Record]:
        records: dict[tuple, Record] = {}
        for name in names:
            node = by_name[name]
            use = node_states.get(name, IDLE_NODE)
            key = (name,) if args.node_mode else key_of(node, use)
            rec = records.setdefault(key, Record(part))
            rec.nodes.append(node)
            rec.uses.append(use)
        return list(records.values())

    out: list[Record] = []
    if args.node_mode or "partition" in groups:
        for part in parts:
            members = [n.name for n in cluster.nodes if n.name in part.nodes and passes(n)]
            found = group(part, members)
            if not found and not args.node_mode:
                found = [Record(part)]  # shown as "0 n/a"
            out += found
    else:
        shown = {n for p in parts for n in p.nodes}
        out = group(None, [n.name for n in cluster.nodes if n.name in shown and passes(n)])
    return out


def _sort(records: list[Record], args: SinfoArgs, cluster, values: Values) -> list[Record]:
    spec = args.sort or ("N" if args.node_mode else "#P,-t")
    order = {p.name: i for i, p in enumerate(cluster.partitions)}
    keys = []
    for item in spec.split(","):
        match = re.match(r"([+-]?)(#?)(\w)", item.strip())
        if match:
            keys.append((match.group(1) == "-", match.group(2) == "#", match.group(3)))
    for descending, configured, letter in reversed(keys):
        def key(rec, letter=letter, configured=configured):
            if letter in "PR":
                if rec.partition is None:
                    return 0
                return order[rec.partition.name] if configured else rec.partition.name
            if letter in "tT":
                return _state_rank(rec)
            if letter == "N":
                return _natural(rec.nodes[0].name) if rec.nodes else ("", -1, "")
            row = _by_letter().get(letter)
            if row is None or (row["group"] == "partition" and rec.partition is None):
                return 0
            text = values.get(row["value"], rec) or ""
            number = re.match(r"\d+(?:\.\d+)?", text)  # "22.05.8" sorts by 22.05
            return (0, float(number.group()), text) if number else (1, 0.0, text)
        records = sorted(records, key=key, reverse=descending)
    return records


# ------------------------------------------------------------------ printing


def _cell(value: str | None, spec: Spec, width: int | None, header: bool) -> str:
    if value is None:
        if width and not spec.right and width < 6:
            return " " * width  # a null string cut short prints nothing, padded
        value = "(null)"
    if width is None:
        return value
    cut = not (header and spec.right and spec.field.get("letter") in ("n", "N", "o"))
    if cut and len(value) > width:
        if not header and spec.field["value"] == "partition" and value.endswith("*"):
            value = value[:width - 1] + "*"  # the default partition keeps its star
        else:
            value = value[:width]
    return value.rjust(width) if spec.right else value.ljust(width)


def render(args: SinfoArgs, cluster, node_states: dict, now: float | None = None) -> tuple[str, str, int]:
    """One sinfo report for parsed arguments: (stdout, stderr, exit code)."""
    now = time.time() if now is None else now
    if args.format is not None and args.long:
        return "", ("sinfo: fatal: Options -o(--format) and -l(--long) are mutually exclusive. "
                    "Please remove one and retry.\n"), 1
    if args.clusters is not None and args.clusters.lower() not in (cluster.name, "all"):
        names = args.clusters
        return "", (f"sinfo: error: No cluster '{names}' known by database.\n"
                    f"sinfo: error: '{names}' can't be reached now, or it is an invalid entry for --cluster.  "
                    "Use 'sacctmgr list clusters' to see available clusters.\n"), 1
    head = f"CLUSTER: {cluster.name}\n" if args.clusters is not None else ""
    if args.reservations:
        return head + "No reservations in the system\n", "", 0
    if args.format is not None:
        fmt = parse_long_format(args.format) if args.long_format else parse_format(args.format)
    else:
        fmt = parse_format(FORMATS[_default_format_name(args)], dynamic=True)
    values = Values(cluster)
    records = _sort(_records(args, fmt.specs, cluster, node_states, values), args, cluster, values)
    table = [[values.get(s.field["value"], rec) for s in fmt.specs] for rec in records]
    widths = []
    for column, spec in enumerate(fmt.specs):
        if spec.width == "#":
            widths.append(max([DYNAMIC_MIN] + [len(row[column] or "") for row in table]))
        else:
            widths.append(spec.width)
    lines = []
    if not args.noheader:
        if args.long or args.iterate or args.verbose:
            lines.append(time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now)))  # a zero-padded day
        lines.append(fmt.prefix + "".join(_cell(s.field["header"], s, w, True) + s.suffix
                                          for s, w in zip(fmt.specs, widths)))
    for row in table:
        lines.append(fmt.prefix + "".join(_cell(v, s, w, False) + s.suffix
                                          for v, s, w in zip(row, fmt.specs, widths)))
    return head + "".join(line + "\n" for line in lines), "".join(fmt.errors), 0


def parse_interval(argv: list[str], env=None) -> int:
    """The --iterate period in seconds (0: report once); a bad command line reports once, its error."""
    try:
        return parse_args(argv, env).iterate or 0
    except (UsageError, SlurmError):
        return 0


def sinfo_main(argv: list[str], cluster, node_states: dict, now: float | None = None,
               env=None, dump: bool = True) -> tuple[str, str, int]:
    """``sinfo ARGV`` over the cluster and each node's state: (stdout, stderr, exit code);
    ``dump``: print -v's dump of the options (an --iterate loop prints it once)."""
    try:
        args = parse_args(argv, env)
        if args.action == "version":
            return VERSION_LINE + "\n", "", 0
        if args.action in ("usage", "help"):
            return recorded("sinfo", args.action) or USAGE, "", 0
        out, err, code = render(args, cluster, node_states, now)
        return (dump_options(args) if args.verbose and dump else "") + out, err, code
    except UsageError as err:
        return "", render_error("sinfo", err) + "\n", err.exit_code
    except SlurmError as err:
        return "", render_error("sinfo", err) + "\n", err.exit_code
