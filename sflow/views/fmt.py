"""SLURM's format strings: ``%.18i %9P`` (-o) and ``JobID:10,Name`` (-O), and their padding rules.

A field with a width is padded to it and cut at it; ``.`` right-justifies;
no width means the value as it is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache

from sflow._resources import COMPAT_DIR

_SPEC = re.compile(r"%(\.)?(\d*)([A-Za-z])")


@dataclass(frozen=True)
class Field:
    key: str  # a letter (-o) or a name (-O)
    width: int | None
    right: bool
    suffix: str = ""  # literal text after the field


def parse_percent_format(text: str) -> tuple[str, list[Field]]:
    """-o style: the literal prefix and the fields (each with the literal text that follows it)."""
    fields: list[Field] = []
    pos = 0
    prefix = ""
    for match in _SPEC.finditer(text.replace("%%", "\0")):
        literal = text.replace("%%", "\0")[pos:match.start()].replace("\0", "%")
        if fields:
            last = fields[-1]
            fields[-1] = Field(last.key, last.width, last.right, literal)
        else:
            prefix = literal
        fields.append(Field(match.group(3), int(match.group(2)) if match.group(2) else None, bool(match.group(1))))
        pos = match.end()
    tail = text.replace("%%", "\0")[pos:].replace("\0", "%")
    if fields:
        last = fields[-1]
        fields[-1] = Field(last.key, last.width, last.right, tail)
    else:
        prefix += tail
    return prefix, fields


def parse_name_format(text: str, default_width: int = 20) -> list[Field]:
    """-O style: ``Name[:[.]width]`` items separated by commas; each followed by one space."""
    fields = []
    for item in filter(None, text.split(",")):
        name, _, size = item.partition(":")
        right = size.startswith(".")
        size = size.lstrip(".")
        width = int(size) if size.isdigit() else default_width
        fields.append(Field(name.strip(), width, right, " "))
    return fields


def cell(value: str, field: Field) -> str:
    if field.width is None:
        return value
    value = value[: field.width]
    return value.rjust(field.width) if field.right else value.ljust(field.width)


def _cell_function(field: Field):
    """One formatter per column, chosen once (a listing calls it for every row)."""
    width, suffix = field.width, field.suffix
    if width is None:
        return lambda value: value + suffix
    if field.right:
        return lambda value: value[:width].rjust(width) + suffix
    return lambda value: value[:width].ljust(width) + suffix


def render_rows(prefix: str, fields: list[Field], rows: list[list[str]], headers: list[str] | None) -> str:
    cells = [_cell_function(field) for field in fields]
    lines = [prefix + "".join([fmt(value) for fmt, value in zip(cells, values)])
             for values in ([headers] if headers is not None else []) + rows]
    return "\n".join(lines) + ("\n" if lines else "")


@lru_cache(maxsize=None)
def load_table(name: str) -> list[dict]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(os.path.join(COMPAT_DIR, name), "rb") as handle:
        return tomllib.load(handle)["field"]
