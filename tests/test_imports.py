"""Where modules import: at their top, so each file shows what it depends on, and never so
that a drop-in command pays for what it does not use (pipelines call them in tight loops)."""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tokenize

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "sflow")

# The commands, the views, the executor, the language and the small shared modules.
CHECKED = ("cli", "views", "exec", "slurm", "queue", "backends", "conf.py", "records.py", "errors.py", "credentials.py")
# flow imports each subcommand's needs when it runs, as the shims import their command (its docstring).
PER_SUBCOMMAND = {os.path.join("cli", "flow.py")}

SHIMS = ("sbatch", "squeue", "scancel", "sacct", "sinfo", "scontrol", "srun", "salloc", "sstat", "seff")
HEAVY = ("lark", "pydantic", "httpx", "asyncssh", "tabulate", "click")
# What a command that never needs it must not load: the store (sqlite3) for the commands that
# talk to the controller, the socket client for the ones that only read, value parsing for squeue.
NOT_LOADED = {
    "sbatch": ("sqlite3", "sflow.queue.reader"),
    "scancel": ("sqlite3", "sflow.queue.reader"),
    "squeue": ("sflow.queue.client", "sflow.slurm.values"),
    "sacct": ("sflow.queue.client",),
    "sinfo": ("sflow.queue.client", "sflow.views.squeue"),
    "scontrol": ("sflow.queue.client", "sflow.views.sinfo"),
    "sstat": ("sflow.queue.client", "sflow.slurm.getopt"),
    "seff": ("sflow.queue.client", "sflow.slurm.getopt"),
}


def _files() -> list[str]:
    found = []
    for entry in CHECKED:
        path = os.path.join(PACKAGE, entry)
        if entry.endswith(".py"):
            found.append(entry)
            continue
        for directory, _, names in os.walk(path):
            found += [os.path.relpath(os.path.join(directory, n), PACKAGE) for n in names if n.endswith(".py")]
    return sorted(found)


def _deferred_without_reason(source: str) -> list[str]:
    """Imports inside functions or classes with no ``deferred`` word on their line, the line
    above, or (for a group) the first import of their group."""
    comments = {tok.start[0]: tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    tree = ast.parse(source)
    bad = []
    for scope in ast.walk(tree):
        if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        reason = False
        for node in scope.body:
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                # An import deeper in (an if, a try) is a statement of its own block.
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)) and not _explained(inner, comments, lines):
                        bad.append(f"{inner.lineno}: {lines[inner.lineno - 1].strip()}")
                reason = False
                continue
            reason = reason or _explained(node, comments, lines)
            if not reason:
                bad.append(f"{node.lineno}: {lines[node.lineno - 1].strip()}")
    return sorted(set(bad))


def _explained(node, comments: dict[int, str], lines: list[str]) -> bool:
    said = [comments.get(n, "") for n in range(node.lineno - 1, node.end_lineno + 1)]
    # A group of deferred imports shares the comment over its first line, blank lines between.
    above = node.lineno - 1
    while above > 0 and lines[above - 1].strip().startswith(("import ", "from ")) or \
            (above > 0 and not lines[above - 1].strip() and above - 1 > 0
             and lines[above - 2].strip().startswith(("import ", "from ", "#"))):
        above -= 1
        said.append(comments.get(above, ""))
    return any("deferred" in text for text in said)


@pytest.mark.parametrize("path", [p for p in _files() if p not in PER_SUBCOMMAND])
def test_an_import_inside_a_function_says_why_it_waits(path):
    with open(os.path.join(PACKAGE, path), encoding="utf-8") as handle:
        assert _deferred_without_reason(handle.read()) == []


def test_the_rule_sees_an_unexplained_import():
    source = ("def f():\n    import json\n\n    return json\n\n\n"
              "def g():\n    # deferred: costs\n    import json\n    import os\n\n    return json, os\n\n\n"
              "def h():\n    if True:\n        import os  # deferred: costs\n    return os\n")
    assert _deferred_without_reason(source) == ["2: import json"]


def _loaded(shim: str, code: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


@pytest.mark.parametrize("shim", SHIMS)
def test_a_command_loads_nothing_heavy(shim):
    # site may load modules of its own before sflow: only what sflow's import adds counts.
    loaded = _loaded(shim, "import sys; before = set(sys.modules); import sflow.cli.cmd_%s; "
                           "print(*sorted(set(sys.modules) - before))" % shim)
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY or m in NOT_LOADED.get(shim, ())]
    assert heavy == []


@pytest.mark.parametrize("shim", ["squeue", "sacct", "sinfo", "sstat", "seff"])
def test_a_reading_command_at_work_loads_nothing_it_does_not_need(shim, tmp_path):
    # The command as it runs (an empty store), every module it loaded noted as it exits.
    code = ("import atexit, sys; before = set(sys.modules); "
            "atexit.register(lambda: print(*sorted(set(sys.modules) - before))); "
            "sys.argv = [%r] + %r; from sflow.cli import shims; shims.%s()" % (shim, ["1"] if shim == "seff" else [], shim))
    env_home = str(tmp_path)
    env = dict(os.environ, PYTHONPATH=ROOT, SFLOW_HOME=env_home)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    loaded = set(out.stdout.split())
    assert f"sflow.cli.cmd_{shim}" in loaded, out.stderr  # it ran, and said what it loaded
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY or m in NOT_LOADED.get(shim, ())]
    assert heavy == [], out.stderr


@pytest.mark.parametrize("package", ["sflow.cli", "sflow.views", "sflow.exec", "sflow.slurm"])
def test_a_package_states_its_public_names_and_loads_them_when_asked(package):
    code = ("import importlib, sys; before = set(sys.modules); p = importlib.import_module(%r); "
            "print(*sorted(m for m in set(sys.modules) - before if m.startswith(%r + '.'))); "
            "print(*[n for n in p.__all__ if getattr(p, n) is None])" % (package, package))
    first, missing = (_loaded_lines(code) + ["", ""])[:2]
    assert first.split() == [], "importing the package loaded its modules"
    assert missing.split() == []


def _loaded_lines(code: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")


def test_a_submodule_is_still_a_submodule():
    from sflow.exec import steplog
    from sflow.slurm import getopt

    assert steplog.__name__ == "sflow.exec.steplog" and getopt.__name__ == "sflow.slurm.getopt"
