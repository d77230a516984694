"""Reserved capacity for Mithril jobs: a reservation instead of a bid (a mixin of ``MithrilBackend``).

A job with ``#SFLOW --reserved`` (or on one of the site's
``reserved_partitions``) gets a reservation of the plan's instances for its
time limit in whole hours (at least 3). Its record lives in the ``bids``
table like a bid's (``plan["capacity"] == "reserved"``, ``bid_id`` the
reservation's id) and goes through these statuses:

- ``Checking``: committed, availability being asked; nothing bought yet;
- ``Placing``: the window's start is committed, the create (with the row's
  idempotency key) may have been sent;
- Mithril's ``Pending`` (before its window), ``Active``, ``Paused``,
  ``Canceled``, ``Ended``; ``Released`` once sflow gave it back.

The job starts on it when it is ``Active`` and every instance runs with an
SSH destination, exactly as on a won bid. Reservations are paid up front, so
the job's cost is the reservation's total price from the moment it is made.
When the job's run is over its instances are terminated (the API has no
cancel; terminating gives Mithril's early-termination credit).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from sflow.backends.base import Changed, Event, Pending
from sflow.mithril.client import new_idempotency_key
from sflow.mithril.bids import BidRow

RESERVED = "reserved"
READY = {"reserved": "Active"}  # the status whose instances a job runs on (a bid's: Allocated)


def is_reserved(row: BidRow) -> bool:
    return row.plan.get("capacity") == RESERVED


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


class ReservedCapacity:
    """The reservation half of ``MithrilBackend`` (which gives rows, context, worker, _save, withdraw)."""

    def _place_reservation(self, job, plan, now: float, name: str, extra: dict) -> Pending:
        unit = plan.reserved_price_cents
        row = BidRow(
            idempotency_key=new_idempotency_key(), job_id=job.job_id, run=job.rec.restart_count, status="Checking",
            plan={"type_id": plan.instance_type_id, "type_name": plan.instance_type, "region": plan.region,
                  "quantity": plan.instance_quantity, "gpus": plan.gpus_per_instance, "gpu_type": plan.gpu_type,
                  "cpus": plan.cpus_per_instance, "memory_gb": plan.memory_gb_per_instance,
                  "capacity": RESERVED, "hours": plan.reservation_hours, "start": None, "name": name,
                  "max_unit_cents": plan.limit_price_cents, **extra},
            limit_cents=plan.limit_price_cents if plan.limit_price_cents is not None else (unit or 0),
            price_cents=unit, created=now)
        self.rows[row.idempotency_key] = row
        self._save(row)
        key, spec = row.idempotency_key, self._reservation_spec(row)
        # Only once the key is on disk may anything be asked.
        self.context.after_commit(lambda: self.worker.reservation("check", key, spec))
        return Pending(self.reservation_reason(row))

    @staticmethod
    def _reservation_spec(row: BidRow) -> dict:
        plan = row.plan
        return {"name": plan["name"], "region": plan["region"], "type_id": plan["type_id"],
                "type_name": plan["type_name"], "quantity": plan["quantity"], "hours": plan["hours"],
                "start": plan["start"], "max_unit_cents": plan.get("max_unit_cents")}

    def _send_reservation(self, row: BidRow) -> None:
        """What the worker must do for this record now (at start, or after a turn was undone)."""
        spec = self._reservation_spec(row)
        if row.must_delete:
            self.worker.reservation("release", row.idempotency_key, row.bid_id, spec)
        elif row.bid_id is not None:
            self.worker.reservation("watch", row.idempotency_key, row.bid_id)
        elif row.status == "Checking":
            self.worker.reservation("check", row.idempotency_key, spec)
        else:
            self.worker.reservation("create", row.idempotency_key, spec)

    def _release_reservation(self, row: BidRow) -> None:
        key, fid, spec = row.idempotency_key, row.bid_id, self._reservation_spec(row)
        self.context.after_commit(lambda: self.worker.reservation("release", key, fid, spec))

    # ------------------------------------------------------------ why a job waits

    def reservation_reason(self, row: BidRow) -> str:
        plan = row.plan
        what = f"{plan['quantity']} x {plan['type_name']} in {plan['region']} for {plan['hours']} hours"
        if row.status == "Checking":
            if row.error and row.error.startswith("mithril: "):  # the API did not answer
                return f"MithrilUnavailable: {row.error}"
            if row.error:  # no window yet
                return f"ReservationPending: {row.error}"
            return f"ReservationPending: checking availability of {what}"
        if row.bid_id is None:
            if row.error:
                return f"MithrilUnavailable: {row.error}"
            return f"ReservationPending: reserving {what}"
        if row.status == "Pending" and plan.get("start"):
            return f"ReservationPending: {what} from {_clock(plan['start'])}"
        if row.status == "Active":
            return "ReservationActive: instances starting"
        return f"Reservation{row.status}"

    # ------------------------------------------------------------ what the worker saw

    def apply_reservation(self, report: tuple, now: float) -> list[Event]:
        kind = report[0]
        if kind == "res_seen":
            events: list[Event] = []
            for key, snapshot in report[1].items():
                row = self.rows.get(key)
                if row is not None:
                    events += self._observe_reservation(row, snapshot)
            return events
        row = self.rows.get(report[1])
        if row is None:
            return []
        if kind == "res_window":
            return self._window_found(row, report[2])
        if kind == "res_unavailable":
            if row.error != report[2]:
                row.error = report[2]
                self._save(row)
                return [Changed(row.job_id)]
            return []
        if kind == "res_created":
            row.error = None
            return self._observe_reservation(row, report[2])
        if kind == "res_create_failed":
            return self._reservation_refused(row, report[2], report[3], now)
        if kind == "res_released":
            return self._reservation_released(row, report[2], report[3])
        return []

    def _window_found(self, row: BidRow, start: float) -> list[Event]:
        if row.status != "Checking" or row.must_delete:
            return []
        row.plan = {**row.plan, "start": start}
        row.status, row.error = "Placing", None
        self._save(row)
        key, spec = row.idempotency_key, self._reservation_spec(row)
        # The start is committed before the create: a retry sends the same body.
        self.context.after_commit(lambda: self.worker.reservation("create", key, spec))
        return [Changed(row.job_id)]

    def _reservation_refused(self, row: BidRow, message: str, permanent: bool, now: float) -> list[Event]:
        row.error = message
        events: list[Event] = [Changed(row.job_id)]
        if permanent:  # nothing was bought
            row.status, row.ended = "Refused", now
            self.rows.pop(row.idempotency_key, None)
            if not row.must_delete:
                events.append(self._refused(row.job_id, message))
        self._save(row)
        return events

    def _reservation_released(self, row: BidRow, when: float, fid: str | None) -> list[Event]:
        row.bid_id = row.bid_id or fid
        row.instances = [{**i, "status": "STATUS_TERMINATED"} for i in row.instances]
        row.status, row.ended, row.must_delete, row.error = "Released", when, False, None
        self.rows.pop(row.idempotency_key, None)
        self._save(row)
        return [Changed(row.job_id)]

    def _observe_reservation(self, row: BidRow, snapshot: dict) -> list[Event]:
        before = (row.bid_id, row.status, row.cost_cents, [(i["fid"], i["status"], i.get("ssh"))
                                                           for i in row.instances])
        reason_before = self.reservation_reason(row)
        when = snapshot.get("when") or time.time()
        row.bid_id = row.bid_id or snapshot.get("id")
        row.status = snapshot["status"]
        if snapshot.get("start") is not None:
            row.plan = {**row.plan, "start": snapshot["start"]}
        if snapshot.get("total_cents") is not None:
            row.cost_cents = float(snapshot["total_cents"])  # paid up front for the whole window
        seen = {i["fid"]: i for i in row.instances}
        row.instances = [{**inst, "running_since": seen.get(inst["fid"], {}).get("running_since")
                          or (when if inst["status"] == "STATUS_RUNNING" else None)}
                         for inst in snapshot["instances"]]
        after = (row.bid_id, row.status, row.cost_cents, [(i["fid"], i["status"], i.get("ssh"))
                                                          for i in row.instances])
        events: list[Event] = []
        if after != before:
            self._save(row)
        if after[2] != before[2]:
            events.append(self._cost(row.job_id))
        if row.must_delete:
            return events
        if row.started is None and row.status in ("Canceled", "Ended", "Gone"):
            row.outcome = row.status.upper()  # over before the job could run on it: reserve again
            self.withdraw(row.job_id, task=row.plan.get("task"))
            events.append(Changed(row.job_id))
        elif row.started is None and (after != before or self.reservation_reason(row) != reason_before):
            events.append(Changed(row.job_id))
        return events


__all__ = ["READY", "RESERVED", "ReservedCapacity", "is_reserved"]
