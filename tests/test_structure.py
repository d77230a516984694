"""The package's shape: one definition of each shared name, no modules that import each other."""

from __future__ import annotations

import ast
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sflow")


def _modules() -> dict[str, ast.Module]:
    trees = {}
    for directory, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                with open(path, encoding="utf-8") as handle:
                    trees[module.removesuffix(".__init__")] = ast.parse(handle.read())
    return trees


TREES = _modules()


def _imports(module: str) -> set[str]:
    """Every sflow module that ``module`` names in an import, wherever the import stands."""
    found = set()
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in TREES and name != module}


def _defined_at_top(name: str) -> list[str]:
    return [module for module, tree in TREES.items() for node in tree.body
            if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name)
            or (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets))]


@pytest.mark.parametrize("name, home", [
    ("INFINITE", "sflow.records"), ("AllocatedNode", "sflow.records"), ("home", "sflow.statedir"),
    ("compress_counts", "sflow.slurm.values"),
    ("INSTANCE_USER", "sflow.mithril.startup"),
])
def test_a_shared_name_is_defined_once(name, home):
    # cli.common.home is the commands' guarded front to it (SLURM's error when the directory is unusable).
    assert [m for m in _defined_at_top(name) if m != "sflow.cli.common"] == [home]


def test_the_state_directory_and_a_node_have_one_name_each():
    for gone in ("sflow_home", "NodeSlot"):
        assert _defined_at_top(gone) == []


@pytest.mark.parametrize("first, second", [
    ("sflow.mithril.bids", "sflow.queue.store"),
    ("sflow.mithril.reserving", "sflow.mithril.worker"),
    ("sflow.remote.ssh", "sflow.remote.stage"),
    ("sflow.mithril.emulator.routes", "sflow.mithril.emulator.service"),
])
def test_modules_do_not_import_each_other(first, second):
    assert not (second in _imports(first) and first in _imports(second))


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _reachable(module: str) -> set[str]:
    """Every sflow module that importing ``module`` may load, through any chain of imports."""
    seen, todo = set(), [module]
    while todo:
        for name in _imports(todo.pop()) - seen:
            seen.add(name)
            todo.append(name)
    return seen


CAPACITY = sorted(m for m in TREES if _under(m, "sflow.backends") or _under(m, "sflow.mithril"))


@pytest.mark.parametrize("module", CAPACITY)
def test_the_capacity_layer_runs_without_the_queue_and_the_commands(module):
    # Bids, reservations and their store must serve a caller other than sflow's controller.
    above = {name for name in _reachable(module) if _under(name, "sflow.queue") or _under(name, "sflow.cli")}
    assert above == set()


@pytest.mark.parametrize("module", sorted(m for m in TREES if _under(m, "sflow.mithril")))
def test_the_mithril_package_needs_no_executor(module):
    # What its watcher on a node and sflow's agent share (the lease) is a record both read.
    assert {name for name in _reachable(module) if _under(name, "sflow.exec")} == set()


@pytest.mark.parametrize("module", sorted(m for m in TREES if _under(m, "sflow.burst")))
def test_bursting_runs_without_the_queue_and_the_commands(module):
    # slurmctld runs the burst programs: nothing of sflow's own controller may come with them.
    above = {name for name in _reachable(module) if _under(name, "sflow.queue") or _under(name, "sflow.cli")}
    assert above == set()


def test_the_executor_withholds_what_a_backend_names_and_knows_no_backends_settings():
    # Which variables stay on this machine is the backend's word (Allocation.withheld_env).
    sources = {m: ast.unparse(TREES[m]) for m in TREES if _under(m, "sflow.exec")}
    assert [m for m, text in sources.items() if "MITHRIL_" in text] == []


def test_the_queue_asks_a_jobs_backend_and_never_compares_its_name():
    # A new backend (bursting a cluster onto Mithril) must not need new branches in the queue.
    compared = [m for m in TREES if _under(m, "sflow.queue") for node in ast.walk(TREES[m])
                if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value == "mithril"
                                                         for c in [node.left, *node.comparators])]
    assert compared == []


# SQL lives in the controller's package (the store, the reader the commands use, and the
# controller's own modules, which write inside its transactions) and in the Mithril backend,
# which records its bids (sflow.mithril.bids) inside those transactions through the connection
# the seam hands it (sflow.backends.base); and in the burst service's store (sflow.burst.store),
# whose file holds those bids beside its own tables. Everything else reads records.
SQL_HOMES = ("sflow.queue", "sflow.backends.base", "sflow.backends.mithril", "sflow.mithril.bids",
             "sflow.burst.store")
# A statement, or a condition with a placeholder ("job_id = ?", "state IN (?, ?)").
SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|REPLACE|WITH)\s"
                      r"|\b\w+\s*(=|<|>|\bIN\b|\bLIKE\b|\bIS\b)\s*\(?\s*\?", re.MULTILINE)
CONNECTION_CALLS = {"execute", "executemany", "executescript", "cursor"}


