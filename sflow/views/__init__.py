"""What the read-only commands print, from records: squeue, sacct, sinfo, sstat, seff, scontrol show.

Public names load lazily (``sflow._surface``).
"""

from __future__ import annotations

from sflow._surface import lazy_surface

_HOMES = {
    "parse_squeue": "sflow.views.squeue",
    "render_squeue": "sflow.views.squeue",
    "sacct_main": "sflow.views.sacct",
    "sinfo_main": "sflow.views.sinfo",
    "sstat_main": "sflow.views.sstat",
    "report": "sflow.views.seff",
    "NodeUsage": "sflow.views.cluster_show",
    "node_states": "sflow.views.cluster_show",
    "scontrol_show": "sflow.views.cluster_show",
    "show_job": "sflow.views.job_show",
    "show_steps": "sflow.views.job_show",
    "billed": "sflow.views.costs",
    "cost_lines": "sflow.views.costs",
}

__all__ = sorted(_HOMES)

__getattr__, __dir__ = lazy_surface(__name__, _HOMES, globals())
