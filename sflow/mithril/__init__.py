"""Mithril: the API client and models, the translator from a job request to a bid plan, the
worker thread that makes the calls, the instances' start-up and dead-man switch."""

from sflow._surface import lazy_surface

# Where each public name is defined; resolved on first use, because the controller imports
# sflow.mithril.translate for every submission and must not load httpx, pydantic or asyncssh with it.
_HOMES = {
    "MithrilClient": "client", "load_api_key": "client", "save_api_key": "client", "new_idempotency_key": "client",
    "AuthError": "client", "Conflict": "client", "InvalidRequest": "client", "NotFound": "client",
    "Unavailable": "client", "Catalog": "catalog", "InstanceType": "catalog", "Market": "catalog",
    "Settings": "fetch", "fetch_catalog": "fetch", "load_settings": "fetch", "plan_now": "fetch",
    "plan": "translate", "default_limit": "translate", "format_plan": "translate", "Worker": "worker",
}

__all__ = sorted(_HOMES)

__getattr__, __dir__ = lazy_surface(__name__, _HOMES, globals())
