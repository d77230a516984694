"""The wheel ships every package (an editable install would hide a missing one) and installs the commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

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


# The drop-in commands the native client runs; every other command is a console script.
NATIVE_COMMANDS = {"sbatch", "squeue", "scancel", "sacct", "sinfo", "scontrol"}
CONSOLE_SCRIPTS = {"flow", "sflow", "srun", "salloc", "sstat", "seff", "sflow-burst-resume", "sflow-burst-suspend",
                   "sflow-burst-resume-fail"}
NOTICE = "sflow: native client not built"


def test_the_native_commands_are_no_console_scripts():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        scripts = set(tomllib.load(handle)["project"]["scripts"])
    assert scripts == CONSOLE_SCRIPTS


def _wheel(tmp_path, **env) -> tuple[dict, str]:
    """Build the wheel as pip does for ``pip install .``: {name: (mode, bytes)} and the build's output."""
    # A copy of the tree: the build writes build/ and *.egg-info beside the sources.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"),
                           str(source)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").iterdir()
    with zipfile.ZipFile(wheel) as archive:
        return ({info.filename: (info.external_attr >> 16, archive.read(info)) for info in archive.infolist()},
                done.stdout + done.stderr)


def _installed(files: dict) -> tuple[dict, set]:
    """The wheel's scripts ({name: (mode, bytes)}) and its console scripts' names."""
    scripts = {path.rsplit("/", 1)[1]: content for path, content in files.items() if "/scripts/" in path
               and path.split("/", 1)[0].endswith(".data")}
    (entry_points,) = (content for path, (_, content) in files.items() if path.endswith(".dist-info/entry_points.txt"))
    section = entry_points.decode().split("[console_scripts]", 1)[1].split("\n[", 1)[0]
    console = {line.split("=", 1)[0].strip() for line in section.splitlines() if "=" in line}
    return scripts, console


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler")
def test_the_wheel_installs_the_native_client_as_the_commands(tmp_path):
    files, output = _wheel(tmp_path)
    scripts, console = _installed(files)
    assert set(scripts) == NATIVE_COMMANDS and console == CONSOLE_SCRIPTS
    for name, (mode, content) in scripts.items():
        assert content[:4] == b"\x7fELF" and mode & 0o111 == 0o111, name  # pip keeps the executable bits
    # The interpreter it falls back to is the one the wheel was built for (pip's, under build isolation too).
    assert os.fsencode(sys.executable) + b"\0" in scripts["sbatch"][1]
    assert NOTICE not in output


def test_without_a_compiler_the_commands_are_python_scripts_and_the_build_says_so_once(tmp_path):
    files, output = _wheel(tmp_path, CC="/bin/false")
    scripts, console = _installed(files)
    assert set(scripts) == NATIVE_COMMANDS and console == CONSOLE_SCRIPTS
    for name, (mode, content) in scripts.items():
        # "#!python": pip writes the installing interpreter there.
        assert content.startswith(b"#!python\n") and mode & 0o111 == 0o111, name
        assert f"from sflow.cli.shims import {name}\n".encode() in content
    assert output.count(NOTICE) == 1, output
