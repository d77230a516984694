"""The models against the API's own schema, and the money helpers."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sflow.mithril import models as m
from sflow.mithril.models import cents_to_dollars, dollars_to_cents

HERE = Path(__file__).parent
# The components sflow models, extracted from openapi.json so the suite runs without it;
# test_extract_matches_the_schema keeps the extract honest wherever the full schema is found.
EXTRACT = HERE / "schema_components.json"
FULL_SCHEMA_CANDIDATES = [
    os.environ.get("MITHRIL_OPENAPI", ""),
    str(HERE.parents[1] / "sflow" / "mithril" / "emulator" / "openapi.json"),
    "/work/shared/mithril/openapi.json",
]

MODELLED = [
    "InstanceTypeModel", "AuctionModel", "CurrentPricesResponse", "LaunchSpecificationModel",
    "CreateBidRequest", "BidModel", "BidStatusResponse", "UpdateBidRequest", "GetBidsResponse",
    "InstanceModel", "GetInstancesResponse", "ProjectModel", "MeResponse", "NewSshKeyModel",
    "CreateSshKeyRequest", "CreatedSshKeyModel", "PriceSpecification", "CreateReservationRequest",
    "ReservationModel", "GetReservationsResponse", "AvailabilitySlotModel", "CheckAvailabilityResponse",
    "GetLatestEndTimeResponse", "ApiKeyModel", "CreateApiKeyRequest", "CreateApiKeyResponse",
]

SCHEMAS = json.loads(EXTRACT.read_text())


def _full_schema():
    for candidate in FULL_SCHEMA_CANDIDATES:
        if candidate and os.path.exists(candidate):
            return json.loads(Path(candidate).read_text())
    return None


def test_extract_matches_the_schema():
    full = _full_schema()
    if full is None:
        pytest.skip("openapi.json not found (set MITHRIL_OPENAPI)")
    for name, schema in SCHEMAS.items():
        assert full["components"]["schemas"][name] == schema, name


@pytest.mark.parametrize("name", MODELLED)
def test_fields_and_requiredness_match_the_schema(name):
    schema, model = SCHEMAS[name], getattr(m, name)
    assert set(model.model_fields) == set(schema["properties"]), name
    required = {field for field, info in model.model_fields.items() if info.is_required()}
    assert required == set(schema.get("required", [])), name


def test_status_values_match_the_schema():
    enum = lambda schema, field: tuple(SCHEMAS[schema]["properties"][field]["enum"])  # noqa: E731
    assert m.BID_STATUSES == enum("BidModel", "status")
    assert m.BID_DETAILED_STATUSES == enum("BidStatusResponse", "status")
    assert m.INSTANCE_STATUSES == enum("InstanceModel", "status")
    assert m.RESERVATION_STATUSES == enum("ReservationModel", "status")


# Fields without an example whose type alone does not say enough.
STAND_INS = {"limit_price": "$1.00"}


def _example(schema: dict, index: int = 0):
    """A value built from the schema's own ``examples`` (a plain stand-in where it has none)."""
    if "$ref" in schema:
        return _example(SCHEMAS[schema["$ref"].rsplit("/", 1)[-1]], index)
    if "examples" in schema:
        examples = schema["examples"]
        return examples[min(index, len(examples) - 1)]
    if "properties" in schema:
        return {name: STAND_INS[name] if name in STAND_INS and "examples" not in prop else _example(prop, index)
                for name, prop in schema["properties"].items()}
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if kind == "array":
        return [_example(schema["items"], index)] if "items" in schema else []
    return {"integer": 4, "number": 1.5, "boolean": True}.get(kind, "example")


# Every spelling the schema gives for a time (Z, +00:00, -00:00) must parse.
@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("name", MODELLED)
def test_models_parse_the_schema_examples(name, index):
    payload = _example(SCHEMAS[name], index)
    parsed = getattr(m, name).model_validate(payload)
    for field, prop in SCHEMAS[name]["properties"].items():
        if "examples" in prop and prop.get("type") in ("string", "integer", "boolean") and "format" not in prop:
            value = getattr(parsed, field)
            if field in ("limit_price",) and isinstance(parsed, m.Request):
                value = cents_to_dollars(dollars_to_cents(value))
            assert value == payload[field], (name, field)


def test_examples_carry_money_as_dollar_strings():
    auction = m.AuctionModel.model_validate(_example(SCHEMAS["AuctionModel"]))
    assert (auction.last_instance_price_cents, auction.lowest_allocated_price_cents) == (1000, 1500)
    bid = m.BidModel.model_validate(_example(SCHEMAS["BidModel"]))
    assert bid.limit_price_cents == 1560
    reservation = m.ReservationModel.model_validate(_example(SCHEMAS["ReservationModel"]))
    assert (reservation.unit_price_cents, reservation.total_price_cents) == (199, 4776)
    types = m.InstanceTypeModel.model_validate(_example(SCHEMAS["InstanceTypeModel"]))
    assert types.hourly_price == Decimal("0.12")


