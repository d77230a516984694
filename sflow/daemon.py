"""Starting a long-lived sflow process (the controller, the burst service) detached from its caller.

Standard library only: the drop-in commands and slurmctld's programs start one on demand.
"""

from __future__ import annotations

import os
import sys

# The directory holding the sflow package: a daemon imports the same sflow as its starter.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_detached(module: str, workdir: str, log_path: str, env: dict[str, str]) -> None:
    """Run ``python -m module`` in a session of its own, in ``workdir``, its output appended to
    ``log_path`` (0600), with ``env``: double-forked, so the caller neither waits for it nor
    leaves a zombie, and a terminal or slurmctld's process group never reaches it."""
    env = dict(env)
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = [sys.executable, "-m", module]
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    child = os.fork()
    if child == 0:  # the intermediate: new session, fork the daemon, leave
        try:
            os.setsid()
            if os.fork() == 0:
                os.chdir(workdir)
                os.umask(0o077)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.closerange(3, 65536)
                os.execve(sys.executable, argv, env)
        finally:
            os._exit(0)
    os.close(log)
    os.waitpid(child, 0)


__all__ = ["PACKAGE_ROOT", "start_detached"]
