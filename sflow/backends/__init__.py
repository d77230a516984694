"""Where jobs run: one seam (``base.Backend``), a backend per partition's ``Backend=``."""

from __future__ import annotations

from sflow.backends.base import BackendContext
from sflow.errors import SlurmError


def make_backend(name: str, cluster, context: BackendContext):
    """The backend a partition names, by name."""
    # Deferred: a backend's imports (Mithril's: httpx, pydantic) load only when a job needs it.
    if name == "local":
        from sflow.backends.local import LocalBackend

        return LocalBackend(cluster, context.home)
    if name == "mithril":
        from sflow.backends.mithril import MithrilBackend

        backend = MithrilBackend(context)
        backend.reload()
        return backend
    if name == "fake":
        from sflow.backends.fake import FakeBackend

        return FakeBackend()
    raise SlurmError(f"Batch job submission failed: backend {name} is not available")


def with_records(conn) -> list[str]:
    """The backends a previous controller left records to follow in the store (made again at start)."""
    from sflow.mithril import bids  # the store's schema loads it already: no cost here

    return ["mithril"] if bids.any_to_follow(conn) else []


__all__ = ["make_backend", "with_records"]
