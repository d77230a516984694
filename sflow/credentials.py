"""sflow's own credentials: which environment variables they are, and when one may leave this process.

The one list of secret names: a submission's environment, a job's exported
environment, a remote command's environment and a remote instance's job
environment all leave these out. A submission carries one only when the job
names it in ``--export`` (``--export=ALL,MITHRIL_API_KEY``; on the command
line, in ``SBATCH_EXPORT`` or in an ``#SBATCH --export`` directive, with
sbatch's precedence); the default ``--export=ALL`` never sends it.

The client calls ``submission_env`` on every submission; shlex is loaded only
when a secret is actually in the environment and a script must be read for it.
"""

from __future__ import annotations

import re  # already loaded by the client (json needs it)

from sflow.errors import SflowError
from sflow.slurm.getopt import getopt

SECRET_NAMES = frozenset({"MITHRIL_API_KEY"})


def submission_env(env: dict, argv: list[str], script: str | None) -> dict:
    """``env`` without the secrets the job does not export by name (``script``: the text submitted)."""
    present = [name for name in SECRET_NAMES if name in env]
    if not present:
        return env
    named = exported_names(argv, env, script)
    return {name: value for name, value in env.items() if name not in SECRET_NAMES or name in named}


def exported_names(argv: list[str], env: dict, script: str | None) -> set[str]:
    """The variables the effective ``--export`` names bare (``NAME``, taking its value from ``env``).

    A submission the controller will refuse anyway (bad options) names nothing:
    when in doubt, the secret stays.
    """
    try:
        command_line = getopt("sbatch", list(argv))
    except SflowError:
        return set()
    value = _last_export(command_line.options)
    if value is None:
        value = env.get("SBATCH_EXPORT")
    if value is None and not any(option.field == "wrap" for option, _ in command_line.options):
        value = _directive_export(script or "")
    return _bare_names(value) if value else set()


def _last_export(options) -> str | None:
    values = [raw for option, raw in options if option.field == "export"]
    return values[-1] if values else None


def _directive_export(text: str) -> str | None:
    """The last ``--export`` of the script's ``#SBATCH`` header (the rule of ``sflow.slurm.script``)."""
    import shlex  # deferred: see the module's docstring (~0.3 ms, not otherwise on sbatch's path)

    found = None
    for number, line in enumerate(text.split("\n"), start=1):
        if number == 1 and line.startswith("#!"):
            continue
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        if not line.startswith("#SBATCH"):
            continue
        try:
            words = shlex.split(line[len("#SBATCH"):], comments=True)
            found = _last_export(getopt("sbatch", words).options) or found
        except (ValueError, SflowError):
            continue
    return found


def _bare_names(value: str) -> set[str]:
    # Commas inside quoted values do not separate items, as in sflow.slurm.values.parse_export.
    items = re.findall(r'(?:[^,"\']|"[^"]*"|\'[^\']*\')+', value)
    return {item.strip() for item in items if "=" not in item}


__all__ = ["SECRET_NAMES", "exported_names", "submission_env"]
