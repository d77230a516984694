"""From a SLURM job request to a Mithril allocation plan: data in, data out.

``plan(request, catalog, config)`` reads a ``JobRequest`` (SLURM's vocabulary
plus the ``#SFLOW`` directives in ``request.cloud``) and a ``Catalog`` (the
market, fetched by someone else) and answers a ``Plan``: which instance type,
how many, where, spot or reserved, at what limit price, and what the job's time
limit may cost. Whatever the market cannot satisfy is a ``SlurmError`` saying
why and what would work. The rules are written up for users in docs/mithril.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Mapping

from sflow.errors import SlurmError
from sflow.mithril.catalog import Catalog, InstanceType, Market
from sflow.mithril.money import (
    ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, dollars, parse_amount, parse_dollars, per_gpu, times,
)
from sflow.records import INFINITE

MIN_RESERVATION_HOURS = 3  # Mithril reserves 3 hours to 2 weeks, in whole hours
MAX_RESERVATION_HOURS = 14 * 24

Capacity = Literal["spot", "reserved"]


# ------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class PlanConfig:
    """The site's choices; ``PlanConfig.of`` also takes a plain mapping with these keys."""

    # A word in --constraint, --partition or a GPU type (--gpus=a100-80gb:8) -> the catalog's GPU type.
    # The catalog's own GPU types ("h100") are always understood.
    gpu_types: Mapping[str, str] = field(default_factory=dict)
    # The default limit price is the current spot price times this: room for the price to move
    # without preemption, while the second-price auction still bills only the clearing price.
    headroom: Decimal = Decimal("1.5")
    # The default limit never goes above this per GPU-hour, and a market already above it is
    # refused (None: no cap). An explicit --limit-price is the user's own and is not capped.
    max_price_per_gpu_hour: str | None = "$4.00"
    # Partitions whose jobs use reserved capacity rather than spot.
    reserved_partitions: frozenset[str] = frozenset()

    @classmethod
    def of(cls, value: "PlanConfig | Mapping[str, Any] | None") -> "PlanConfig":
        if value is None:
            return cls()
        if isinstance(value, PlanConfig):
            return value
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise SlurmError(f"unknown Mithril plan setting: {', '.join(sorted(unknown))}")
        fields = dict(value)
        if "headroom" in fields:
            try:
                fields["headroom"] = Decimal(str(fields["headroom"]))
            except InvalidOperation:
                fields["headroom"] = Decimal(-1)
            if not fields["headroom"].is_finite() or fields["headroom"] <= 0:
                raise SlurmError(f"Mithril headroom {value['headroom']!r} is not a positive number")
        if "reserved_partitions" in fields:
            fields["reserved_partitions"] = frozenset(fields["reserved_partitions"])
        return cls(**fields)

    @property
    def cap_cents_per_gpu(self) -> int | None:
        if self.max_price_per_gpu_hour is None:
            return None
        try:
            return parse_dollars(self.max_price_per_gpu_hour, rounding=ROUND_FLOOR)
        except ValueError:
            raise SlurmError(f"Mithril max_price_per_gpu_hour {self.max_price_per_gpu_hour!r} "
                             "is not a dollar amount") from None


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Plan:
    instance_type_id: str
    instance_type: str
    instance_quantity: int
    region: str
    capacity: Capacity
    gpus_per_instance: int
    gpu_type: str | None
    cpus_per_instance: int
    memory_gb_per_instance: int
    limit_price_cents: int | None  # per instance-hour; None: a reservation with no price known
    limit_source: Literal["given", "default", "capped", "quote"] | None
    spot_price_cents: int | None  # current, per instance-hour
    minimum_price_cents: int | None
    time_limit_minutes: int | None  # None: no limit (UNLIMITED)
    max_cost_cents: int | None  # spot: the limit price over the time limit, for every instance
    current_cost_cents: int | None  # spot: the same at the current price
    reserved_price_cents: int | None = None  # reserved: the unit price per instance-hour
    reservation_hours: int | None = None
    reservation_start: float | None = None  # epoch seconds; None: as soon as it is placed
    reservation_cost_cents: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def limit_price(self) -> str | None:
        """The limit as Mithril's bids write it (``"$24.00"``)."""
        return dollars(self.limit_price_cents) if self.limit_price_cents is not None else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        data["limit_price"] = self.limit_price
        data["gpus_total"] = self.gpus_per_instance * self.instance_quantity
        for name in ("limit_price_cents", "spot_price_cents", "reserved_price_cents"):
            value = data[name]
            base = name[: -len("_cents")]
            data[f"{base}_per_gpu_hour_cents"] = (
                per_gpu(value, self.gpus_per_instance) if value is not None and self.gpus_per_instance else None)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Plan":
        """A plan kept as ``asdict`` or ``to_dict`` made it (the derived fields are made again)."""
        names = cls.__dataclass_fields__
        fields = {name: value for name, value in data.items() if name in names}
        fields["notes"] = tuple(fields.get("notes") or ())
        return cls(**fields)


