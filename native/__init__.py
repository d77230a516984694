"""The native client of the drop-in commands (``sflow-client.c``), and how it is built.

The wheel's build compiles it beside this file (``setup.py``); ``client()`` finds it.
Without a C compiler there is none, and the Python shims do all the work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sflow-client.c")
BINARY = "sflow-client"
# The commands the client runs through the controller; it runs every other as the Python shim.
COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "sinfo", "scontrol")


def compile_client(out: str, python: str = sys.executable, source: str = SOURCE) -> str | None:
    """Compile the client to ``out``; None (and why, on stderr) when there is no working C compiler."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        print("sflow: no C compiler found: the drop-in commands run as Python shims", file=sys.stderr)
        return None
    # The interpreter the client falls back to, as a C string literal.
    literal = '"' + python.replace("\\", "\\\\").replace('"', '\\"') + '"'
    done = subprocess.run([compiler, "-std=c99", "-O2", f"-DSFLOW_PYTHON={literal}", "-o", out, source],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"sflow: the native client did not compile, the drop-in commands run as Python shims:\n"
              f"{done.stderr}", file=sys.stderr)
        return None
    return out


def client() -> str | None:
    """The compiled client shipped with this installation, if any."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), BINARY)
    return path if os.access(path, os.X_OK) else None


def command_dir(directory: str, binary: str | None = None) -> str | None:
    """``directory`` with the client under each command's name (for PATH); None without a client."""
    binary = binary or client()
    if binary is None:
        return None
    os.makedirs(directory, exist_ok=True)
    for name in COMMANDS:
        link = os.path.join(directory, name)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(binary, link)
    return directory