def _outside_sql_homes() -> list[str]:
    return sorted(m for m in TREES if not any(m == home or m.startswith(home + ".") for home in SQL_HOMES))


def _sql_uses(module: str) -> list[str]:
    """SQL text, connection calls and sqlite3 imports in a module, each as ``line: what``."""
    found = []
    parts = {id(v) for node in ast.walk(TREES[module]) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts \
                and SQL_TEXT.search(node.value):
            found.append(f"{node.lineno}: SQL text {node.value[:40]!r}")
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
            if SQL_TEXT.search(text):
                found.append(f"{node.lineno}: SQL text {text[:40]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in CONNECTION_CALLS:
            found.append(f"{node.lineno}: .{node.func.attr}(")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{node.lineno}: import {name}" for name in names if name.split(".")[0] == "sqlite3"]
    return sorted(found, key=lambda use: int(use.split(":")[0]))


def test_sql_stays_with_the_store():
    assert {m: _sql_uses(m) for m in _outside_sql_homes() if _sql_uses(m)} == {}


def test_the_rule_sees_sql():
    tree = ast.parse('conn.execute(f"SELECT {c} FROM jobs")\nrows = read("job_id = ? OR array_job_id = ?")\n'
                     'import sqlite3\nsay("job {job_id} = done?")\n')
    TREES["sflow.cli.example"] = tree
    try:
        assert sorted(use.split(": ")[1].split()[0] for use in _sql_uses("sflow.cli.example")) == \
            sorted(["SQL", ".execute(", "SQL", "import"])  # and no SQL seen in the last line's text
    finally:
        del TREES["sflow.cli.example"]


def test_commands_and_views_read_the_store_through_its_reader():
    # Bids are read through store.read_bids, which the bid tables' module stands behind.
    for module in _outside_sql_homes():
        for node in ast.walk(TREES[module]):
            if isinstance(node, ast.ImportFrom) and node.module == "sflow.queue.store":
                assert [a.name for a in node.names] == ["read_bids"], module
            elif isinstance(node, ast.ImportFrom) and node.module == "sflow.queue":
                assert "store" not in [a.name for a in node.names], module
            elif isinstance(node, ast.Import):
                assert "sflow.queue.store" not in [a.name for a in node.names], module


def _cycle(modules: list[str]) -> list[str]:
    """One import cycle among ``modules`` (each import counted, deferred ones too), or []."""
    graph = {m: sorted(_imports(m) & set(modules)) for m in modules}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for other in graph[module]:
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other not in state:
                found = visit(other)
                if found:
                    return found
        state[module] = 2
        path.pop()
        return []

    for module in modules:
        if module not in state:
            found = visit(module)
            if found:
                return found
    return []


def test_the_commands_import_no_cycle():
    assert _cycle(sorted(m for m in TREES if m.startswith("sflow.cli."))) == []


def test_an_allocation_calls_no_command_back():
    # salloc and srun hold allocations; what runs inside is theirs: allocation imports no
    # command, and none of its functions calls what it was handed (a command's callback).
    assert not {m for m in _imports("sflow.cli.allocation") if m.startswith("sflow.cli.cmd_")}
    for function in ast.walk(TREES["sflow.cli.allocation"]):
        if isinstance(function, ast.FunctionDef):
            handed = {a.arg for a in function.args.args + function.args.kwonlyargs}
            called = {n.func.id for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            assert not handed & called, function.name


def test_the_cycle_check_sees_a_deferred_import():
    TREES["sflow.cli.one"] = ast.parse("import os\n")
    TREES["sflow.cli.two"] = ast.parse("def f():\n    from sflow.cli.one import g\n")
    try:
        assert _cycle(["sflow.cli.one", "sflow.cli.two"]) == []
        TREES["sflow.cli.one"] = ast.parse("def g():\n    from sflow.cli import two\n")
        assert _cycle(["sflow.cli.one", "sflow.cli.two"]) == ["sflow.cli.one", "sflow.cli.two", "sflow.cli.one"]
    finally:
        del TREES["sflow.cli.one"], TREES["sflow.cli.two"]


def _layer(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize("layer, forbidden", [
    # The language: text in, a job request (or SLURM's refusal) out; nothing that runs, queues or prints.
    ("sflow.slurm", {"sflow.exec", "sflow.queue", "sflow.backends", "sflow.cli"}),
    # The queue answers with data; the commands say it.
    ("sflow.queue", {"sflow.cli"}),
    # Bursting a SLURM cluster: its programs run under slurmctld, with no sflow controller.
    ("sflow.burst", {"sflow.queue", "sflow.cli"}),
])
def test_layers_point_one_way(layer, forbidden):
    reaching_back = sorted(f"{module} -> {name}" for module in TREES if _layer(module) == layer
                           for name in _imports(module) if _layer(name) in forbidden)
    assert reaching_back == []


def test_the_executor_reads_no_backends_settings():
    # How often leases are renewed is the backend's word, carried by the allocation.
    assert [m for m in TREES if _under(m, "sflow.exec") and any(_under(n, "sflow.mithril") for n in _imports(m))] == []
