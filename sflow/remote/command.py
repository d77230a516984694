"""The one string sent to a remote shell: the environment, the directory, the command.

SSH carries a command as a single string that the remote user's shell
parses, so every value sflow puts into it goes through ``shlex.quote``; only
the caller's command itself is shell text on purpose, and even that is
quoted once more and handed to a fresh ``/bin/sh -c`` so that its syntax
cannot disturb the lines around it.

Before the command runs, the wrapper prints ``#sflow-pgid <pid>`` as the
first line of stderr (the client strips it). sshd starts each command in a
session of its own, so that pid is also the process group of everything the
command starts: signalling the group reaches all of it.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Mapping

from sflow.credentials import SECRET_NAMES  # sflow's own: never in a remote environment or command line
from sflow.errors import SflowError

PGID_MARKER = b"#sflow-pgid "
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class SecretRefused(SflowError):
    def __init__(self, name: str):
        super().__init__(f"refusing to send the value of {name} to a remote host")


def remote_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """``env`` fit for a remote shell: secrets dropped, and names a shell
    cannot assign (bash's exported functions, ``BASH_FUNC_x%%``) left out."""
    chosen = {}
    for name, value in (env or {}).items():
        if name in SECRET_NAMES or not _NAME.match(name):
            continue
        if "\0" in value:
            raise ValueError(f"environment variable {name} contains a NUL byte")
        chosen[name] = value
    return chosen


def refuse_secrets(texts, environ: Mapping[str, str] = os.environ) -> None:
    """Raise SecretRefused if a local secret's value occurs in any of ``texts``."""
    for name in SECRET_NAMES:
        secret = environ.get(name, "")
        if len(secret) >= 4 and any(secret in text for text in texts):
            raise SecretRefused(name)


def build_command(command: str, env: Mapping[str, str] | None = None, cwd: str | None = None,
                  *, report_pgid: bool = True, environ: Mapping[str, str] = os.environ) -> str:
    """The remote command line that runs ``command`` (shell text) with ``env`` in ``cwd``."""
    env = remote_env(env)
    refuse_secrets([command, cwd or "", *env.values()], environ)
    lines = []
    if env:
        lines.append("export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items()))
    if cwd:
        lines.append(f"cd -- {shlex.quote(cwd)} || exit 1")
    if report_pgid:
        lines.append(f"printf '{PGID_MARKER.decode()}%s\\n' \"$$\" >&2")
    lines.append(f"exec /bin/sh -c {shlex.quote(command)}")
    # The whole wrapper is one quoted word too: whatever the login shell is,
    # it only has to run /bin/sh with one argument.
    return _utf8_line(f"exec /bin/sh -c {shlex.quote(chr(10).join(lines))}")


def _utf8_line(line: str) -> str:
    """``line`` as UTF-8 text SSH can carry, even with values of any bytes (surrogateescape).

    Bytes that are not UTF-8 are spelled as printf octal escapes, which the
    remote shell turns back into those bytes before running the line.
    """
    try:
        line.encode("utf-8")
        return line
    except UnicodeEncodeError:
        pass
    spelled = "".join(f"\\0{ord(c) - 0xDC00:03o}" if "\udc80" <= c <= "\udcff" else "\\\\" if c == "\\" else c
                      for c in line)
    return f'exec /bin/sh -c "$(printf %b {shlex.quote(spelled)})"'
