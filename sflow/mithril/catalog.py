"""The Mithril market as plain data: what the translator reads, so it stays pure.

A ``Catalog`` is the instance types (GPUs, CPUs, memory) and, per instance
type and region, a ``Market``: spot capacity, the current spot price, the
minimum price, the reserved price and, when known, the reservation slots.
``Catalog.from_api`` builds one from the JSON the API answers; whoever fetched
it (the client, the emulator, a test) hands it over, and nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from sflow.mithril.money import ROUND_HALF_UP, parse_dollars


@dataclass(frozen=True)
class InstanceType:
    id: str  # "it_..."
    name: str  # "8xh100", "h100.80gb.sxm"
    gpus: int
    gpu_type: str | None  # lower-case ("h100"); None without GPUs
    cpus: int
    memory_gb: int
    gpu_memory_gb: int = 0
    list_price_cents: int | None = None  # the type's published hourly price, when given

    @property
    def memory_mb(self) -> int:
        return self.memory_gb * 1024  # SLURM's MB are MiB, and so are Mithril's GB in practice


@dataclass(frozen=True)
class Slot:
    """A window in which ``quantity`` instances can be reserved (epoch seconds)."""

    start: float
    end: float
    quantity: int


@dataclass(frozen=True)
class Market:
    """One instance type in one region."""

    instance_type: str  # InstanceType.id
    region: str
    capacity: int | None = None  # spot instances available now; None: no spot auction here
    spot_price_cents: int | None = None  # per instance-hour, what winners pay now
    minimum_price_cents: int | None = None  # the reserve: no bid below it is accepted
    reserved_price_cents: int | None = None  # per instance-hour for a reservation
    slots: tuple[Slot, ...] | None = None  # reservation availability; None: not known

    @property
    def on_spot(self) -> bool:
        return self.capacity is not None


# A count times a GPU type, or a GPU type alone: "8xh100", "8 x H100", "2*a100", "h100".
_SHORTHAND = re.compile(r"\s*(?:(\d+)\s*[x×*]\s*)?([A-Za-z][A-Za-z0-9]*)\s*")


@dataclass(frozen=True)
class Catalog:
    instance_types: tuple[InstanceType, ...] = ()
    markets: tuple[Market, ...] = ()
    _by_key: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for kind in self.instance_types:
            self._by_key.setdefault(kind.id, kind)
            self._by_key.setdefault(kind.name.lower(), kind)

    def instance_type(self, name_or_id: str) -> InstanceType | None:
        """By id (``it_...``) or by name, case-insensitively; else by shorthand: a count times a
        GPU type (``8xh100``, ``8 x H100``), or a GPU type alone (``h100``: its largest instance)."""
        found = self._by_key.get(name_or_id) or self._by_key.get(name_or_id.lower())
        if found is not None:
            return found
        shorthand = _SHORTHAND.fullmatch(name_or_id)
        if shorthand is None:
            return None
        count, gpu_type = shorthand.group(1), shorthand.group(2).lower()
        kinds = [t for t in self.instance_types
                 if t.gpu_type == gpu_type and (count is None or t.gpus == int(count))]
        return max(kinds, key=lambda t: (t.gpus, t.gpu_memory_gb, t.memory_gb), default=None)

    def markets_of(self, type_id: str) -> tuple[Market, ...]:
        return tuple(m for m in self.markets if m.instance_type == type_id)

    def market(self, type_id: str, region: str) -> Market | None:
        return next((m for m in self.markets if m.instance_type == type_id and m.region == region), None)

    def gpu_types(self) -> list[str]:
        return sorted({t.gpu_type for t in self.instance_types if t.gpu_type})

    @classmethod
    def from_api(cls, instance_types_json: Any, availability_json: Any = (), pricing_json: Any = None,
                 reservations_json: Any = None) -> "Catalog":
        """From the API's answers.

        - ``instance_types_json``: ``GET /v2/instance-types`` (``InstanceTypeModel`` list);
        - ``availability_json``: ``GET /v2/spot/availability`` (``AuctionModel`` list);
        - ``pricing_json``: ``GET /v2/pricing/current`` answers (``CurrentPricesResponse``), which
          are asked per instance type and optionally region, so given as
          ``{instance_type: response}``, ``{instance_type: {region: response}}``, or a list of
          responses each carrying ``instance_type`` and optionally ``region`` keys;
        - ``reservations_json``: ``GET /v2/reservation/availability?mode=slots`` answers
          (``AvailabilitySlotModel`` lists), keyed the same way (a list entry holds ``slots``).

        Lists may be bare or paged (``{"data": [...]}``). Instance types are named by id or name.
        Precedence for a region's prices: its own pricing answer, then its auction, then the
        instance type's region-less pricing answer.
        """
        types = tuple(_instance_type(item) for item in _items(instance_types_json))
        catalog = cls(types)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        type_wide: dict[str, dict[str, Any]] = {}

        for auction in _items(availability_json):
            kind = catalog.instance_type(str(auction["instance_type"]))
            if kind is None:
                continue  # a type we cannot describe cannot be planned for
            entry = found.setdefault((kind.id, auction["region"]), {})
            entry["capacity"] = int(auction["capacity"])
            if auction.get("last_instance_price") is not None:
                entry["spot_price_cents"] = _cents(auction["last_instance_price"])

        for key, region, answer in _keyed(pricing_json, lambda v: isinstance(v, Mapping) and _is_price(v)):
            kind = catalog.instance_type(key)
            if kind is None:
                continue
            prices = {name: answer[name] for name in _PRICE_FIELDS if answer.get(name) is not None}
            if region is None:
                type_wide.setdefault(kind.id, {}).update(prices)
                continue
            entry = found.setdefault((kind.id, region), {})
            entry.update(prices)
            if answer.get("available_capacity") is not None:
                entry["capacity"] = int(answer["available_capacity"])

        for key, region, answer in _keyed(reservations_json, lambda v: isinstance(v, list)):
            kind = catalog.instance_type(key)
            if kind is None or region is None:
                continue
            found.setdefault((kind.id, region), {})["slots"] = tuple(_slot(s) for s in answer)

        markets = []
        for (type_id, region), entry in sorted(found.items()):
            merged = {**type_wide.get(type_id, {}), **entry}
            markets.append(Market(type_id, region, **merged))
        return cls(types, tuple(markets))


_PRICE_FIELDS = ("spot_price_cents", "minimum_price_cents", "reserved_price_cents")


def _is_price(value: Mapping) -> bool:
    return any(name.endswith("_cents") or name.endswith("_capacity") for name in value)


def _items(data: Any) -> list:
    """A bare list, or a page ``{"data": [...]}``."""
    if data is None:
        return []
    if isinstance(data, Mapping):
        return list(data.get("data") or [])
    return list(data)


def _keyed(data: Any, is_answer) -> Iterator[tuple[str, str | None, Any]]:
    """(instance type, region or None, answer) from the accepted shapes (see ``from_api``)."""
    if data is None:
        return
    if isinstance(data, Mapping) and "data" not in data:
        for key, value in data.items():
            if is_answer(value):
                yield str(key), None, value
            elif isinstance(value, Mapping):
                for region, answer in value.items():
                    if is_answer(answer):
                        yield str(key), str(region), answer
        return
    for entry in _items(data):
        answer = entry.get("slots", entry) if not is_answer(entry) else entry
        if is_answer(answer):
            yield str(entry["instance_type"]), entry.get("region"), answer


def _cents(value: Any) -> int:
    """An API price: a dollar string or a number, rounded to the cent."""
    return parse_dollars(value, rounding=ROUND_HALF_UP)


def _instance_type(item: Mapping[str, Any]) -> InstanceType:
    gpus = int(item.get("num_gpus") or 0)
    gpu_type = item.get("gpu_type")
    price = item.get("hourly_price")
    return InstanceType(
        id=str(item["fid"]),
        name=str(item.get("name") or item["fid"]),
        gpus=gpus,
        gpu_type=str(gpu_type).lower() if gpus and gpu_type else None,
        cpus=int(item.get("num_cpus") or 0),
        memory_gb=int(item.get("ram_gb") or 0),
        gpu_memory_gb=int(item.get("gpu_memory_gb") or 0),
        list_price_cents=_cents(price) if price is not None else None,
    )


def _epoch(text: str) -> float:
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # the API speaks UTC
    return moment.timestamp()


def _slot(item: Mapping[str, Any]) -> Slot:
    return Slot(_epoch(item["start_time"]), _epoch(item["end_time"]), int(item["quantity"]))


__all__ = ["Catalog", "InstanceType", "Market", "Slot"]