def test_answers_ignore_unknown_fields_and_statuses():
    payload = _example(SCHEMAS["BidModel"]) | {"status": "Relocating", "brand_new_field": {"x": 1}}
    bid = m.BidModel.model_validate(payload)
    assert bid.status == "Relocating"
    assert "brand_new_field" not in bid.model_dump()


def test_requests_refuse_unknown_fields():
    payload = _example(SCHEMAS["CreateBidRequest"]) | {"limit_prize": "$1.00"}
    with pytest.raises(ValidationError):
        m.CreateBidRequest.model_validate(payload)


def test_bid_request_normalises_and_checks_its_price():
    payload = _example(SCHEMAS["CreateBidRequest"])
    assert m.CreateBidRequest.model_validate(payload | {"limit_price": "16"}).limit_price == "$16.00"
    assert m.CreateBidRequest.model_validate(payload | {"limit_price": "16"}).limit_price_cents == 1600
    for bad in ("$0.125", "sixteen", "-$1.00"):
        with pytest.raises(ValidationError):
            m.CreateBidRequest.model_validate(payload | {"limit_price": bad})


def test_request_body_leaves_out_unset_fields():
    body = m.UpdateBidRequest(paused=True).to_json()
    assert body == {"paused": True}


def test_startup_script_limit():
    spec = {"volumes": [], "ssh_keys": []}
    m.LaunchSpecificationModel.model_validate(spec | {"startup_script": "x" * 10_000})
    with pytest.raises(ValidationError):
        m.LaunchSpecificationModel.model_validate(spec | {"startup_script": "x" * 10_001})


def test_reservation_times_need_a_zone():
    payload = _example(SCHEMAS["CreateReservationRequest"])
    body = m.CreateReservationRequest.model_validate(payload).to_json()
    assert body["start_time"] == "2024-01-01T00:00:00Z"
    with pytest.raises(ValidationError):
        m.CreateReservationRequest.model_validate(payload | {"start_time": "2024-01-01T00:00:00"})


def test_generated_private_key_stays_out_of_repr():
    payload = _example(SCHEMAS["CreatedSshKeyModel"]) | {"private_key": "-----BEGIN RSA PRIVATE KEY-----abc"}
    key = m.CreatedSshKeyModel.model_validate(payload)
    assert key.private_key.endswith("abc")
    assert "PRIVATE" not in repr(key)


@pytest.mark.parametrize("destination, host, port", [
    ("1.2.3.4", "1.2.3.4", 22),
    ("1.2.3.4:2222", "1.2.3.4", 2222),
    ("node.example.com:22", "node.example.com", 22),
    ("[2001:db8::1]:2200", "2001:db8::1", 2200),
    ("2001:db8::1", "2001:db8::1", 22),
])
def test_ssh_destination(destination, host, port):
    payload = _example(SCHEMAS["InstanceModel"]) | {"ssh_destination": destination}
    instance = m.InstanceModel.model_validate(payload)
    assert (instance.ssh_host, instance.ssh_port) == (host, port)


# --- money -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, cents", [
    ("$25.60", 2560), ("$0.10", 10), ("$16", 1600), ("25.6", 2560), ("$1,000.05", 100005),
    ("$0.00", 0), (" $3.50 ", 350), ("$0.120", 12), ("$10.00", 1000),
])
def test_dollars_to_cents(text, cents):
    assert dollars_to_cents(text) == cents


@pytest.mark.parametrize("bad", ["$0.125", "", "$", "abc", "1,0", "-$1", "$1e3", "$NaN", "$Infinity", "$.5", "$5."])
def test_dollars_to_cents_rejects(bad):
    with pytest.raises(ValueError):
        dollars_to_cents(bad)


def test_money_is_never_float():
    with pytest.raises(ValueError):
        dollars_to_cents(25.6)
    with pytest.raises(ValueError):
        cents_to_dollars(25.6)
    with pytest.raises(ValueError):
        cents_to_dollars(True)
    # 0.1 + 0.2 style drift cannot happen through Decimal.
    assert sum(dollars_to_cents("$0.10") for _ in range(3)) == dollars_to_cents("$0.30")


@pytest.mark.parametrize("cents, text", [(2560, "$25.60"), (5, "$0.05"), (0, "$0.00"), (100000, "$1000.00"),
                                         (-150, "-$1.50")])
def test_cents_to_dollars(cents, text):
    assert cents_to_dollars(cents) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_money_round_trips(cents):
    assert dollars_to_cents(cents_to_dollars(cents)) == cents
