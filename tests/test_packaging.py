"""The wheel ships every package: an editable install would hide a missing one."""

from __future__ import annotations

import os
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setuptools() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]


def test_every_package_is_listed_in_pyproject():
    listed = set(_setuptools()["packages"])
    found = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "sflow")):
        if "__init__.py" in files and "__pycache__" not in folder:
            found.add(os.path.relpath(folder, ROOT).replace(os.sep, "."))
    assert {"sflow", "sflow.cli", "sflow.mithril.emulator"} <= found, found  # the walk saw the tree
    assert found - listed == set(), "packages missing from pyproject.toml"


def test_every_listed_package_and_its_data_ship():
    import fnmatch

    config = _setuptools()
    mapped = config.get("package-dir", {})
    data = config.get("package-data", {})
    for package in config["packages"]:
        folder = os.path.join(ROOT, mapped.get(package, package.replace(".", os.sep)))
        assert os.path.isdir(folder), f"{package}: no folder {folder}"
        # Data files beside the code (grammars, tables, the API schema) are read at run time: they must ship.
        for name in os.listdir(folder):
            if os.path.isfile(os.path.join(folder, name)) and not name.endswith((".py", ".pyc")):
                assert any(fnmatch.fnmatch(name, p) for p in data.get(package, [])), f"{package}: {name} not shipped"
