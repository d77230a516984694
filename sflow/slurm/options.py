"""The option table (``compat/options.toml``), loaded once per process.

A compiled copy is cached (marshal) in the user's cache directory, keyed by the
table's size and mtime and the Python version: TOML parsing costs several
milliseconds, and every shim call reads the table.
"""

from __future__ import annotations

import marshal
import os
import sys
from functools import lru_cache

from sflow._resources import COMPAT_DIR

TABLE_PATH = os.path.join(COMPAT_DIR, "options.toml")
_PY = "%d%d" % sys.version_info[:2]  # marshal's format may change between Python versions


class Option:
    """One option of one command family, as compat/options.toml describes it.

    A plain class rather than a dataclass: ``dataclasses`` costs ~4 ms of
    import time on every shim call.
    """

    __slots__ = ("long", "arg", "commands", "status", "short", "value", "field", "note", "env",
                 "invalid", "invalid_exit", "help", "metavar")

    def __init__(self, long: str, arg: str, commands: tuple[str, ...], status: str, short: str | None = None,
                 value: str | None = None, field: str | None = None, note: str = "", env: dict | None = None,
                 invalid: str | None = None, invalid_exit: int | None = None, help: str = "", metavar: str = ""):
        self.long = long  # "nodes"
        self.arg = arg  # "none" | "required" | "optional"
        self.commands = commands
        self.status = status  # "supported" | "ignored" | "rejected"
        self.short = short
        self.value = value  # value kind: a parser in sflow.slurm.request.CONVERTERS
        self.field = field  # what a supported option sets
        self.note = note  # the warning (ignored) or the reason (rejected)
        self.env = env  # command -> input environment variable
        self.invalid = invalid  # SLURM's message for a bad value, without "sbatch: error: "
        self.invalid_exit = invalid_exit
        self.help = help
        self.metavar = metavar

    def __repr__(self) -> str:
        return f"Option(--{self.long}, {self.status})"

    def env_for(self, command: str) -> str | None:
        return (self.env or {}).get(command)


class OptionTable:
    """One command's view of the table."""

    def __init__(self, command: str, options: list[Option]):
        self.command = command
        self.options = options
        self._long = {o.long: o for o in options}
        self._short = {o.short: o for o in options if o.short}

    def __iter__(self):
        return iter(self.options)

    def by_long(self, name: str) -> Option | None:
        return self._long.get(name)

    def by_short(self, char: str) -> Option | None:
        return self._short.get(char)

    def match_long_prefix(self, prefix: str) -> list[Option]:
        """getopt_long's rule: an exact name wins, else every name starting with the prefix."""
        exact = self._long.get(prefix)
        if exact is not None:
            return [exact]
        return [o for name, o in sorted(self._long.items()) if name.startswith(prefix)]

    def env_map(self) -> dict[str, Option]:
        return {o.env_for(self.command): o for o in self.options if o.env_for(self.command)}


def _cache_path(stat: os.stat_result) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    # marshal, not JSON: it loads the 300 entries several times faster, on every shim call.
    return os.path.join(base, "sflow", f"options-{stat.st_size}-{int(stat.st_mtime_ns)}-{_PY}.marshal")


@lru_cache(maxsize=None)
def _load_raw_cached() -> list[dict]:
    return _load_raw()


def _load_raw() -> list[dict]:
    stat = os.stat(TABLE_PATH)
    cache = _cache_path(stat)
    try:
        with open(cache, "rb") as handle:
            return marshal.loads(handle.read())
    except (OSError, ValueError, EOFError, TypeError):
        pass
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(TABLE_PATH, "rb") as handle:
        raw = tomllib.load(handle)["option"]
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(marshal.dumps(raw))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs speed
    return raw


@lru_cache(maxsize=None)
def all_options() -> tuple[Option, ...]:
    return tuple(Option(**{**entry, "commands": tuple(entry["commands"])}) for entry in _load_raw_cached())


@lru_cache(maxsize=None)
def table(command: str) -> OptionTable:
    # Only this command's entries become Options: a shim needs one command's table.
    return OptionTable(command, [Option(**{**entry, "commands": tuple(entry["commands"])})
                                 for entry in _load_raw_cached() if command in entry["commands"]])