# ------------------------------------------------------------------ what each node must hold


@dataclass(frozen=True)
class Demand:
    gpus: int
    cpus: int
    memory_mb: int  # 0: none asked (--mem=0, all of it, also fits anything)
    tasks: int  # per node


def demand(request, nodes: int) -> Demand:
    """Per node, for ``nodes`` nodes, as SLURM counts it."""
    if request.ntasks_per_node:
        tasks = request.ntasks_per_node
    elif request.ntasks_given:
        tasks = math.ceil(request.ntasks / nodes)
    else:
        tasks = 1  # sbatch's default: one task per node
    cpus = tasks * max(1, request.cpus_per_task)
    gres_gpus = sum(g.count for g in request.gres if g.name == "gpu")
    gpus = max(
        request.gpus_per_node or 0,
        gres_gpus,
        (request.gpus_per_task or 0) * tasks,
        math.ceil(request.gpus / nodes) if request.gpus else 0,
    )
    memory = max(
        request.mem_per_node_mb or 0,
        (request.mem_per_cpu_mb or 0) * cpus,
        (request.mem_per_gpu_mb or 0) * gpus,
    )
    return Demand(gpus, cpus, memory, tasks)


def _fits(kind: InstanceType, need: Demand) -> bool:
    return need.gpus <= kind.gpus and need.cpus <= kind.cpus and need.memory_mb <= kind.memory_mb


def node_range(request) -> tuple[int, int]:
    """The node counts the job accepts: -N as given, else from 1 up to what tasks or GPUs could spread over."""
    low = max(1, request.min_nodes)
    if request.nodes_given:
        return low, max(low, request.max_nodes or low)
    if request.ntasks_given and request.ntasks_per_node:
        low = max(low, math.ceil(request.ntasks / request.ntasks_per_node))
    spread = max(request.ntasks if request.ntasks_given else 1, request.gpus or 0)
    return low, max(low, spread)


def _fewest_nodes(kind: InstanceType, request, low: int, high: int) -> int | None:
    # Per-node demand only falls as nodes are added, so the first fit is the fewest.
    for nodes in range(low, high + 1):
        if _fits(kind, demand(request, nodes)):
            return nodes
    return None


# ------------------------------------------------------------------ GPU types


def _gpu_type_words(request, catalog: Catalog, config: PlanConfig) -> frozenset[str] | None:
    """The GPU types the job accepts (None: any), from every place SLURM lets a script name one."""
    offered = set(catalog.gpu_types())
    table = {str(k).lower(): str(v).lower() for k, v in config.gpu_types.items()}

    def resolve(word: str) -> str | None:
        word = word.strip().lower()
        return table.get(word) or (word if word in offered else None)

    def named(word: str, where: str) -> str:
        found = resolve(word)
        if found is None:
            raise SlurmError(f"no Mithril instance type has {word} GPUs ({where}); GPU types offered: "
                             f"{_known_words(offered, table)}")
        return found

    asked: list[tuple[str, frozenset[str]]] = []
    if request.gpu_type:
        asked.append(("--gpus", frozenset({named(request.gpu_type, "--gpus")})))
    for gres in request.gres:
        if gres.name != "gpu":
            raise SlurmError(f"Invalid generic resource (gres) specification: {gres.name}: "
                             "Mithril instances offer only gpu")
        if gres.type:
            asked.append(("--gres", frozenset({named(gres.type, "--gres")})))
    if request.constraint:
        asked += [("--constraint", group) for group in _constraint_groups(request.constraint, named)]
    if request.partition:
        by_partition = {resolve(name) for name in request.partition.split(",")}
        if None not in by_partition:  # a partition that names no GPU type leaves the choice open
            asked.append(("--partition", frozenset(by_partition)))

    allowed: frozenset[str] | None = None
    sources: list[str] = []
    for where, types in asked:
        if allowed is not None and not allowed & types:
            raise SlurmError(f"the job asks for {_or(allowed)} GPUs ({', '.join(sources)}) and {_or(types)} GPUs "
                             f"({where}); ask for one GPU type")
        allowed = types if allowed is None else allowed & types
        sources += [where] if where not in sources else []
    return allowed


