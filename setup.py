"""Everything is in pyproject.toml; this only builds the drop-in commands that run through the controller.

sbatch, squeue, scancel, sacct, sinfo and scontrol are the native client (``native/sflow-client.c``) under
each name, built as the package's scripts (a console script cannot be a compiled program): pip installs a
wheel's scripts into the scripts directory, executable, and setuptools' editable wheel carries them too
(it leaves data files out). Without a working C compiler they are Python scripts instead, and the build
says so in one line.
"""

import importlib.util
import os
import shutil
import sys
import tempfile

from setuptools import setup
from setuptools.dist import Distribution

from distutils.command.build_scripts import build_scripts  # setuptools' own distutils: after setuptools

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
    # "python" is a wheel's: pip writes the installing interpreter there. The kernel reads at most
    # 127 bytes of a #! line and splits no quotes: past that, or with a space, /bin/sh starts it.
    if python == "python" or (len(python) < 120 and " " not in python):
        return f"#!{python}\n"
    return f"#!/bin/sh\n'''exec' \"{python}\" \"$0\" \"$@\"\n' '''\n"


class BuildCommands(build_scripts):
    """The scripts are the commands, built here rather than copied from the source tree."""

    def get_source_files(self):
        return []  # nothing for sdist to take: the commands are built from native/

    def run(self):
        native = _native()
        self.mkpath(self.build_dir)
        outputs = [os.path.join(self.build_dir, name) for name in native.COMMANDS]
        # Compiled on every build: it holds the path of the interpreter it falls back to, which is
        # the one this build is for (pip runs the backend with it, build isolation or not).
        with tempfile.TemporaryDirectory() as scratch:
            binary = native.compile_client(os.path.join(scratch, native.BINARY), python=sys.executable)
            for name, path in zip(native.COMMANDS, outputs):
                if os.path.lexists(path):
                    os.unlink(path)
                if binary:
                    shutil.copy2(binary, path)  # a wheel holds no links: one copy for each name
                else:
                    with open(path, "w") as handle:
                        handle.write(_shebang(self.executable) + PYTHON_COMMAND.format(name=name))
                os.chmod(path, 0o755)
        return outputs, outputs


class WithBinary(Distribution):
    """The wheel holds a compiled program: it is tagged for this platform, never ``any``."""

    def has_ext_modules(self):
        return True


# The scripts' names: BuildCommands makes them, no file of the source tree is one.
setup(cmdclass={"build_scripts": BuildCommands}, scripts=list(_native().COMMANDS), distclass=WithBinary)
