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


def load_compat_table(name: str) -> dict:
    """A compat/ TOML table, through a marshal copy in the user's cache directory.

    Keyed by the file's size and mtime and the Python version (marshal's format
    may change between versions): parsing TOML costs milliseconds, and the shims
    read these tables on every call.
    """
    import marshal
    import sys

    path = os.path.join(COMPAT_DIR, name)
    stat = os.stat(path)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    cache = os.path.join(base, "sflow", "compat", "%s.%d.%d.py%d%d.marshal" % (
        name, stat.st_size, stat.st_mtime_ns, *sys.version_info[:2]))
    try:
        with open(cache, "rb") as handle:
            return marshal.loads(handle.read())
    except (OSError, ValueError, EOFError, TypeError):
        pass
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as handle:
        table = tomllib.load(handle)
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = "%s.%d.tmp" % (cache, os.getpid())
        with open(tmp, "wb") as handle:
            handle.write(marshal.dumps(table))
        os.replace(tmp, cache)
    except (OSError, ValueError):
        pass  # a read-only home, or a value marshal cannot hold, only costs speed
    return table
