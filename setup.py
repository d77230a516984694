"""Everything is in pyproject.toml; this only compiles the native client into the wheel.

Without a C compiler the wheel still builds (the drop-in commands then run as Python shims).
"""

import importlib.util
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithClient(build_py):
    def run(self):
        super().run()
        spec = importlib.util.spec_from_file_location("_native_build", os.path.join(HERE, "native", "__init__.py"))
        native = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(native)
        target = os.path.join(self.build_lib, "sflow", "_native")
        os.makedirs(target, exist_ok=True)
        native.compile_client(os.path.join(target, native.BINARY), python=sys.executable)


class WithBinary(Distribution):
    """The wheel holds a compiled program: it is tagged for this platform, never ``any``."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithClient}, distclass=WithBinary)
