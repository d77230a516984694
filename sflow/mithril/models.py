"""Pydantic models of the Mithril API (v2), named after its OpenAPI components.

Only what sflow uses is modelled. Answers ignore fields they do not know, so
the service adding a field never breaks us; statuses are plain strings for the
same reason (the known values are listed in the ``*_STATUSES`` tuples).
Requests forbid unknown fields, so a typo in our own code fails loudly.

Money: bids, auctions and reservations carry dollar strings (``"$25.60"``);
``/v2/pricing/current`` answers integer cents. ``dollars_to_cents`` and
``cents_to_dollars`` convert between the two through ``Decimal``, never float.
"""

from __future__ import annotations

from sflow.mithril import money

import re
from datetime import datetime
from decimal import Decimal
from typing import Literal, Optional

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

BID_STATUSES = ("Open", "Allocated", "Preempting", "Terminated", "Paused")
# The detailed status endpoint also reports a bid that is partly relocating.
BID_DETAILED_STATUSES = BID_STATUSES + ("Relocating",)
INSTANCE_STATUSES = (
    "STATUS_NEW", "STATUS_CONFIRMED", "STATUS_INITIALIZING", "STATUS_STARTING", "STATUS_RUNNING",
    "STATUS_STOPPING", "STATUS_TERMINATED", "STATUS_RELOCATING", "STATUS_PREEMPTING",
    "STATUS_PREEMPTED", "STATUS_REPLACED", "STATUS_PAUSED", "STATUS_ERROR",
)
RESERVATION_STATUSES = ("Pending", "Active", "Paused", "Canceled", "Ended")

# For type hints on query parameters (the answers keep plain strings).
BidStatus = Literal["Open", "Allocated", "Preempting", "Terminated", "Paused"]
ReservationStatus = Literal["Pending", "Active", "Paused", "Canceled", "Ended"]
SortDirection = Literal["asc", "desc"]

STARTUP_SCRIPT_MAX = 10_000  # characters, a market rule the schema does not state


# --- money ---------------------------------------------------------------------------------

_DOLLARS = re.compile(r"\$?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)")


def dollars_to_cents(text: str) -> int:
    """``"$25.60"`` -> ``2560``. A leading ``$`` and thousands commas are optional.

    Raises ``ValueError`` for anything that is not a whole number of cents.
    """
    if not isinstance(text, str):
        raise ValueError(f"a price must be a dollar string such as \"$25.60\", not {type(text).__name__}")
    if not _DOLLARS.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a dollar amount such as \"$25.60\"")
    try:
        return money.parse_dollars(text.strip().replace(",", ""))
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number of cents") from None


def cents_to_dollars(cents: int) -> str:
    """``2560`` -> ``"$25.60"``, the way the API writes money."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise ValueError(f"cents must be an integer, not {type(cents).__name__}")
    return money.dollars(cents)


def _optional_cents(text: Optional[str]) -> Optional[int]:
    return None if text is None else dollars_to_cents(text)


# --- bases ---------------------------------------------------------------------------------

class Answer(BaseModel):
    """Something the API answers: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")


class Request(BaseModel):
    """Something we send: unknown fields are an error in our own code."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict:
        """The request body: JSON-ready, unset optional fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


def _check_price(value: Optional[str]) -> Optional[str]:
    """Normalise a dollar string to the API's ``$D.CC`` form (and reject non-prices early)."""
    return None if value is None else cents_to_dollars(dollars_to_cents(value))


# --- catalogue and market ------------------------------------------------------------------

class InstanceTypeModel(Answer):
    fid: str
    name: str
    num_cpus: int
    cpu_type: str
    ram_gb: int
    num_gpus: int
    gpu_type: str
    gpu_memory_gb: int
    gpu_socket: str
    local_storage_gb: int
    network_type: Optional[str] = None
    ib_count: int
    bridge_count: int
    hourly_price: Decimal  # a JSON number in the schema; Decimal keeps it exact