def _constraint_groups(text: str, named) -> list[frozenset[str]]:
    """``a|b`` is one group (any of); ``a&b`` and ``a,b`` are one group per word (all of)."""
    if "|" in text:
        return [frozenset(named(word, "--constraint") for word in text.split("|") if word.strip())]
    words = [w for w in text.replace(",", "&").split("&") if w.strip()]
    return [frozenset({named(word.split("*")[0], "--constraint")}) for word in words]


def _known_words(offered: set[str], table: Mapping[str, str]) -> str:
    words = sorted(offered | {k for k, v in table.items() if v in offered})
    return ", ".join(words) if words else "none"


def _or(types: frozenset[str] | None) -> str:
    return " or ".join(sorted(types or ()))


# ------------------------------------------------------------------ the instance type


def _offered(catalog: Catalog, kind: InstanceType, capacity: Capacity, region: str | None) -> list[Market]:
    markets = [m for m in catalog.markets_of(kind.id) if capacity == "reserved" or m.on_spot]
    return [m for m in markets if region is None or m.region == region]


def _rank_price(kind: InstanceType, markets: list[Market], capacity: Capacity) -> int:
    prices = [m.reserved_price_cents if capacity == "reserved" else m.spot_price_cents for m in markets]
    known = [p for p in prices if p is not None]
    if known:
        return min(known)
    return kind.list_price_cents if kind.list_price_cents is not None else 1 << 62  # unknown: last


def _choose_type(request, catalog: Catalog, config: PlanConfig, capacity: Capacity) -> tuple[InstanceType, int]:
    low, high = node_range(request)
    region = request.cloud.region
    if request.cloud.instance_type:
        kind = catalog.instance_type(request.cloud.instance_type)
        if kind is None:
            names = ", ".join(sorted(t.name for t in catalog.instance_types)) or "none"
            raise SlurmError(f"no Mithril instance type is named {request.cloud.instance_type}; "
                             f"instance types: {names}")
        candidates = [kind]  # the named type overrides the GPU type and the choice, not the counts
    else:
        allowed = _gpu_type_words(request, catalog, config)
        candidates = [t for t in catalog.instance_types if allowed is None or t.gpu_type in allowed]
        if not candidates:
            offered = ", ".join(catalog.gpu_types()) or "none"
            raise SlurmError(f"no Mithril instance type has {_or(allowed)} GPUs; GPU types offered: {offered}")

    fitting = [(nodes, t) for t in candidates if (nodes := _fewest_nodes(t, request, low, high)) is not None]
    if not fitting:
        raise _nothing_fits(request, candidates, demand(request, high), high, bool(request.cloud.instance_type),
                            spread=high > low)

    asks_gpus = demand(request, low).gpus > 0

    def rank(entry):
        nodes, kind, markets = entry
        price = _rank_price(kind, markets, capacity)
        if asks_gpus:
            # Fewest nodes (SLURM packs a job onto as few nodes as hold it), then the smallest
            # instance that holds a node's share (fewest GPUs), then the cheapest.
            return (nodes, kind.gpus, price, kind.name)
        # Without GPUs only the bill matters: a GPU instance is never worth it for its CPUs alone.
        return (nodes * price, nodes, kind.gpus, kind.name)

    anywhere = sorted(((n, t, _offered(catalog, t, capacity, None)) for n, t in fitting), key=rank)
    available = [(n, t, [m for m in markets if region is None or m.region == region])
                 for n, t, markets in anywhere]
    available = [entry for entry in available if entry[2]]
    if not available:
        raise _not_offered(anywhere, capacity, region)
    nodes, kind, _ = min(available, key=rank)
    return kind, nodes


