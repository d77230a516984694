"""Property-based conformance: schemathesis drives the live emulator through every implemented operation.

Deterministic (derandomized, few examples) and on loopback only; the served schema is
the normalized one (``nullable`` spelled out), the same the emulator validates against.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from sflow.mithril.emulator import start_emulator  # noqa: E402
from sflow.mithril.emulator.routes import ROUTES  # noqa: E402
from sflow.mithril.emulator.schema import default_schema  # noqa: E402

AUTH = {"Authorization": "Bearer fkey_schemathesis"}
PROJECT, TYPE, REGION = "proj_abc123456", "it_abc123456", "us-central1-a"  # placeholders, see aim()
_START = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
_SPEC = {"volumes": [], "ssh_keys": []}

# One valid request per operation that needs more than the generator will guess, sent first
# (hypothesis' explicit phase), so that the successful paths are checked as well as the refusals.
EXAMPLES = {
    "create_bid_v2_spot_bids_post": {"body": {
        "project": PROJECT, "region": REGION, "instance_type": TYPE, "limit_price": "$1.00",
        "instance_quantity": 1, "name": "example", "launch_specification": _SPEC}},
    "create_ssh_key_v2_ssh_keys_post": {"body": {
        "project": PROJECT, "name": "example", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 example"}},
    "create_reservation_v2_reservation_post": {"body": {
        "project": PROJECT, "region": REGION, "instance_type": TYPE, "start_time": _START.isoformat(),
        "end_time": (_START + timedelta(hours=3)).isoformat(), "instance_quantity": 1, "name": "example",
        "launch_specification": _SPEC}},
    "create_api_key_v2_api_keys_post": {"body": {"name": "example", "expires_at": _START.isoformat()}},
    "get_instances_v2_instances_get": {"query": {"project": PROJECT}},
    "get_ssh_keys_v2_ssh_keys_get": {"query": {"project": PROJECT}},
    "get_instance_pricing_history_v2_instances_pricing_history_get": {"query": {"project": PROJECT}},
    "get_instance_status_history_v2_instances_status_history_get": {"query": {"project": PROJECT}},
    "get_reservations_v2_reservation_get": {"query": {"project": PROJECT}},
    "get_current_prices_v2_v2_pricing_current_get": {"query": {"instance_type": TYPE}},
    "get_availability_v2_reservation_availability_get": {"query": {
        "project": PROJECT, "instance_type": TYPE, "region": REGION, "start_time": _START.isoformat(),
        "quantity": 1}},
}


def _with_examples(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    for item in doc["paths"].values():
        for op in item.values():
            example = EXAMPLES.get(op.get("operationId") if isinstance(op, dict) else None)
            if not example:
                continue
            if "body" in example:
                op["requestBody"]["content"]["application/json"]["example"] = example["body"]
            for param in op.get("parameters", []):
                if param["name"] in example.get("query", {}):
                    param["example"] = example["query"][param["name"]]
    return doc


schema = schemathesis.openapi.from_dict(_with_examples(default_schema().doc)).include(operation_id=sorted(ROUTES))


@pytest.fixture(scope="module")
def emulator():
    emu = start_emulator(tick=3600, startup=0.0, check_responses=True)
    yield emu
    emu.close()


def test_every_implemented_operation_is_exercised():
    tested = {op.ok().definition.raw["operationId"] for op in schema.get_all_operations()}
    assert tested == set(ROUTES) and len(tested) == 23


def aim(case, emulator) -> None:
    """Point the placeholder ids at the emulator's own (its ids are made when it starts)."""
    real = {PROJECT: emulator.account.projects[0].fid, TYPE: emulator.market.catalog.find("1xa100").fid}
    for part in (case.query, case.body if isinstance(case.body, dict) else None):
        if part:
            for key, value in part.items():
                if isinstance(value, str) and value in real:
                    part[key] = real[value]


@schema.parametrize()
@settings(max_examples=6, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
def test_the_emulator_conforms_to_the_schema(case, emulator):
    aim(case, emulator)
    case.call_and_validate(base_url=emulator.url, headers=AUTH,
                           checks=[checks.not_a_server_error, checks.response_schema_conformance,
                                   checks.content_type_conformance])
    assert emulator.violations == []


def test_the_examples_reached_the_successful_paths(emulator):
    # runs after the generated cases (same module-scoped emulator): the creates did succeed
    assert emulator.market.bids and emulator.account.ssh_keys and emulator.market.reservations
    assert emulator.account.api_keys
