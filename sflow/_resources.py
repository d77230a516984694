"""Where the shipped data lives: grammar/ and compat/ tables.

In a wheel they sit inside the package (sflow/_grammar, sflow/_compat); in a
source checkout or an editable install they are the top-level folders.
os.path rather than pathlib or importlib.resources: those cost several
milliseconds of import time on every shim call.
"""

import os

_PKG = os.path.dirname(os.path.abspath(__file__))


def _locate(packaged: str, toplevel: str) -> str:
    inside = os.path.join(_PKG, packaged)
    if os.path.isdir(inside):
        return inside
    return os.path.join(os.path.dirname(_PKG), toplevel)


GRAMMAR_DIR = _locate("_grammar", "grammar")
COMPAT_DIR = _locate("_compat", "compat")