def _nothing_fits(request, candidates: list[InstanceType], need: Demand, nodes: int, named: bool,
                  spread: bool) -> SlurmError:
    """Why no candidate holds a node's share, and what would: GPUs, then CPUs, then memory.

    ``need`` is the share at the most nodes the job accepts (the smallest share it can have).
    """
    gpu_word = f"{_or(frozenset({t.gpu_type for t in candidates if t.gpu_type}))} GPUs" if request.gpu_type \
        or any(g.type for g in request.gres) else "GPUs"
    if need.gpus > max(t.gpus for t in candidates):
        biggest = max(candidates, key=lambda t: (t.gpus, t.name))
        if biggest.gpus == 0:
            if named:
                return SlurmError(f"instance type {biggest.name} has no GPUs, and the job asks for GPUs; "
                                  "name a GPU instance type")
            return SlurmError("no Mithril instance type has GPUs, and the job asks for GPUs")
        total = need.gpus * nodes
        more = math.ceil(total / biggest.gpus)
        head = (f"instance type {biggest.name} has {_count(biggest.gpus, 'GPU')}, not {need.gpus} per node"
                if named else f"no Mithril instance type has {need.gpus} {gpu_word} per node; largest is "
                f"{biggest.name} ({biggest.gpus} GPUs)")
        return SlurmError(f"{head}; use --nodes={more} --gpus-per-node={biggest.gpus}")

    with_gpus = [t for t in candidates if t.gpus >= need.gpus]
    # A share of GPUs spread over a node count the user never chose would only confuse.
    context = f" with {_count(need.gpus, 'GPU')}" if need.gpus and not named and not spread else ""
    if need.cpus > max(t.cpus for t in with_gpus):
        biggest = max(with_gpus, key=lambda t: (t.cpus, t.name))
        head = (f"instance type {biggest.name} has {biggest.cpus} CPUs, not {need.cpus} per node" if named else
                f"no Mithril instance type{context} has {need.cpus} CPUs per node; most is "
                f"{biggest.name} ({biggest.cpus} CPUs)")
        shares = f"{_count(need.tasks, 'task')} x {_count(max(1, request.cpus_per_task), 'CPU')}"
        return SlurmError(f"{head} ({shares}); ask for at most {biggest.cpus} CPUs per node "
                          "(--ntasks-per-node x --cpus-per-task)")

    with_cpus = [t for t in with_gpus if t.cpus >= need.cpus]
    biggest = max(with_cpus, key=lambda t: (t.memory_mb, t.name))
    head = (f"instance type {biggest.name} has {_memory(biggest.memory_mb)} of memory, not "
            f"{_memory(need.memory_mb)} per node" if named else
            f"no Mithril instance type{context} has {_memory(need.memory_mb)} of memory per node; most is "
            f"{biggest.name} ({_memory(biggest.memory_mb)})")
    return SlurmError(f"{head}; ask for --mem={biggest.memory_gb}G or less per node")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _memory(mb: int) -> str:
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


def _not_offered(ranked: list, capacity: Capacity, region: str | None) -> SlurmError:
    """Nothing that fits is offered (in ``region``): name the type that would have been chosen."""
    how = "on spot" if capacity == "spot" else "for reservation"
    best = ranked[0][1]
    if region is None:
        return SlurmError(f"{best.name} is not offered {how} in any region right now")
    kind, markets = next(((t, m) for _, t, m in ranked if m), (best, []))
    regions = ", ".join(sorted({m.region for m in markets}))
    if not regions:
        where = "nor in any other region"
    elif kind is best:
        where = f"it is offered in {regions}"
    else:
        where = f"{kind.name} is offered in {regions}"
    return SlurmError(f"{best.name} is not offered {how} in {region}; {where}")


# ------------------------------------------------------------------ the region