class AuctionModel(Answer):
    """One spot market: an instance type in a region (``/v2/spot/availability``)."""

    fid: str
    instance_type: str
    region: str
    capacity: int
    last_instance_price: str
    lowest_allocated_price: Optional[str] = None
    adjustable_memory: bool
    default_image_version: Optional[str] = None

    @property
    def last_instance_price_cents(self) -> int:
        return dollars_to_cents(self.last_instance_price)

    @property
    def lowest_allocated_price_cents(self) -> Optional[int]:
        return _optional_cents(self.lowest_allocated_price)


class CurrentPricesResponse(Answer):
    """``/v2/pricing/current``: integer cents per instance-hour, any of them may be unknown."""

    spot_price_cents: Optional[int] = None
    reserved_price_cents: Optional[int] = None
    minimum_price_cents: Optional[int] = None
    lowest_allocated_bid_cents: Optional[int] = None
    dynamic_win_price_cents: Optional[int] = None
    available_capacity: Optional[int] = None
    total_capacity: Optional[int] = None


# --- bids ----------------------------------------------------------------------------------

class LaunchSpecificationModel(Answer):
    """What each instance of a bid or reservation boots with (sent and answered)."""

    volumes: list[str]
    ssh_keys: list[str]
    startup_script: Optional[str] = Field(default=None, max_length=STARTUP_SCRIPT_MAX)
    kubernetes_cluster: Optional[str] = None
    image_version: Optional[str] = None
    memory_gb: Optional[int] = None


class CreateBidRequest(Request):
    project: str
    region: str
    instance_type: str
    limit_price: str  # per instance-hour
    instance_quantity: int = Field(ge=1)
    name: str
    launch_specification: LaunchSpecificationModel
    notification_email: Optional[str] = None

    @field_validator("limit_price")
    @classmethod
    def _normalise_price(cls, value: Optional[str]) -> Optional[str]:
        return _check_price(value)

    @property
    def limit_price_cents(self) -> int:
        return dollars_to_cents(self.limit_price)


class BidModel(Answer):
    fid: str
    name: str
    project: str
    created_by: str
    created_at: datetime
    deactivated_at: Optional[datetime] = None
    limit_price: str
    instance_quantity: int
    instance_type: str
    region: Optional[str] = None
    instances: list[str]
    launch_specification: LaunchSpecificationModel
    status: str  # one of BID_STATUSES

    @property
    def limit_price_cents(self) -> int:
        return dollars_to_cents(self.limit_price)


class BidStatusResponse(Answer):
    bid_fid: str
    status: str  # one of BID_DETAILED_STATUSES


class UpdateBidRequest(Request):
    """A PATCH: only the fields that are set change."""

    limit_price: Optional[str] = None
    paused: Optional[bool] = None
    volumes: Optional[list[str]] = None
    memory_gb: Optional[int] = None

    @field_validator("limit_price")
    @classmethod
    def _normalise_price(cls, value: Optional[str]) -> Optional[str]:
        return _check_price(value)


class GetBidsResponse(Answer):
    data: list[BidModel]
    next_cursor: Optional[str] = None


# --- instances -----------------------------------------------------------------------------

class InstanceModel(Answer):
    fid: str
    name: str
    project: str
    created_at: datetime
    created_by: str
    instance_type: str
    region: Optional[str] = None
    bid: Optional[str] = None
    reservation: Optional[str] = None
    ssh_destination: Optional[str] = None  # "host[:port]", user ubuntu
    private_ip: Optional[str] = None
    status: str  # one of INSTANCE_STATUSES

    @property
    def ssh_host(self) -> Optional[str]:
        return None if self.ssh_destination is None else _split_destination(self.ssh_destination)[0]

    @property
    def ssh_port(self) -> int:
        return 22 if self.ssh_destination is None else _split_destination(self.ssh_destination)[1]


def _split_destination(destination: str) -> tuple[str, int]:
    host, sep, port = destination.rpartition(":")
    # "host", "[v6::addr]" and "v6::addr" carry no port of their own.
    if not sep or not port.isdecimal() or (":" in host and not host.endswith("]")):
        return destination.strip("[]"), 22
    return host.strip("[]"), int(port)


class GetInstancesResponse(Answer):
    data: list[InstanceModel]
    next_cursor: Optional[str] = None


