"""What Mithril jobs cost, as ``flow status`` prints it below the queue.

One row per Mithril job: its instances (from its latest bid), the cost of all
its runs (the clearing price times billed instance time; the same value as
sacct's ``Cost`` field) and the limit price it bid.
"""

from __future__ import annotations

from sflow.records import JobRecord

HEADER = ("JOBID", "STATE", "INSTANCES", "RUNS", "COST", "LIMIT")


def _dollars(cents: float | int | None) -> str:
    return "" if cents is None else f"${cents / 100:.2f}"


def billed(cents: float) -> str:
    """A billed amount in dollars to a millionth, as the billing record has it (cents times seconds
    over an hour), never rounded to whole cents: a short job costs ``$0.006667``, not ``$0.00``."""
    whole, _, fraction = f"{abs(cents) / 100:.6f}".rstrip("0").partition(".")
    return f"{'-' if cents < 0 else ''}${whole}.{fraction.ljust(2, '0')}"


def cost_lines(jobs: list[JobRecord], bids_by_job: dict) -> str:
    """The table (with a blank line before it), or "" without Mithril jobs."""
    rows = []
    for job in jobs:
        if job.backend != "mithril":
            continue
        runs = bids_by_job.get(job.job_id) or []
        latest = runs[-1] if runs else None
        where = ""
        if latest is not None:
            plan = latest.plan
            where = f"{plan['quantity']} x {plan['type_name']} in {plan['region']}"
        limit = f"{_dollars(latest.limit_cents)}/instance-hr" if latest is not None else (job.limit_price or "")
        cost = job.cost_cents if job.cost_cents is not None else sum(r.cost_cents for r in runs)
        rows.append((str(job.job_id), job.state, where, str(len({r.run for r in runs})), billed(cost), limit))
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows + [HEADER]) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [HEADER] + rows]
    return "\nMithril\n" + "\n".join(lines) + "\n"


__all__ = ["billed", "cost_lines"]
