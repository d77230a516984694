"""The package's shape: one definition of each shared name, no modules that import each other."""

from __future__ import annotations

import ast
import os

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
