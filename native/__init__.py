"""The native client of the drop-in commands (``sflow-client.c``), and how it is built.

The package's build (``setup.py``) compiles it and installs it as each of ``COMMANDS`` in the
scripts directory; without a working C compiler those are Python scripts that run the shims.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sflow-client.c")
BINARY = "sflow-client"
# The commands the client runs through the controller; it runs every other as the Python shim.
COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "sinfo", "scontrol")


def compile_client(out: str, python: str = sys.executable, source: str = SOURCE) -> str | None:
    """Compile the client to ``out``; None, and why in one line on stderr, without a working C compiler."""
    compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc") or ""]
    if not compiler[0]:
        return _not_built("no C compiler found")
    # The interpreter the client falls back to, as a C string literal.
    literal = '"' + python.replace("\\", "\\\\").replace('"', '\\"') + '"'
    command = [*compiler, "-std=c99", "-O2", f"-DSFLOW_PYTHON={literal}", "-o", out, source]
    try:
        # Linked statically where the C library allows it: no dynamic loader to run at each start
        # (about half a millisecond of every command). Else as usual.
        done = subprocess.run([*command, "-static"], capture_output=True, text=True)
        if done.returncode != 0:
            done = subprocess.run(command, capture_output=True, text=True)
    except OSError as err:
        return _not_built(f"{compiler[0]}: {err.strerror}")
    if done.returncode != 0:
        first = next((line for line in done.stderr.splitlines() if "error" in line), "")
        return _not_built(f"{' '.join(compiler)} failed" + (f": {first.strip()}" if first else ""))
    return out


def _not_built(why: str) -> None:
    print(f"sflow: native client not built ({why}): sbatch, squeue, scancel, sacct, sinfo and scontrol "
          "are Python scripts", file=sys.stderr)
    return None


def command_dir(directory: str, binary: str) -> str:
    """``directory`` with the client under each command's name (for PATH)."""
    os.makedirs(directory, exist_ok=True)
    for name in COMMANDS:
        link = os.path.join(directory, name)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(binary, link)
    return directory
