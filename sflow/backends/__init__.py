"""Where jobs run: one seam (``base.Backend``), a backend per partition's ``Backend=``."""

from __future__ import annotations

import os

from sflow.backends.base import BackendContext
from sflow.errors import SlurmError
from sflow.mithril.client import config_path, read_config  # import-light: no httpx until a client is made

NAMES = ("local", "mithril", "fake")  # what make_backend makes


def default_name(environ=None) -> str:
    """``backend`` in the ``[sflow]`` table of the config file: where jobs go when neither the job
    (``#SFLOW --backend``, ``SFLOW_BACKEND``) nor its partition (``Backend=``) says."""
    env = os.environ if environ is None else environ
    # What the path is made from (a "~" is the process's HOME): the path itself is made once.
    made_from = (env.get("SFLOW_CONFIG") or "", os.environ.get("HOME"))
    path = _PATHS.get(made_from)
    if path is None:
        if len(_PATHS) > 64:  # clients naming ever other files: the memory stays bounded
            _PATHS.clear()
            _DEFAULTS.clear()
        path = _PATHS[made_from] = config_path(environ)
    try:
        st = os.stat(path)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)
    except OSError:
        stamp = None
    known = _DEFAULTS.get(path)
    if known is not None and known[0] == stamp:
        return known[1]  # read again only when the file changed: the controller asks at every submission
    try:
        table = read_config(path).get("sflow") or {}
    except Exception:  # an unreadable file chooses nothing; the Mithril backend says why when used
        return "local"
    value = str(table.get("backend", "local")).lower() if isinstance(table, dict) else "local"
    name = value if value in NAMES else "local"
    _DEFAULTS[path] = (stamp, name)
    return name


# The config file's choice, by path: (the file's stamp when read, the backend it names).
_DEFAULTS: dict = {}
_PATHS: dict = {}  # the config file's path, by what it is made from


def chosen_name(request, cluster, default: str | None = None) -> str:
    """The backend that places ``request``: the job's own choice if it made one, else its first
    partition's ``Backend=`` when the line says it, else ``default`` (the config file's)."""
    if request.cloud.backend is not None:
        return request.cloud.backend
    name = request.partition.split(",")[0] if request.partition else None
    try:
        partition = cluster.partition(name)
    except SlurmError:  # refused with SLURM's words by the partition check
        return "local"
    if partition.backend_given:
        return partition.backend
    return default or "local"


def make_backend(name: str, cluster, context: BackendContext):
    """The backend a partition names, by name."""
    if name == "local":
        from sflow.backends.local import LocalBackend  # deferred: each backend loads when a job needs it

        return LocalBackend(cluster, context.home)
    if name == "mithril":
        from sflow.backends.mithril import MithrilBackend  # deferred: httpx and pydantic with it

        backend = MithrilBackend(context)
        backend.reload()
        return backend
    if name == "fake":
        from sflow.backends.fake import FakeBackend  # deferred: tests' only

        return FakeBackend()
    raise SlurmError(f"Batch job submission failed: backend {name} is not available")


def with_records(conn) -> list[str]:
    """The backends a previous controller left records to follow in the store (made again at start)."""
    from sflow.mithril import bids  # deferred: the store's schema loads it already, no cost here

    return ["mithril"] if bids.any_to_follow(conn) else []


__all__ = ["NAMES", "chosen_name", "default_name", "make_backend", "with_records"]
