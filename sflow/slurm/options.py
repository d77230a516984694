"""The option table (``compat/options.toml``), loaded once per process.

It is read through ``load_compat_table``'s cached copy: TOML parsing costs
several milliseconds, and every shim call reads the table.
"""

from __future__ import annotations

import os
from functools import lru_cache

from sflow._resources import COMPAT_DIR, load_compat_table

TABLE_PATH = os.path.join(COMPAT_DIR, "options.toml")


class Option:
    """One option of one command family, as compat/options.toml describes it.

    A plain class rather than a dataclass: ``dataclasses`` costs ~4 ms of
    import time on every shim call.
    """

    __slots__ = ("long", "arg", "commands", "status", "short", "value", "field", "note", "env",
                 "invalid", "invalid_exit", "help", "metavar", "aliases")

    def __init__(self, long: str, arg: str, commands: tuple[str, ...], status: str, short: str | None = None,
                 value: str | None = None, field: str | None = None, note: str = "", env: dict | None = None,
                 invalid: str | None = None, invalid_exit: int | None = None, help: str = "", metavar: str = "",
                 aliases: tuple[str, ...] = ()):
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
        self.aliases = aliases  # other long spellings SLURM's getopt accepts (not in its man page)

    def __repr__(self) -> str:
        return f"Option(--{self.long}, {self.status})"

    def env_for(self, command: str) -> str | None:
        return (self.env or {}).get(command)


class OptionTable:
    """One command's view of the table."""

    def __init__(self, command: str, options: list[Option], order: dict[str, int] | None = None):
        self.command = command
        self.options = options
        self._env_map: dict[str, Option] | None = None
        self._long = {name: o for o in options for name in (o.long, *o.aliases)}
        self._short = {o.short: o for o in options if o.short}
        # getopt_long walks SLURM's table in its own order: it decides which of several matches of a
        # prefix is reported, and the order of an ambiguity's possibilities.
        order = order or {}
        self._spellings = sorted(self._long.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))

    def __iter__(self):
        return iter(self.options)

    def by_long(self, name: str) -> Option | None:
        return self._long.get(name)

    def by_short(self, char: str) -> Option | None:
        return self._short.get(char)

    def match_long_prefix(self, prefix: str) -> list[tuple[str, Option]]:
        """getopt_long's rule: an exact name wins, else every name starting with the prefix; a
        match that is only another spelling of the first one found is no ambiguity."""
        exact = self._long.get(prefix)
        if exact is not None:
            return [(prefix, exact)]
        matches = [(name, o) for name, o in self._spellings if name.startswith(prefix)]
        return matches[:1] + [(name, o) for name, o in matches[1:] if o is not matches[0][1]]

    def env_map(self) -> dict[str, Option]:
        # Made once: the table never changes, and every submission asks for it.
        if self._env_map is None:
            self._env_map = {o.env_for(self.command): o for o in self.options if o.env_for(self.command)}
        return self._env_map


@lru_cache(maxsize=None)
def _load_raw() -> list[dict]:
    return load_compat_table("options.toml")["option"]


@lru_cache(maxsize=None)
def _getopt_order() -> dict[str, int]:
    names = load_compat_table("options.toml").get("getopt", {}).get("order", [])
    return {name: rank for rank, name in enumerate(names)}


def _option(entry: dict) -> Option:
    return Option(**{**entry, "commands": tuple(entry["commands"]), "aliases": tuple(entry.get("aliases", ()))})


@lru_cache(maxsize=None)
def all_options() -> tuple[Option, ...]:
    return tuple(_option(entry) for entry in _load_raw())


@lru_cache(maxsize=None)
def table(command: str) -> OptionTable:
    # Only this command's entries become Options: a shim needs one command's table.
    options = [_option(entry) for entry in _load_raw() if command in entry["commands"]]
    return OptionTable(command, options, _getopt_order())
