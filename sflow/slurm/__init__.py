"""SLURM's language: directives, options, values and the job request they make.

Public names load lazily (``sflow._surface``).
"""

from __future__ import annotations

from sflow._surface import lazy_surface

_HOMES = {
    "Submission": "sflow.slurm.request",
    "parse_sbatch": "sflow.slurm.request",
    "convert": "sflow.slurm.request",
    "JobRequest": "sflow.slurm.model",
    "SubmitFlags": "sflow.slurm.model",
    "ParsedArgs": "sflow.slurm.getopt",
    "with_environment": "sflow.slurm.getopt",
    "Option": "sflow.slurm.options",
    "OptionTable": "sflow.slurm.options",
    "table": "sflow.slurm.options",
    "IndexSet": "sflow.slurm.indexset",
    "InvalidValue": "sflow.slurm.values",
    "compress_hostlist": "sflow.slurm.values",
    "expand_hostlist": "sflow.slurm.values",
    "parse_array": "sflow.slurm.values",
    "parse_dependency": "sflow.slurm.values",
    "parse_memory_mb": "sflow.slurm.values",
    "parse_time_limit": "sflow.slurm.values",
    "Directive": "sflow.slurm.script",
    "directives": "sflow.slurm.script",
    "split_words": "sflow.slurm.script",
    "VERSION_LINE": "sflow.slurm.help",
    "render_help": "sflow.slurm.help",
    "render_usage": "sflow.slurm.help",
    "defined_options": "sflow.slurm.display",
    "format_memory_mb": "sflow.slurm.display",
}

__all__ = sorted(_HOMES)

__getattr__, __dir__ = lazy_surface(__name__, _HOMES, globals())
