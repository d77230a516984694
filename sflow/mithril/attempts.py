"""How the worker thread takes a failed API call: given up (permanent) or tried again at the next poll.

Shared by the bid calls (``sflow.mithril.worker``) and the reservation calls
(``sflow.mithril.reserving``), which answer their creates the same way.
"""

from __future__ import annotations

from sflow.errors import MithrilError

PERMANENT_STATUSES = (400, 401, 403, 404, 409, 422)  # asking again gets the same answer


def is_permanent(err: MithrilError) -> bool:
    return err.status in PERMANENT_STATUSES


def attempt_create(creating: dict, key: str, spec: dict, make, report, failed: str):
    """What ``make()`` created, or None: a transient failure leaves ``spec`` in ``creating`` (retried
    each poll, with the same idempotency key), a permanent one drops it; either is reported as ``failed``."""
    try:
        made = make()
    except MithrilError as err:
        permanent = is_permanent(err)
        if permanent:
            creating.pop(key, None)
        else:
            creating[key] = spec
        report(failed, key, err.message, permanent)
        return None
    creating.pop(key, None)
    return made


__all__ = ["PERMANENT_STATUSES", "attempt_create", "is_permanent"]
