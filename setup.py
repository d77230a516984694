"""Everything is in pyproject.toml; this only builds the drop-in commands that run through the controller.

sbatch, squeue, scancel, sacct, sinfo and scontrol are the native client (``native/sflow-client.c``) under
each name, installed into the scripts directory as data files (``bin``): a console script cannot be a
compiled program, and a wheel's ``scripts`` must be text. Without a working C compiler they are Python
scripts for the installing interpreter instead, and the build says so in one line.
"""

import importlib.util
import os
import shutil
import sys

from setuptools import Command, setup
from setuptools.command.build import build
from setuptools.dist import Distribution

from distutils.command.install_data import install_data  # setuptools' own distutils, imported after it

HERE = os.path.dirname(os.path.abspath(__file__))

# What pip writes for a console script: the same command when the client could not be built.
PYTHON_COMMAND = """\
# -*- coding: utf-8 -*-
import sys
from sflow.cli.shims import {name}
if __name__ == "__main__":
    sys.exit({name}())
"""


def _native():
    """native/__init__.py, loaded by path: the package itself is not importable while it builds."""
    spec = importlib.util.spec_from_file_location("_native_build", os.path.join(HERE, "native", "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shebang(python: str) -> str:
    # The kernel reads at most 127 bytes of a #! line and splits no quotes: past that, or with a space,
    # /bin/sh starts the interpreter (as pip's own launchers do).
    if len(python) < 120 and " " not in python:
        return f"#!{python}\n"
    return f"#!/bin/sh\n'''exec' \"{python}\" \"$0\" \"$@\"\n' '''\n"


class BuildCommands(Command):
    description = "build the drop-in commands that run through the controller"
    user_options = []

    def initialize_options(self):
        self.build_temp = None

    def finalize_options(self):
        self.set_undefined_options("build", ("build_temp", "build_temp"))
        self.build_dir = os.path.join(self.build_temp, "commands")

    def get_outputs(self):
        return [os.path.join(self.build_dir, name) for name in _native().COMMANDS]

    def run(self):
        native = _native()
        os.makedirs(self.build_dir, exist_ok=True)
        # Compiled on every build: it holds the path of the interpreter it falls back to, which is
        # the one this build is for (pip runs the backend with it, build isolation or not).
        binary = native.compile_client(os.path.join(self.build_dir, native.BINARY), python=sys.executable)
        for name, path in zip(native.COMMANDS, self.get_outputs()):
            if os.path.lexists(path):
                os.unlink(path)
            if binary:
                shutil.copy2(binary, path)  # a wheel holds no links: one copy for each name
            else:
                with open(path, "w") as handle:
                    handle.write(_shebang(sys.executable) + PYTHON_COMMAND.format(name=name))
                os.chmod(path, 0o755)


class InstallCommands(install_data):
    """Installs the built commands to ``bin``: pip puts a wheel's ``data/bin`` in the scripts directory."""

    def run(self):
        self.run_command("build_commands")
        self.data_files = [("bin", self.get_finalized_command("build_commands").get_outputs())]
        super().run()


class BuildAll(build):
    sub_commands = build.sub_commands + [("build_commands", None)]


class WithCommands(Distribution):
    """The wheel holds a compiled program: it is tagged for this platform, never ``any``."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build": BuildAll, "build_commands": BuildCommands, "install_data": InstallCommands},
      # The commands' place; InstallCommands names them once built (sdist must not look for them).
      data_files=[("bin", [])], distclass=WithCommands)
