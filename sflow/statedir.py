"""The state directory, ``home()``: where sflow keeps its store, keys and job files.

Standard library ``os`` only: every shim finds it on its way to the socket
(through ``sflow.queue.paths``), and the layers below the queue (SSH, Mithril)
need it without the queue.
"""

from __future__ import annotations

import os


def home_path(env=os.environ) -> str:
    """Where the state lives ($SFLOW_HOME, else $XDG_STATE_HOME/sflow), without making it."""
    path = env.get("SFLOW_HOME")
    if not path:
        state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        path = os.path.join(state, "sflow")
    return path


def home(env=os.environ) -> str:
    """The state directory, made (0700) if missing."""
    path = home_path(env)
    if not os.path.isdir(path):  # a stat: cheaper than the mkdir that would fail, on every command
        os.makedirs(path, mode=0o700, exist_ok=True)
    return path


__all__ = ["home", "home_path"]