def _choose_spot_region(markets: list[Market], count: int) -> Market:
    # Enough capacity for the whole gang first (a bid is all-or-nothing), then the lowest price.
    unknown = 1 << 62
    return min(markets, key=lambda m: (
        (m.capacity or 0) < count,
        m.spot_price_cents if m.spot_price_cents is not None else unknown,
        -(m.capacity or 0),
        m.region,
    ))


def _slot_start(market: Market, count: int, hours: int, now: float | None) -> tuple[bool | None, float | None]:
    """(whether a reservation of ``count`` for ``hours`` fits, and when it starts); None: not known."""
    if market.slots is None:
        return None, None
    for slot in sorted(market.slots, key=lambda s: s.start):
        start = max(slot.start, now) if now is not None else slot.start
        if slot.quantity >= count and slot.end - start >= hours * 3600:
            return True, start
    return False, None


def _choose_reserved_region(markets: list[Market], count: int, hours: int, now: float | None) -> Market:
    unknown = 1 << 62
    rank_fit = {True: 0, None: 1, False: 2}
    return min(markets, key=lambda m: (
        rank_fit[_slot_start(m, count, hours, now)[0]],
        m.reserved_price_cents if m.reserved_price_cents is not None else unknown,
        m.region,
    ))


# ------------------------------------------------------------------ prices


def parse_limit_price(text: str, gpus: int, type_name: str) -> int:
    """Cents per instance-hour from ``$16``, ``16.00``, ``16/hr`` or ``2.00/gpu-hr`` (times the GPUs)."""
    amount_text, _, unit = text.partition("/")
    unit = unit.strip().lower().replace("-", "").replace(" ", "").replace("_", "")
    per_gpu_hour = unit in ("gpuhr", "gpuhour", "gpuh")
    if unit and not per_gpu_hour and unit not in ("hr", "hour", "h", "instancehr", "instancehour", "instanceh"):
        raise _bad_limit(text)
    try:
        amount = parse_amount(amount_text)
    except ValueError:
        raise _bad_limit(text) from None
    if amount <= 0:
        raise SlurmError(f"Invalid --limit-price specification: {text}: a limit price must be more than $0")
    if per_gpu_hour:
        if gpus == 0:
            raise SlurmError(f"--limit-price={text} is per GPU-hour but {type_name} has no GPUs; "
                             "write it per instance-hour ($2.00)")
        # Rounded down to the cent: never more than the user wrote.
        return int((amount * 100 * gpus).to_integral_value(rounding=ROUND_FLOOR))
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise SlurmError(f"Invalid --limit-price specification: {text}: not a whole number of cents")
    return int(cents)


def _bad_limit(text: str) -> SlurmError:
    return SlurmError(f"Invalid --limit-price specification: {text}: write dollars per instance-hour "
                      "($16.00) or per GPU-hour (2.00/gpu-hr)")


def price_text(cents: int, gpus: int) -> str:
    """``$24.00/instance-hr ($3.00/GPU-hr)``; the GPU-hour part only with GPUs."""
    text = f"{dollars(cents)}/instance-hr"
    return f"{text} ({dollars(per_gpu(cents, gpus))}/GPU-hr)" if gpus else text


def default_limit(base: int, gpus: int, config: PlanConfig) -> tuple[int, str] | None:
    """The limit a spot bid gets when none is given, from the price now: with headroom, capped per GPU
    (``(cents, "default" or "capped")``); None when the price now is already above the cap."""
    cap = config.cap_cents_per_gpu * gpus if config.cap_cents_per_gpu is not None and gpus else None
    if cap is not None and base > cap:
        return None
    limit = times(base, config.headroom, ROUND_CEILING)
    return (cap, "capped") if cap is not None and limit > cap else (limit, "default")


