"""What of an environment travels to another machine, and where a job's files live there.

SLURM exports the submit environment to the job because every node shares
the submitting machine's layout. A cloud instance does not: its own HOME,
PATH, shell and temporary directory must stay, and so do sflow's settings,
its secrets (``sflow.credentials``) and the settings of the backend that
placed the job (the prefixes its allocation withholds: Mithril's API key and
address). Variables named explicitly with ``--export=NAME=value`` still
travel, secrets excepted.

On an instance, paths are relative to the login user's home (where SSH
commands start and SFTP is rooted):

| path | what |
| --- | --- |
| ``sflow-job-<id>/`` | the staged submit directory (``SLURM_SUBMIT_DIR``) |
| ``.sflow/`` | ``SFLOW_HOME`` for ``srun`` inside the job |
| ``.sflow/jobs/<id>/`` | ``context.json``, ``slurm_script``, the batch step's ``stdout``/``stderr``/``status``, ``steps.jsonl`` |
| ``.sflow/ssh/``, ``.sflow/known_hosts`` | on the first node only: how its ``srun`` reaches the others |
| ``.sflow/lease`` | touched by the job's agent while sflow is alive (``sflow.mithril.deadman``) |
"""

from __future__ import annotations

from typing import Mapping

from sflow.credentials import SECRET_NAMES
from sflow.records import NODE_LEASE, NODE_STATE_DIR

# This machine's, not the instance's.
LOCAL_ONLY = frozenset({
    "HOME", "PATH", "PWD", "OLDPWD", "SHELL", "USER", "LOGNAME", "HOSTNAME", "TMPDIR", "TERM", "DISPLAY", "MAIL",
    "SHLVL", "_", "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV", "SFLOW_HOSTNAME", "LANG", "LANGUAGE",
})
LOCAL_PREFIXES = ("SSH_", "XDG_", "SFLOW_", "CONDA_", "DBUS_", "LC_")

STATE_DIR, LEASE = NODE_STATE_DIR, NODE_LEASE


def portable(env: Mapping[str, str], keep: Mapping[str, str] | None = None,
             withheld: tuple[str, ...] = ()) -> dict[str, str]:
    """``env`` without what belongs to this machine, nor names starting with a ``withheld`` prefix (the
    backend's own settings); ``keep`` (explicit ``--export`` values) always goes, secrets excepted."""
    local = LOCAL_PREFIXES + tuple(withheld)
    chosen = {k: v for k, v in env.items() if k not in LOCAL_ONLY and k not in SECRET_NAMES
              and not k.startswith(local) and not k.startswith("BASH_FUNC_")}
    for name, value in (keep or {}).items():
        if name not in SECRET_NAMES:
            chosen[name] = value
    return chosen


def submit_dir(job_id: int) -> str:
    return f"sflow-job-{job_id}"


def job_dir(job_id: int) -> str:
    return f"{STATE_DIR}/jobs/{job_id}"


def relative_to_home(path: str, home: str) -> str:
    """A remote absolute path under ``home`` as the relative path another instance understands."""
    home = home.rstrip("/")
    if path == home:
        return "."
    if home and path.startswith(home + "/"):
        return path[len(home) + 1:]
    return path


__all__ = ["LOCAL_ONLY", "STATE_DIR", "job_dir", "portable", "relative_to_home", "submit_dir"]
