"""sflow: a SLURM-compatible batch scheduler frontend.

Kept import-light on purpose: the shims import this package on every call.
"""

__version__ = "0.1.0"