def _spot_limit(request, kind: InstanceType, market: Market, config: PlanConfig) -> tuple[int, str, list[str]]:
    """(limit cents per instance-hour, where it came from, notes)."""
    where = f"{kind.name} in {market.region}"
    notes: list[str] = []
    if request.cloud.limit_price:
        limit, source = parse_limit_price(request.cloud.limit_price, kind.gpus, kind.name), "given"
        if market.spot_price_cents is not None and market.spot_price_cents > limit:
            notes.append(f"the current price is above the limit price: the bid waits until the price falls to "
                         f"{dollars(limit)}")
    else:
        base = market.spot_price_cents if market.spot_price_cents is not None else market.minimum_price_cents
        if base is None:
            raise SlurmError(f"Mithril has no current price for {where}; give #SFLOW --limit-price")
        chosen = default_limit(base, kind.gpus, config)
        if chosen is None:
            raise SlurmError(f"the current spot price of {where} is {price_text(base, kind.gpus)}, above the cap "
                             f"of {dollars(config.cap_cents_per_gpu)}/GPU-hr; give #SFLOW --limit-price to bid "
                             "anyway, or wait for the price to fall")
        limit, source = chosen
        if source == "capped":
            notes.append(f"limit price capped at {dollars(config.cap_cents_per_gpu)}/GPU-hr")
    minimum = market.minimum_price_cents
    if minimum is not None and limit < minimum:
        raise SlurmError(f"limit price {price_text(limit, kind.gpus)} is below the minimum of "
                         f"{price_text(minimum, kind.gpus)} for {where}; use #SFLOW --limit-price="
                         f"{dollars(minimum)} or more")
    return limit, source, notes


def _reserved_limit(request, kind: InstanceType, market: Market, config: PlanConfig) -> tuple[int | None, str | None]:
    where = f"{kind.name} in {market.region}"
    unit = market.reserved_price_cents
    if request.cloud.limit_price:
        limit = parse_limit_price(request.cloud.limit_price, kind.gpus, kind.name)
        if unit is not None and unit > limit:
            raise SlurmError(f"the reserved price of {where} is {price_text(unit, kind.gpus)}, above the limit "
                             f"price {price_text(limit, kind.gpus)}; raise #SFLOW --limit-price or use spot")
        return limit, "given"
    cap = config.cap_cents_per_gpu
    if unit is not None and cap is not None and kind.gpus and unit > cap * kind.gpus:
        raise SlurmError(f"the reserved price of {where} is {price_text(unit, kind.gpus)}, above the cap of "
                         f"{dollars(cap)}/GPU-hr; give #SFLOW --limit-price to reserve anyway")
    return unit, ("quote" if unit is not None else None)


def reservation_hours(minutes: int | None) -> int:
    """The time limit in whole hours, rounded up, at least 3; over 2 weeks is refused."""
    if minutes is None or minutes >= INFINITE:
        raise SlurmError("a Mithril reservation needs a time limit: give --time (3 hours to 2 weeks)")
    hours = max(MIN_RESERVATION_HOURS, math.ceil(minutes / 60))
    if hours > MAX_RESERVATION_HOURS:
        raise SlurmError(f"--time={_clock(minutes)} is longer than a Mithril reservation can be (2 weeks); "
                         "use --time=14-00:00:00 or less")
    return hours


def _cost(cents: int | None, count: int, minutes: int, rounding: str) -> int | None:
    if cents is None:
        return None
    return int((Decimal(cents) * count * minutes / 60).to_integral_value(rounding=rounding))


# ------------------------------------------------------------------ the plan


