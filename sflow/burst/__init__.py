"""Bursting a real SLURM cluster onto Mithril: sflow as the cluster's power-saving programs.

``config`` turns the market (a ``Catalog``) and an admin's choices into the
slurm.conf, gres.conf and burst.toml text to install. Public names load lazily
(``sflow._surface``).
"""

from sflow._surface import lazy_surface

_HOMES = {
    "BurstPartition": "config", "PartitionSpec": "config", "Programs": "config", "Service": "config",
    "Timing": "config", "burst_toml": "config", "gres_conf": "config", "keyed": "config",
    "parse_partition": "config", "program_paths": "config", "real_memory_mb": "config", "resolve": "config",
    "slurm_conf": "config", "with_options": "config",
}

__all__ = sorted(_HOMES)

__getattr__, __dir__ = lazy_surface(__name__, _HOMES, globals())
