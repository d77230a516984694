"""A Mithril job's cost as billed: fractions of a cent stay, in sacct, flow status and flow run's end."""

from __future__ import annotations

import pytest

from sflow.cli.follow import cost_text
from sflow.mithril.bids import BidRow
from sflow.records import JobRecord
from sflow.views.costs import billed, cost_lines


@pytest.mark.parametrize("cents, text", [
    (0, "$0.00"), (42, "$0.42"), (100, "$1.00"), (42.5, "$0.425"), (240 * 10 / 3600, "$0.006667"),
    (12345.678, "$123.45678"), (10000, "$100.00"),
])
def test_billed_keeps_what_the_billing_record_has(cents, text):
    assert billed(cents) == text


def _row(cents: float) -> BidRow:
    return BidRow(idempotency_key="k", job_id=7, run=0, status="Terminated",
                  plan={"quantity": 1, "type_name": "4xa100", "region": "r"}, limit_cents=300, created=0.0,
                  instances=[{"fid": "i", "status": "STATUS_TERMINATED", "running_since": 100.0}],
                  ended=110.0, cost_cents=cents)


def test_a_ten_second_run_costs_more_than_nothing():
    row = _row(240 * 10 / 3600)
    assert cost_text([row]) == "cost $0.006667 for 1 instance x 0:00:10"
    job = JobRecord(job_id=7, name="j", user="u", uid=0, gid=0, partition="gpu", reason="None", submit_time=0.0,
                    work_dir="/", command="j.sh", backend="mithril", state="COMPLETED", cost_cents=row.cost_cents)
    assert "$0.006667" in cost_lines([job], {7: [row]})
