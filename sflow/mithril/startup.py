"""The startup script every bid carries: it puts sflow on the instance.

``srun`` inside a Mithril job runs on the job's first node and starts the
other nodes' tasks over SSH, so each instance needs sflow's commands on the
``PATH`` that a non-interactive SSH command sees. The script installs sflow
into its own virtual environment (``/opt/sflow``) and links the commands into
``/usr/local/bin``; where that is impossible (no root, no venv) it falls back
to ``pip install --user`` for ``ubuntu``, linking the commands the same way
when it can.

What is installed is the ``[mithril] sflow_install`` setting (or
``SFLOW_MITHRIL_INSTALL``): a pip requirement or a wheel URL; by default
``sflow==<this version>``; ``none`` leaves the image as it is. Mithril takes
at most 10,000 characters of script; a longer one (an absurd URL) is refused
by the API, and the job is held with its message.

Every spot bid's script also starts, first, the dead-man switch of
``sflow.mithril.deadman``, which deletes the bid once sflow stops renewing its
lease.

Emulated instances are this machine: the emulator records the script and does
not run it.
"""

from __future__ import annotations

import shlex
from importlib.metadata import PackageNotFoundError, version as dist_version

from sflow.mithril.deadman import snippet

MAX_CHARS = 10_000  # MARKET.md: a launch specification's startup script
COMMANDS = ("flow", "sflow", "sbatch", "srun", "salloc", "squeue", "scancel", "sinfo", "sacct", "scontrol")
NOTHING = ("", "none", "no", "false")
INSTANCE_USER = "ubuntu"  # who logs in on an instance (the images' user; the emulated hosts' too)

HEADER = """\
#!/bin/bash
set -u
log() { echo "sflow startup: $*" >&2; }
"""

TEMPLATE = """\
# sflow: install sflow so that srun in a job can start tasks on the other instances.
SFLOW_PACKAGE={package}
SFLOW_USER={user}
SFLOW_COMMANDS={commands}
link_from() {{
  for name in $SFLOW_COMMANDS; do
    [ -x "$1/$name" ] && ln -sf "$1/$name" "/usr/local/bin/$name"
  done
  return 0
}}
in_venv() {{
  [ "$(id -u)" = 0 ] || return 1
  python3 -m venv /opt/sflow 2>/dev/null || {{
    command -v apt-get >/dev/null || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null 2>&1 \\
      || {{ apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null 2>&1; }}
    python3 -m venv /opt/sflow
  }} || return 1
  /opt/sflow/bin/python -m pip install -q --upgrade "$SFLOW_PACKAGE" || return 1
  link_from /opt/sflow/bin
}}
as_user() {{
  if [ "$(id -un)" = "$SFLOW_USER" ]; then "$@"; else sudo -u "$SFLOW_USER" -H "$@"; fi
}}
for_user() {{
  as_user python3 -m pip install -q --user "$SFLOW_PACKAGE" \\
    || as_user python3 -m pip install -q --user --break-system-packages "$SFLOW_PACKAGE" || return 1
  [ "$(id -u)" = 0 ] && link_from "$(getent passwd "$SFLOW_USER" | cut -d: -f6)/.local/bin"
  return 0
}}
if in_venv || for_user; then
  log "installed $SFLOW_PACKAGE"
else
  log "could not install $SFLOW_PACKAGE; srun across instances needs sflow on PATH"
  exit 1
fi
"""


def version() -> str:
    try:
        return dist_version("sflow")
    except PackageNotFoundError:
        return "0.1.0"


def package(install: str | None) -> str | None:
    """What pip installs: the setting, else this version of sflow; None for ``none``."""
    if install is None:
        return f"sflow=={version()}"
    install = str(install).strip()
    return None if install.lower() in NOTHING else install


def script(install: str | None = None, deadman: dict | None = None) -> str | None:
    """The startup script for bids (None: nothing to do). ``deadman``: the settings of the watcher
    that deletes the bid if sflow stops renewing its lease (``sflow.mithril.deadman``); it starts
    first, before an install that may take minutes or fail. Every value is quoted once."""
    wanted = package(install)
    parts = [snippet(deadman)] if deadman is not None else []
    if wanted is not None:
        parts.append(TEMPLATE.format(package=shlex.quote(wanted), user=shlex.quote(INSTANCE_USER),
                                     commands=shlex.quote(" ".join(COMMANDS))))
    return HEADER + "".join(parts) if parts else None


__all__ = ["COMMANDS", "MAX_CHARS", "package", "script"]
