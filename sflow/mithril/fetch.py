"""What the Mithril backend reads from outside: its settings, and the market as a ``Catalog``.

Settings come from the ``[mithril]`` table of ``$SFLOW_CONFIG`` (default
``~/.config/sflow/config.toml``) and a few environment variables:

| setting | environment | config key | default |
| --- | --- | --- | --- |
| API key | ``MITHRIL_API_KEY`` | ``api_key`` | (required) |
| API address | ``MITHRIL_API_URL`` | ``api_url`` | ``https://api.mithril.ai`` |
| project (name or id) | ``MITHRIL_PROJECT`` | ``project`` | the first project |
| seconds between looks at bids | ``SFLOW_MITHRIL_POLL`` | ``poll_seconds`` | 5 |
| what bids install on instances | ``SFLOW_MITHRIL_INSTALL`` | ``sflow_install`` | ``sflow==<version>`` |
| the dead-man switch on spot instances | ``SFLOW_MITHRIL_DEADMAN`` | ``deadman`` | on |
| its lease, renewal, first window, margin... | ``SFLOW_MITHRIL_<KEY>`` | ``lease_seconds`` and the other ``deadman.DEFAULTS`` | see docs/mithril.md |
| translator settings | | ``gpu_types``, ``headroom``, ``max_price_per_gpu_hour``, ``reserved_partitions`` | see docs/mithril.md |

``fetch_catalog`` asks the API for the instance types, the spot auctions and
the current prices, and hands them to ``Catalog.from_api``: the translator
stays pure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from sflow.errors import MithrilError
from sflow.mithril import translate
from sflow.mithril.catalog import Catalog
from sflow.mithril.client import MithrilClient, config_path, read_config
from sflow.mithril.deadman import DEFAULTS
from sflow.mithril.startup import script

PLAN_KEYS = ("gpu_types", "headroom", "max_price_per_gpu_hour", "reserved_partitions")
DEFAULT_POLL_SECONDS = 5.0


@dataclass
class Settings:
    api_url: str | None = None
    project: str | None = None
    poll_seconds: float = DEFAULT_POLL_SECONDS
    plan: dict = field(default_factory=dict)  # PlanConfig's fields
    install: str | None = "none"  # what every bid's startup script installs (``sflow.mithril.startup``)
    deadman: dict | None = None  # the dead-man switch's settings (``sflow.mithril.deadman``); None: off
    # A whole startup script given by the caller (the burst service's ``startup_script``), carried as is
    # by bids without a dead-man switch instead of sflow's install; None: sflow's own script.
    own_startup_script: str | None = None

    @property
    def startup_script(self) -> str | None:
        """The startup script of a bid without a dead-man switch."""
        return self.own_startup_script or script(self.install)

    def __repr__(self) -> str:  # nothing secret is held here, but keep reprs short in logs
        return f"Settings(api_url={self.api_url!r}, project={self.project!r}, poll_seconds={self.poll_seconds})"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    try:
        table = read_config(config_path(env)).get("mithril") or {}
    except Exception:  # an unreadable file is reported when the key is read; settings fall back
        table = {}
    if not isinstance(table, dict):
        table = {}
    try:
        poll = float(env.get("SFLOW_MITHRIL_POLL") or table.get("poll_seconds") or DEFAULT_POLL_SECONDS)
    except ValueError:
        poll = DEFAULT_POLL_SECONDS
    deadman = None
    switch = str(env.get("SFLOW_MITHRIL_DEADMAN", table.get("deadman", "on"))).strip().lower()
    if switch not in ("off", "false", "no", "0", "none"):
        deadman = {}
        for name, default in DEFAULTS.items():
            try:
                value = float(env.get(f"SFLOW_MITHRIL_{name.upper()}") or table.get(name) or default)
            except (TypeError, ValueError):
                value = default
            deadman[name] = value if value > 0 else default
    return Settings(
        api_url=env.get("MITHRIL_API_URL") or table.get("api_url") or None,
        project=env.get("MITHRIL_PROJECT") or table.get("project") or None,
        poll_seconds=max(0.05, poll),
        plan={k: table[k] for k in PLAN_KEYS if k in table},
        install=env.get("SFLOW_MITHRIL_INSTALL", table.get("sflow_install")),
        deadman=deadman,
    )


def fetch_catalog(client):
    """The market now, as the translator reads it."""
    types = [t.model_dump(mode="json") for t in client.instance_types()]
    auctions = [a.model_dump(mode="json") for a in client.spot_availability()]
    offered = {a["instance_type"] for a in auctions}
    # Prices per instance type (not per region): the auctions already carry each region's price,
    # and this adds the minimum and reserved prices the translator checks limits against.
    pricing = {t["fid"]: client.current_prices(t["fid"]).model_dump(mode="json")
               for t in types if t["fid"] in offered}
    return Catalog.from_api(types, auctions, pricing)


def plan_now(request):
    """The request's plan against the market as it is now, asked from this process (a dry run)."""
    settings = load_settings()
    with MithrilClient(base_url=settings.api_url) as client:
        return translate.plan(request, fetch_catalog(client), settings.plan)


def choose_project(client, wanted: str | None) -> str:
    """The project's id: the one named (by name or id), else the first."""
    projects = client.projects()
    if not projects:
        raise MithrilError("mithril: the account has no project")
    if wanted is None:
        return projects[0].fid
    for project in projects:
        if wanted in (project.fid, project.name):
            return project.fid
    names = ", ".join(p.name for p in projects)
    raise MithrilError(f"mithril: no project named {wanted}; projects: {names}")


__all__ = ["Settings", "choose_project", "fetch_catalog", "load_settings", "plan_now"]
