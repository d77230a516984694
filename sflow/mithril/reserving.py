"""The worker thread's reservation calls: availability, create, watch, release.

Used by ``sflow.mithril.worker.Worker`` (the thread that makes every API
call); the controller hands it commands through ``Worker.reservation`` and
reads what came back among the worker's reports:

- ``("check", key, spec)`` -> ``("res_window", key, start)`` once the
  reservation's instances are free for its whole window from ``start``
  (now if they are, else the earliest window of
  ``/v2/reservation/availability``); ``("res_unavailable", key, message)``
  otherwise, asked again every poll. Nothing is reserved yet: the
  controller commits the start first, so a retried create sends the same
  body with the same idempotency key.
- ``("create", key, spec)`` -> ``("res_created", key, snapshot)`` or
  ``("res_create_failed", key, message, permanent)``; transient failures are
  retried every poll.
- ``("watch", key, reservation_id)`` / ``("forget", key)``: every poll,
  ``("res_seen", {key: snapshot})``; a snapshot has the reservation's
  ``id``, ``status`` (``Gone`` when the project no longer lists it), its
  ``instances`` (fid, name, status, ssh destination), ``total_cents`` and
  ``when``.
- ``("release", key, reservation_id, spec)`` -> ``("res_released", key,
  when, reservation_id)`` once nothing of it can run any more: its instances
  terminated (``reduce_capacity``: the early-termination credit), or it
  ended. The API has no call that cancels a reservation, so one released
  before its window begins is kept watched and its instances terminated as
  soon as they exist. A reservation whose create was never answered is
  looked for by its name first: creating it again to learn its id would buy
  a window.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

from sflow.errors import MithrilError
from sflow.mithril.attempts import attempt_create
from sflow.mithril.client import NotFound

HORIZON_HOURS = 14 * 24  # how far ahead a window is looked for (Mithril reserves up to 2 weeks ahead)
OVER = ("Canceled", "Ended")
GONE_INSTANCE = ("STATUS_TERMINATED", "STATUS_PREEMPTED", "STATUS_REPLACED", "STATUS_ERROR")


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _epoch(value) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def first_window(slots, quantity: int, seconds: float, earliest: float) -> float | None:
    """The earliest start from which ``quantity`` instances are free for ``seconds`` (whole seconds)."""
    runs: list[list[float]] = []  # [start, end] of back-to-back slots with enough instances
    for slot in sorted(slots, key=lambda s: _epoch(s.start_time)):
        start, end = max(_epoch(slot.start_time), earliest), _epoch(slot.end_time)
        if slot.quantity < quantity or end <= start:
            continue
        if runs and start <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    for start, end in runs:
        begin = math.ceil(start)
        if end - begin >= seconds:
            return float(begin)
    return None


def _available(answer) -> bool:
    # The schema declares a list of slots for every mode; mode=check's description gives {available}.
    if isinstance(answer, list):
        return bool(answer)
    return bool(getattr(answer, "available", False))


class Reservations:
    """Reservation work of one worker thread (``worker`` gives the client, project, key and reports)."""

    def __init__(self, worker):
        self.worker = worker
        self.checking: dict[str, dict] = {}  # key -> spec, until a window is found
        self.creating: dict[str, dict] = {}  # key -> spec, failed transiently: retried each poll
        self.watched: dict[str, str] = {}  # key -> reservation id
        self.releasing: dict[str, tuple[str | None, dict]] = {}  # key -> (reservation id, spec)

    def waiting(self) -> bool:
        return bool(self.checking or self.creating or self.watched or self.releasing)

    def busy(self) -> bool:
        return bool(self.checking or self.creating or self.releasing)

    def do(self, command: tuple) -> None:
        kind = command[0]
        if kind == "check":
            self.checking[command[1]] = command[2]
            self._check(command[1])
        elif kind == "create":
            self.checking.pop(command[1], None)
            self._create(command[1], command[2])
        elif kind == "watch":
            self.watched[command[1]] = command[2]
        elif kind == "forget":
            self.watched.pop(command[1], None)
        elif kind == "release":
            self.checking.pop(command[1], None)
            self.creating.pop(command[1], None)
            self.releasing[command[1]] = (command[2], command[3])
            self._release(command[1])

    def retry(self) -> None:
        for key in list(self.releasing):
            self._release(key)
        for key in list(self.checking):
            self._check(key)
        for key, spec in list(self.creating.items()):
            self._create(key, spec)

    # ------------------------------------------------------------ availability

    def _check(self, key: str) -> None:
        spec = self.checking[key]
        try:
            start = self._window(spec, time.time())
        except MithrilError as err:
            self.worker.report("res_unavailable", key, err.message)
            return
        if start is None:
            self.worker.report("res_unavailable", key, f"no window of {spec['hours']} hours for "
                                f"{spec['quantity']} x {spec['type_name']} in {spec['region']} in the next two weeks")
            return
        self.checking.pop(key, None)
        self.worker.report("res_window", key, start)

    def _window(self, spec: dict, now: float) -> float | None:
        client, project = self.worker.client(), self.worker.project()
        seconds = spec["hours"] * 3600
        start = float(math.ceil(now))
        where = dict(project=project, instance_type=spec["type_id"], region=spec["region"])
        answer = client.reservation_availability(**where, mode="check", start_time=_utc(start),
                                                 end_time=_utc(start + seconds), quantity=spec["quantity"])
        if _available(answer):
            return start
        slots = client.reservation_availability(**where, mode="slots", earliest_start_time=_utc(start),
                                                latest_end_time=_utc(start + HORIZON_HOURS * 3600 + seconds))
        return first_window(slots if isinstance(slots, list) else [], spec["quantity"], seconds, start)

    # ------------------------------------------------------------ create

    def _body(self, spec: dict) -> dict:
        # The same spec always makes the same body: a retried create must match the first.
        body = {"project": self.worker.project(), "instance_type": spec["type_id"], "region": spec["region"],
                "start_time": _utc(spec["start"]), "end_time": _utc(spec["start"] + spec["hours"] * 3600),
                "instance_quantity": spec["quantity"], "name": spec["name"],
                "launch_specification": self.worker.launch_specification(self.worker.ssh_key())}  # the same as a bid's
        if spec.get("max_unit_cents") is not None:
            body["price_specification"] = {"max_unit_price": spec["max_unit_cents"]}
        return body

    def _create(self, key: str, spec: dict) -> None:
        reservation = attempt_create(
            self.creating, key, spec,
            lambda: self.worker.client().create_reservation(self._body(spec), idempotency_key=key),
            self.worker.report, "res_create_failed")
        if reservation is None:
            return
        self.watched[key] = reservation.fid
        self.worker.report("res_created", key, self._snapshot(reservation, []))

    # ------------------------------------------------------------ watching

    @staticmethod
    def _snapshot(reservation, instances: list) -> dict:
        return {"id": reservation.fid, "status": reservation.status, "instances": instances, "when": time.time(),
                "start": _epoch(reservation.start_time), "end": _epoch(reservation.end_time),
                "total_cents": reservation.total_price_cents}

    def _listed(self) -> dict:
        """The project's reservations by id."""
        client, project = self.worker.client(), self.worker.project()
        return {r.fid: r for r in client.reservations(project)}

    def _instances(self, ids: list[str]) -> dict[str, list]:
        """The instances of these reservations, by reservation id."""
        out: dict[str, list] = {fid: [] for fid in ids}
        if not ids:
            return out
        client, project = self.worker.client(), self.worker.project()
        for inst in client.list_instances(project, reservation=ids):
            if inst.reservation in out:
                out[inst.reservation].append({"fid": inst.fid, "name": inst.name, "status": inst.status,
                                              "ssh": inst.ssh_destination})
        return out

    def poll(self) -> None:
        if not self.watched:
            return
        try:
            listed = self._listed()
            busy = [fid for fid in self.watched.values() if fid in listed and listed[fid].instances]
            instances = self._instances(busy)
        except MithrilError as err:
            for key in self.watched:
                self.worker.report("poll_failed", key, err.message)
            return
        snapshots = {}
        for key, fid in self.watched.items():
            found = listed.get(fid)
            if found is None:
                snapshots[key] = {"id": fid, "status": "Gone", "instances": [], "when": time.time()}
            else:
                snapshots[key] = self._snapshot(found, instances.get(fid, []))
        self.worker.report("res_seen", snapshots)

    # ------------------------------------------------------------ release

    def _release(self, key: str) -> None:
        try:
            done, fid = self._give_back(key)
        except MithrilError as err:
            self.worker.report("delete_failed", key, err.message)
            return
        if not done:
            return  # before its window: its instances do not exist yet
        self.releasing.pop(key, None)
        self.watched.pop(key, None)
        self.worker.report("res_released", key, time.time(), fid)

    def _give_back(self, key: str) -> tuple[bool, str | None]:
        """(whether nothing of it can run any more, its id)."""
        fid, spec = self.releasing[key]
        if fid is None and spec.get("start") is None:
            return True, None  # never asked for: its window was not even chosen
        listed = self._listed()
        if fid is None:
            fid = self._by_name(listed, spec)
            if fid is None:
                return True, None  # the create never reached Mithril
            self.releasing[key] = (fid, spec)
        found = listed.get(fid)
        if found is None or found.status in OVER:
            return True, fid
        live = [i["fid"] for i in self._instances([fid])[fid] if i["status"] not in GONE_INSTANCE]
        if not live:
            return bool(found.instances), fid  # none yet (Pending): terminated once they exist
        try:
            ended = self.worker.client().terminate_reservation_instances(fid, live)
        except NotFound:
            return False, fid  # an instance went meanwhile: looked at again next poll
        except MithrilError as err:
            if err.status == 400:  # already ended
                return True, fid
            raise
        return set(ended) >= set(live), fid

    @staticmethod
    def _by_name(listed: dict, spec: dict) -> str | None:
        start = spec["start"]
        for reservation in listed.values():
            if reservation.name == spec["name"] and abs(_epoch(reservation.start_time) - start) < 1:
                return reservation.fid
        return None


__all__ = ["Reservations", "first_window"]