class InstancePricingEvent(Answer):
    """One stretch of billing at one price; ``end_time`` is None while it lasts."""

    price_cents: int  # per instance-hour
    start_time: datetime
    end_time: Optional[datetime] = None

    def cost_cents(self, until: datetime) -> float:
        """Price x duration, fractional cents; an open stretch counts up to ``until``."""
        end = self.end_time or until
        return max(0.0, (end - self.start_time).total_seconds()) * self.price_cents / 3600.0


class InstancePricingHistory(Answer):
    """``/v2/instances/pricing/history``: what one instance was billed, stretch by stretch."""

    instance_fid: str
    events: list[InstancePricingEvent]
    bid_fid: Optional[str] = None
    reservation_fid: Optional[str] = None


class InstancePricingHistoryResponse(Answer):
    instances: list[InstancePricingHistory]
    next_cursor: Optional[str] = None


class InstanceStatusEvent(Answer):
    timestamp: datetime
    status: str  # one of INSTANCE_STATUSES


class InstanceStatusHistory(Answer):
    """``/v2/instances/status/history``: every status one instance has had, oldest first."""

    instance_fid: str
    events: list[InstanceStatusEvent]
    bid_fid: Optional[str] = None
    reservation_fid: Optional[str] = None


class InstanceStatusHistoryResponse(Answer):
    instances: list[InstanceStatusHistory]
    next_cursor: Optional[str] = None


# --- account -------------------------------------------------------------------------------

class ProjectModel(Answer):
    fid: str
    name: str
    created_at: datetime


class MeResponse(Answer):
    id: str
    fid: str
    email: str
    user_name: Optional[str] = None
    organization_id: str
    organization_role: Optional[str] = None


class NewSshKeyModel(Answer):
    fid: str
    name: str
    project: str
    public_key: str
    created_at: datetime
    required: bool


class CreateSshKeyRequest(Request):
    """Without ``public_key`` the service generates a key pair and answers the private half."""

    project: str
    name: str
    public_key: Optional[str] = None
    required: bool = False


class CreatedSshKeyModel(NewSshKeyModel):
    private_key: Optional[str] = Field(default=None, repr=False)  # a secret: kept out of repr


class ApiKeyModel(Answer):
    fid: str
    name: str
    created_at: datetime
    expires_at: datetime
    deactivated_at: Optional[datetime] = None
    snippet: str


class CreateApiKeyRequest(Request):
    name: str
    expires_at: AwareDatetime


class CreateApiKeyResponse(ApiKeyModel):
    secret: str = Field(repr=False)  # the key itself, shown once: kept out of repr


# --- reservations --------------------------------------------------------------------------

class PriceSpecification(Request):
    offer_key: str = "standard"
    max_unit_price: Optional[int] = Field(default=None, ge=0)


class CreateReservationRequest(Request):
    project: str
    instance_type: str
    region: str
    start_time: AwareDatetime  # a naive time would be read in the service's zone, not ours
    end_time: AwareDatetime
    instance_quantity: int = Field(ge=1)
    name: str
    launch_specification: LaunchSpecificationModel
    price_specification: Optional[PriceSpecification] = None
    notification_email: Optional[str] = None


class ReservationModel(Answer):
    fid: str
    name: str
    project: str
    created_by: str
    created_at: datetime
    deactivated_at: Optional[datetime] = None
    instance_quantity: int
    instance_type: str
    region: Optional[str] = None
    instances: list[str]
    launch_specification: LaunchSpecificationModel
    status: str  # one of RESERVATION_STATUSES
    start_time: datetime
    end_time: datetime
    total_price: str
    unit_price: str

    @property
    def total_price_cents(self) -> int:
        return dollars_to_cents(self.total_price)

    @property
    def unit_price_cents(self) -> int:
        return dollars_to_cents(self.unit_price)


class GetReservationsResponse(Answer):
    data: list[ReservationModel]
    next_cursor: Optional[str] = None


class AvailabilitySlotModel(Answer):
    """``/v2/reservation/availability?mode=slots``: one free window."""

    start_time: datetime
    end_time: datetime
    quantity: int


class CheckAvailabilityResponse(Answer):
    """``mode=check``."""

    available: bool


class GetLatestEndTimeResponse(Answer):
    """``mode=latest_end_time`` (the default)."""

    latest_end_time: datetime
    available: bool