def plan(request, catalog: Catalog, config: "PlanConfig | Mapping[str, Any] | None" = None, *,
         now: float | None = None) -> Plan:
    """The Mithril allocation for ``request``, or a ``SlurmError`` saying why there is none.

    ``now`` (epoch seconds) places a reservation within the catalog's reservation slots;
    without it a slot's own start is taken.
    """
    config = PlanConfig.of(config)
    partitions = set((request.partition or "").split(","))
    capacity: Capacity = ("reserved" if request.cloud.capacity == "reserved"
                          or partitions & set(config.reserved_partitions) else "spot")
    kind, count = _choose_type(request, catalog, config, capacity)
    markets = _offered(catalog, kind, capacity, request.cloud.region)
    minutes = request.time_limit if request.time_limit is not None and request.time_limit < INFINITE else None
    common = dict(
        instance_type_id=kind.id, instance_type=kind.name, instance_quantity=count, capacity=capacity,
        gpus_per_instance=kind.gpus, gpu_type=kind.gpu_type, cpus_per_instance=kind.cpus,
        memory_gb_per_instance=kind.memory_gb, time_limit_minutes=minutes,
    )

    if capacity == "reserved":
        hours = reservation_hours(minutes)
        market = _choose_reserved_region(markets, count, hours, now)
        fits, start = _slot_start(market, count, hours, now)
        if fits is False:
            most = max((s.quantity for s in market.slots or ()), default=0)
            raise SlurmError(f"no reservation of {count} x {kind.name} for {hours} hours is available in "
                             f"{market.region}; at most {most} at a time; use fewer nodes or spot")
        limit, source = _reserved_limit(request, kind, market, config)
        unit = market.reserved_price_cents
        return Plan(
            **common, region=market.region, limit_price_cents=limit, limit_source=source,
            spot_price_cents=market.spot_price_cents, minimum_price_cents=market.minimum_price_cents,
            max_cost_cents=None, current_cost_cents=None,
            reserved_price_cents=unit, reservation_hours=hours, reservation_start=start,
            reservation_cost_cents=unit * count * hours if unit is not None else None,
        )

    market = _choose_spot_region(markets, count)
    limit, source, notes = _spot_limit(request, kind, market, config)
    if (market.capacity or 0) < count:
        notes.append(f"{market.region} has {market.capacity or 0} instances free now: the bid waits for "
                     f"{count} at once")
    return Plan(
        **common, region=market.region, limit_price_cents=limit, limit_source=source,
        spot_price_cents=market.spot_price_cents, minimum_price_cents=market.minimum_price_cents,
        max_cost_cents=_cost(limit, count, minutes, ROUND_CEILING) if minutes else None,
        current_cost_cents=_cost(market.spot_price_cents, count, minutes, ROUND_HALF_UP) if minutes else None,
        notes=tuple(notes),
    )


# ------------------------------------------------------------------ the human plan


def _clock(minutes: int | None) -> str:
    """As scontrol shows a time limit: ``02:00:00``, ``1-00:00:00``, ``UNLIMITED``."""
    if minutes is None or minutes >= INFINITE:
        return "UNLIMITED"
    days, rest = divmod(minutes, 24 * 60)
    clock = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{clock}" if days else clock


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "as soon as it is placed"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("from %Y-%m-%d %H:%M UTC")


def format_plan(plan: Plan) -> str:
    """The plan as ``sbatch --test-only`` and ``flow run --dry-run`` print it (no final newline)."""
    gpus = plan.gpus_per_instance
    lines = [f"Mithril plan: {plan.instance_quantity} x {plan.instance_type} in {plan.region} ({plan.capacity})"]
    if plan.capacity == "reserved":
        lines.append(f"  reservation: {plan.reservation_hours} hours {_when(plan.reservation_start)} "
                     f"(time limit {_clock(plan.time_limit_minutes)})")
        if plan.reserved_price_cents is not None:
            lines.append(f"  reserved price: {price_text(plan.reserved_price_cents, gpus)}, "
                         f"{dollars(plan.reservation_cost_cents)} for the reservation")
        else:
            lines.append("  reserved price: quoted when the reservation is placed")
        if plan.limit_source == "given":
            lines.append(f"  limit price: {price_text(plan.limit_price_cents, gpus)}")
    else:
        lines.append(f"  limit price: {price_text(plan.limit_price_cents, gpus)}")
    spot = price_text(plan.spot_price_cents, gpus) if plan.spot_price_cents is not None else "unknown"
    lines.append(f"  current spot price: {spot}")
    if plan.capacity == "spot":
        if plan.time_limit_minutes is None:
            hourly = plan.limit_price_cents * plan.instance_quantity
            lines.append(f"  no time limit: at most {dollars(hourly)} per hour")
        else:
            about = (f", about {dollars(plan.current_cost_cents)} at the current price"
                     if plan.current_cost_cents is not None else "")
            lines.append(f"  time limit {_clock(plan.time_limit_minutes)}: at most "
                         f"{dollars(plan.max_cost_cents)}{about}")
    lines += [f"  note: {note}" for note in plan.notes]
    return "\n".join(lines)


__all__ = ["Demand", "Plan", "PlanConfig", "default_limit", "demand", "format_plan", "node_range", "parse_limit_price", "plan",
           "price_text", "reservation_hours"]
