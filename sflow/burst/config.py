"""What an admin installs to burst a SLURM cluster onto Mithril: data in, text out.

``parse_partition`` and ``keyed`` read the command line's words, ``resolve`` checks
them against a ``Catalog`` (the market, fetched by someone else) and answers one
``BurstPartition`` per partition; ``slurm_conf``, ``gres_conf`` and ``burst_toml``
render them. Every refusal is a ``SlurmError`` naming what the catalog offers.
Why each setting is what it is: docs/burst.md, "Configure".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from typing import Iterable, Mapping

from sflow.errors import SlurmError
from sflow.mithril.catalog import Catalog, InstanceType, Market
from sflow.mithril.money import dollars, per_gpu
from sflow.mithril.translate import PlanConfig, default_limit, parse_limit_price, price_text

DEFAULT_NODES = 4
# Provisioning on Mithril: a spot bid waits for the auction's next clearing, then the
# instance boots (minutes for an 8-GPU machine), installs sflow and starts slurmd. Half an
# hour covers that with room; a node still missing then is not coming at this limit price.
# It matches the dead-man switch's boot window (docs/mithril.md), which gives the bid back.
RESUME_TIMEOUT = 1800
# An idle node is kept this long for the next job: getting it back costs a whole
# ResumeTimeout-sized wait, keeping it costs ten minutes of its price.
SUSPEND_TIME = 600
# Deleting the bid and seeing its instances gone; only then may the name be resumed again.
SUSPEND_TIMEOUT = 300
PROGRAMS = ("sflow-burst-resume", "sflow-burst-suspend", "sflow-burst-resume-fail")
# The instance's kernel and firmware take part of its nominal memory, and the OS, slurmd
# and sflow's agent need some of the rest; a node registering with less than RealMemory
# is refused (for CLOUD nodes below 90% of it: slurm.conf(5), node_reg_mem_percent).
MEMORY_MARGIN = 0.05
MEMORY_MARGIN_MIN_MB = 2048

_PARTITION_NAME = re.compile(r"[A-Za-z0-9_-]+")
_NODE_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


@dataclass(frozen=True)
class PartitionSpec:
    """One partition as the admin wrote it, before the catalog is asked."""

    name: str
    instance_type: str  # a name, an id or a shorthand (8xh100, h100)
    nodes: int = DEFAULT_NODES
    region: str | None = None
    limit_price: str | None = None  # as #SFLOW --limit-price takes it
    prefix: str | None = None


@dataclass(frozen=True)
class BurstPartition:
    """One partition checked against the market."""

    name: str
    prefix: str
    nodes: int
    kind: InstanceType
    market: Market
    limit_cents: int  # per instance-hour
    limit_given: str | None  # the admin's text; None: the default from the market

    @property
    def hostlist(self) -> str:
        return f"{self.prefix}-1" if self.nodes == 1 else f"{self.prefix}-[1-{self.nodes}]"

    @property
    def real_memory_mb(self) -> int:
        return real_memory_mb(self.kind)


@dataclass(frozen=True)
class Timing:
    resume_timeout: int = RESUME_TIMEOUT
    suspend_time: int = SUSPEND_TIME
    suspend_timeout: int = SUSPEND_TIMEOUT


@dataclass(frozen=True)
class Programs:
    """The absolute paths of the power-saving programs slurmctld runs."""

    resume: str
    suspend: str
    resume_fail: str


@dataclass(frozen=True)
class Service:
    """Where the burst service finds Mithril; never the key itself."""

    api_url: str
    project: str | None
    key_file: str


def real_memory_mb(kind: InstanceType) -> int:
    return kind.memory_mb - max(int(kind.memory_mb * MEMORY_MARGIN), MEMORY_MARGIN_MIN_MB)


def parse_partition(text: str) -> PartitionSpec:
    """``NAME=TYPE[:COUNT]``: partition NAME of COUNT nodes of instance type TYPE."""
    name, equals, rest = text.partition("=")
    kind, colon, count = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not equals or not name or not kind:
        raise SlurmError(f"--partition {text}: write NAME=TYPE[:COUNT] (gpu=8xh100:8)")
    if not _PARTITION_NAME.fullmatch(name):
        raise SlurmError(f"--partition {text}: a partition name is letters, digits, '-' and '_'")
    nodes = DEFAULT_NODES
    if colon:
        if not count.isdigit() or int(count) < 1:
            raise SlurmError(f"--partition {text}: the node count must be a whole number of 1 or more")
        nodes = int(count)
    return PartitionSpec(name, kind, nodes)


def keyed(values: Iterable[str], names: list[str], option: str) -> dict[str, str]:
    """``[NAME=]VALUE`` words per partition: ``NAME=VALUE`` for one, a bare VALUE for every other.

    Neither a price, a region nor a node prefix holds '=', so it always names a partition.
    """
    given: dict[str, str] = {}
    everywhere: str | None = None
    for value in values:
        name, equals, rest = value.partition("=")
        if not equals:
            everywhere = value
            continue
        if name not in names:
            raise SlurmError(f"{option} {value}: no partition {name} (--partition gives {', '.join(names)})")
        given[name] = rest
    return {name: given.get(name, everywhere) for name in names if name in given or everywhere is not None}


def with_options(specs: list[PartitionSpec], regions: Iterable[str] = (), prices: Iterable[str] = (),
                 prefixes: Iterable[str] = ()) -> list[PartitionSpec]:
    """The specs with the per-partition options (``keyed``) applied."""
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SlurmError(f"--partition {duplicated[0]} is given twice")
    region = keyed(regions, names, "--region")
    price = keyed(prices, names, "--limit-price")
    prefix = keyed(prefixes, names, "--prefix")
    return [PartitionSpec(s.name, s.instance_type, s.nodes, region.get(s.name), price.get(s.name),
                          prefix.get(s.name)) for s in specs]


def _offered(catalog: Catalog) -> str:
    return "; ".join(f"{t.name} ({_describe(t)})" for t in catalog.instance_types) or "nothing"


def _describe(kind: InstanceType) -> str:
    gpus = f"{kind.gpus} x {kind.gpu_type.upper()}, " if kind.gpus and kind.gpu_type else ""
    return f"{gpus}{kind.cpus} CPUs, {kind.memory_gb} GB"


def _spot_markets(catalog: Catalog, kind: InstanceType) -> list[Market]:
    return [m for m in catalog.markets_of(kind.id) if m.on_spot]


def _choose_region(spec: PartitionSpec, kind: InstanceType, catalog: Catalog) -> Market:
    markets = _spot_markets(catalog, kind)
    if not markets:
        raise SlurmError(f"partition {spec.name}: {kind.name} is not sold on spot in any region now")
    if spec.region is None:
        # The cheapest region now, then the one with more capacity: a default an admin can read.
        return min(markets, key=lambda m: (m.spot_price_cents if m.spot_price_cents is not None else 1 << 62,
                                           -(m.capacity or 0), m.region))
    found = next((m for m in markets if m.region == spec.region), None)
    if found is None:
        regions = ", ".join(sorted(m.region for m in markets))
        raise SlurmError(f"partition {spec.name}: {kind.name} is not offered in {spec.region}; "
                         f"it is offered in {regions}")
    return found


def _limit(spec: PartitionSpec, kind: InstanceType, market: Market, config: PlanConfig) -> tuple[int, list[str]]:
    """(limit cents per instance-hour, warnings)."""
    where = f"partition {spec.name}: {kind.name} in {market.region}"
    warnings = []
    if spec.limit_price is not None:
        limit = parse_limit_price(spec.limit_price, kind.gpus, kind.name)
        if market.spot_price_cents is not None and market.spot_price_cents > limit:
            warnings.append(f"{where} costs {price_text(market.spot_price_cents, kind.gpus)} now, above the "
                            f"limit price: its nodes wait until the price falls to {dollars(limit)}")
    else:
        # The same default as a job's bid (docs/mithril.md): the price now with headroom, capped.
        base = market.spot_price_cents if market.spot_price_cents is not None else market.minimum_price_cents
        if base is None:
            raise SlurmError(f"{where} has no current price; give --limit-price")
        chosen = default_limit(base, kind.gpus, config)
        if chosen is None:
            raise SlurmError(f"{where} costs {price_text(base, kind.gpus)} now, above the cap of "
                             f"{dollars(config.cap_cents_per_gpu)}/GPU-hr; give --limit-price")
        limit = chosen[0]
    if market.minimum_price_cents is not None and limit < market.minimum_price_cents:
        raise SlurmError(f"{where}: the limit price {price_text(limit, kind.gpus)} is below Mithril's minimum "
                         f"of {price_text(market.minimum_price_cents, kind.gpus)}")
    return limit, warnings


def resolve(specs: list[PartitionSpec], catalog: Catalog,
            config: "PlanConfig | Mapping | None" = None) -> tuple[list[BurstPartition], list[str]]:
    """The partitions checked against the market, and warnings for the admin."""
    plan_config = PlanConfig.of(config)
    parts, warnings = [], []
    for spec in specs:
        kind = catalog.instance_type(spec.instance_type)
        if kind is None:
            raise SlurmError(f"partition {spec.name}: no Mithril instance type {spec.instance_type}; "
                             f"the catalog offers {_offered(catalog)}")
        if not kind.gpus:
            raise SlurmError(f"partition {spec.name}: {kind.name} has no GPUs; burst partitions are GPU nodes")
        market = _choose_region(spec, kind, catalog)
        limit, said = _limit(spec, kind, market, plan_config)
        prefix = spec.prefix or f"mithril-{spec.name.lower().replace('_', '-')}"
        if not _NODE_PREFIX.fullmatch(prefix):
            raise SlurmError(f"partition {spec.name}: node prefix {prefix}: a node name starts with a letter, "
                             "then letters, digits and '-'")
        parts.append(BurstPartition(spec.name, prefix, spec.nodes, kind, market, limit, spec.limit_price))
        warnings += said
    prefixes = [p.prefix for p in parts]
    twice = sorted({p for p in prefixes if prefixes.count(p) > 1})
    if twice:
        raise SlurmError(f"two partitions name their nodes {twice[0]}-N; give each its own --prefix")
    return parts, warnings


# ------------------------------------------------------------------ rendering


def slurm_conf(parts: list[BurstPartition], timing: Timing, programs: Programs) -> str:
    """The lines to add to slurm.conf, each group saying why."""
    lines = [
        "# Mithril burst partitions, from flow burst config (docs/burst.md).",
        "# Merge by hand with lines your slurm.conf already has: a second GresTypes,",
        "# PrivateData or SlurmctldParameters line replaces the first.",
        "GresTypes=gpu",
        "# Powered-down cloud nodes are hidden from sinfo and scontrol without this.",
        "PrivateData=cloud",
        "# slurmctld runs these as SlurmUser, with the nodes as a hostlist.",
        f"ResumeProgram={programs.resume}",
        f"SuspendProgram={programs.suspend}",
        f"ResumeFailProgram={programs.resume_fail}",
        "# A spot bid waits for the auction's next clearing, then the instance boots (minutes",
        "# for 8 GPUs), installs sflow and starts slurmd: a node not registered by then is not",
        "# coming at its limit price, and SLURM requeues its job.",
        f"ResumeTimeout={timing.resume_timeout}",
        "# Deleting a bid, until its instances are gone and the node may be resumed again.",
        f"SuspendTimeout={timing.suspend_timeout}",
        "# No rate limit: there is no power surge to spread, and one call per job keeps its",
        "# nodes in one all-or-nothing bid.",
        "ResumeRate=0",
        "SuspendRate=0",
        "# Cloud nodes learn each other's addresses late: slurmctld talks to each directly.",
        "TreeWidth=65533",
        "# Instances fetch the configuration from slurmctld, register with their own address,",
        "# and a released node is idle again, ready to be resumed for the next job.",
        "SlurmctldParameters=enable_configless,cloud_reg_addrs,idle_on_node_suspend",
        "# SuspendTime is set on the partitions below, not here: a cluster-wide value would",
        "# power down the cluster's own nodes too.",
    ]
    for part in parts:
        kind, market = part.kind, part.market
        margin = kind.memory_mb - part.real_memory_mb
        lines += [
            "",
            f"# {part.name}: {part.nodes} x {kind.name} ({_describe(kind)}) in {market.region}, "
            f"spot limit {price_text(part.limit_cents, kind.gpus)}.",
            f"# RealMemory leaves {margin} MB of the {kind.memory_mb} MB to the kernel and the OS.",
            f"NodeName={part.hostlist} State=CLOUD CPUs={kind.cpus} RealMemory={part.real_memory_mb} "
            f"Gres=gpu:{kind.gpu_type}:{kind.gpus} Features={kind.name},{market.region}",
            "# An idle node is given back after SuspendTime seconds: getting it again takes a",
            "# whole provisioning, keeping it costs its price meanwhile.",
            f"PartitionName={part.name} Nodes={part.hostlist} Default=NO State=UP "
            f"SuspendTime={timing.suspend_time} ResumeTimeout={timing.resume_timeout} "
            f"SuspendTimeout={timing.suspend_timeout}",
        ]
    return "\n".join(lines) + "\n"


def _gpu_files(count: int) -> str:
    return "/dev/nvidia0" if count == 1 else f"/dev/nvidia[0-{count - 1}]"


def gres_conf(parts: list[BurstPartition]) -> str:
    lines = ["# Mithril burst nodes' GPUs, from flow burst config: add to gres.conf (configless",
             "# slurmd fetches it from slurmctld with slurm.conf)."]
    lines += [f"NodeName={p.hostlist} Name=gpu Type={p.kind.gpu_type} File={_gpu_files(p.kind.gpus)}" for p in parts]
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    """A TOML value; JSON's string escapes are TOML's basic-string escapes."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def burst_toml(parts: list[BurstPartition], service: Service) -> str:
    """The burst service's configuration (/etc/sflow/burst.toml): where Mithril is and what to bid."""
    lines = [
        "# sflow's burst service, from flow burst config: save as /etc/sflow/burst.toml,",
        "# readable by SlurmUser (it holds no secret).",
        "[burst]",
        f"api_url = {_toml(service.api_url)}",
    ]
    if service.project is not None:
        lines.append(f"project = {_toml(service.project)}")
    else:
        lines.append("# project: the account's first project (set project = \"NAME\" to choose)")
    lines += [
        "# The API key is not here: it is [mithril] api_key in this file (flow init writes it,",
        "# mode 0600), which must belong to SlurmUser; MITHRIL_API_KEY overrides it.",
        f"api_key_file = {_toml(service.key_file)}",
    ]
    for part in parts:
        kind = part.kind
        given = f"; given as {part.limit_given}" if part.limit_given else "; the current price with headroom"
        lines += [
            "",
            f"[burst.partitions.{part.name}]",
            f"nodes = {_toml(part.hostlist)}",
            f"node_prefix = {_toml(part.prefix)}",
            f"node_count = {part.nodes}",
            f"instance_type = {_toml(kind.id)}",
            f"instance_type_name = {_toml(kind.name)}",
            f"region = {_toml(part.market.region)}",
            f"# {dollars(per_gpu(part.limit_cents, kind.gpus))}/GPU-hr{given}",
            f"limit_price = {_toml(dollars(part.limit_cents) + '/instance-hr')}",
        ]
    return "\n".join(lines) + "\n"


def program_paths() -> Programs:
    """The power-saving programs beside this interpreter's scripts, else on PATH, else where they
    would be installed: slurmctld needs absolute paths."""
    scripts = [sysconfig.get_path("scripts"), os.path.dirname(os.path.abspath(sys.executable))]

    def where(name: str) -> str:
        for directory in scripts:
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
        found = shutil.which(name)
        return os.path.abspath(found) if found else os.path.join(scripts[0], name)

    return Programs(*(where(name) for name in PROGRAMS))


__all__ = ["BurstPartition", "PartitionSpec", "Programs", "Service", "Timing", "burst_toml", "gres_conf",
           "keyed", "parse_partition", "program_paths", "real_memory_mb", "resolve", "slurm_conf", "with_options"]
