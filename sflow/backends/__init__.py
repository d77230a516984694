"""Where jobs run: one seam (``base.Backend``), a backend per partition's ``Backend=``."""

from __future__ import annotations


def make_backend(name: str, cluster, home: str):
    """The backend a partition names; ``local`` is built in."""
    if name == "local":
        from sflow.backends.local import LocalBackend

        return LocalBackend(cluster, home)
    from sflow.errors import SlurmError

    raise SlurmError(f"Batch job submission failed: backend {name} is not available")
