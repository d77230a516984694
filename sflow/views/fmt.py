"""SLURM's format strings: ``%.18i %9P`` (-o) and ``JobID:10,Name`` (-O), and their padding rules.

A field with a width is padded to it and cut at it; ``.`` right-justifies;
no width means the value as it is.
"""

from __future__ import annotations

import grp
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache

from sflow._resources import load_compat_table


@dataclass(frozen=True)
class Field:
    key: str  # a letter (-o) or a name (-O)
    width: int | None
    right: bool
    suffix: str = ""  # literal text after the field


_TOKEN = re.compile(r"(\.)?(\d*)(.?)(.*)", re.S)


def parse_percent_format(text: str, known=None) -> tuple[str, list[Field], list[str]]:
    """-o style, split as SLURM splits it: on every ``%`` (so ``%%`` is no literal percent).

    Returns the literal prefix, the fields (each with the literal text that follows
    it) and the specifiers that are not in ``known``: SLURM complains about each
    one and prints it as literal text.
    """
    fields: list[Field] = []
    bad: list[str] = []
    starts_with_field = text.startswith("%")
    tokens = [t for t in text.split("%") if t]
    prefix = ""
    if tokens and not starts_with_field:
        prefix = tokens.pop(0)

    def literal(more: str) -> None:
        nonlocal prefix
        if fields:
            last = fields[-1]
            fields[-1] = Field(last.key, last.width, last.right, last.suffix + more)
        else:
            prefix += more

    for token in tokens:
        dot, digits, key, rest = _TOKEN.fullmatch(token).groups()
        if not key or (known is not None and key not in known) or not (key.isalpha()):
            bad.append(key)
            literal("%" + token)
            continue
        fields.append(Field(key, int(digits) if digits else None, bool(dot), rest))
    return prefix, fields, bad


def parse_name_format(text: str, default_width: int = 20) -> list[Field]:
    """-O style: ``Name[:[.][width][suffix]]`` items separated by commas, with no separator of
    their own: a bare name is 20 wide; a ``:`` without digits means no padding at all."""
    fields = []
    for item in filter(None, text.split(",")):
        name, colon, spec = item.partition(":")
        if not colon:
            fields.append(Field(name.strip(), default_width, False, ""))
            continue
        match = re.match(r"(\.?)(\d*)(.*)", spec, re.S)
        right, digits, suffix = match.group(1) == ".", match.group(2), match.group(3)
        width = int(digits) if digits and int(digits) > 0 else None
        fields.append(Field(name.strip(), width, right, suffix))
    return fields


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _spec(field: Field, whole: frozenset = frozenset()) -> str:
    """One field's str.format replacement: ``{:>18.18}`` pads and cuts exactly as SLURM does; a
    right-justified field whose key is in ``whole`` is padded but never cut."""
    if field.width is None:
        return "{}"
    if field.right and field.key in whole:
        return f"{{:>{field.width}}}"
    return f"{{:{'>' if field.right else '<'}{field.width}.{field.width}}}"


def _template(prefix: str, fields: list[Field], whole: frozenset = frozenset()) -> str:
    """One str.format template for a whole row, built once: a listing of 10,000 rows then
    costs one C-level call per row."""
    return _literal(prefix) + "".join(_spec(field, whole) + _literal(field.suffix) for field in fields)


def partial_template(prefix: str, fields: list[Field], values: list, whole: frozenset = frozenset()) -> str:
    """A row's template with the fields whose value is given (not None) already written in: the
    rows of an array's pending tasks differ only in their id, so each costs one short format."""
    return _literal(prefix) + "".join(
        (_spec(field, whole) if value is None else _literal(_spec(field, whole).format(value)))
        + _literal(field.suffix) for field, value in zip(fields, values))


def render_rows(prefix: str, fields: list[Field], rows: list[list[str]], headers: list[str] | None,
                whole: frozenset = frozenset()) -> str:
    """``whole``: keys whose values (not headers) a right-justified width does not cut."""
    template = _template(prefix, fields, whole).format
    lines = [_template(prefix, fields).format(*headers)] if headers is not None else []
    lines += [template(*values) for values in rows]
    return "\n".join(lines) + ("\n" if lines else "")


@lru_cache(maxsize=None)
def load_table(name: str) -> list[dict]:
    return load_compat_table(name)["field"]


def iso_time(value: float | None, missing: str = "Unknown") -> str:
    """A timestamp as SLURM prints it (local time, no zone), or ``missing`` when unset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(value)) if value else missing


class Memo(dict):
    """``fn``'s value for each key, computed once: a column of thousands of values that repeat
    (a state, a second) costs a lookup per value. Made per listing, as the time zone may differ."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __missing__(self, key):
        value = self[key] = self.fn(key)
        return value


def iso_times(values, missing: str = "Unknown") -> list[str]:
    """``iso_time`` of each value, each second formatted once."""
    seconds = Memo(lambda second: time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second)))
    return [seconds[int(value)] if value else missing for value in values]


@lru_cache(maxsize=1)
def _bitstr_len() -> tuple[int, bool]:
    """SLURM_BITSTR_LEN (0: no limit; default 64) and whether it was set."""
    raw = os.environ.get("SLURM_BITSTR_LEN")
    try:
        return (int(raw), True) if raw is not None else (64, False)
    except ValueError:
        return 64, True


def array_text(text: str | None) -> str | None:
    """An array's pending indices as SLURM shows them: cut to SLURM_BITSTR_LEN with ``...``."""
    limit = _bitstr_len()[0]
    if text is None or limit <= 0 or len(text) < limit:
        return text
    return text[: max(limit - 4, 0)] + "..."


def job_id_display(job) -> str:
    """The id squeue, sacct and scontrol show: ``123``, ``123_4`` or ``123_[5-9]``."""
    return job_id_text(job.job_id, job.array_job_id, job.array_task_id, job.array_task_str)


def job_id_text(job_id: int, array_job_id: int | None, array_task_id: int | None, array_task_str: str | None) -> str:
    """``job_id_display`` from the values it reads."""
    if array_job_id is None or array_task_str == "":  # "": every index cancelled
        return str(job_id)
    if array_task_id is None:
        return f"{array_job_id}_[{array_text(array_task_str)}]"
    return f"{array_job_id}_{array_task_id}"


def squeue_job_id(job) -> str:
    """squeue's JOBID: without SLURM_BITSTR_LEN set, an array's id fits 31 bytes (recorded)."""
    return _squeue_cut(job_id_display(job))


def squeue_task_id(array_job_id: int, index: int) -> str:
    """squeue's JOBID of one task of an array: ``squeue_job_id`` of that task."""
    return _squeue_cut(f"{array_job_id}_{index}")


def _squeue_cut(text: str) -> str:
    return text if squeue_id_whole(len(text)) else text[:31]


def squeue_id_whole(length: int) -> bool:
    """Whether squeue shows a job id of ``length`` characters whole."""
    return length <= 31 or _bitstr_len()[1]


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def step_order(step) -> tuple:
    """sacct's and sstat's order of a job's steps: batch, extern, then srun steps by number."""
    return (step.step_id != "batch", step.step_id != "extern",
            int(step.step_id) if step.step_id.isdecimal() else -1)


def render_columns(columns: list[tuple[str, int, str]], rows: list[list[str]], *, header: bool,
                   delimiter: str | None, trailing: bool, cut_header: str = "") -> str:
    """The accounting commands' tables: ``--parsable`` rows joined by ``delimiter``, else
    fixed-width columns (name, width, "left"/"right") under a dashed rule, a value too wide
    cut to its width with ``+``, and the header names cut with ``cut_header`` appended."""
    values = [list(column) for column in zip(*rows)] if columns else []
    return render_value_columns(columns, values, len(rows), header=header, delimiter=delimiter, trailing=trailing,
                                cut_header=cut_header)


def render_value_columns(columns: list[tuple[str, int, str]], values: list[list[str]], count: int, *,
                         header: bool, delimiter: str | None, trailing: bool, cut_header: str = "") -> str:
    """``render_columns`` from the values column by column (``count`` rows of each), as a long
    listing makes them."""
    lines = []
    if delimiter is not None:
        end = delimiter if trailing else ""
        if header:
            lines.append(delimiter.join(name for name, _, _ in columns) + end)
        text = "".join(line + "\n" for line in lines)
        if values:
            text += "".join(line + end + "\n" for line in map(delimiter.join, zip(*values)))
        else:
            text += (end + "\n") * count
        return text

    def fit(text: str, width: int, align: str, mark: str = "+") -> str:
        if len(text) > width:
            text = text[: width - len(mark)] + mark
        return text.ljust(width) if align == "left" else text.rjust(width)

    if header:
        lines.append(" ".join(fit(name, width, align, cut_header) for name, width, align in columns) + " ")
        lines.append(" ".join("-" * width for _, width, _ in columns) + " ")
    text = "".join(line + "\n" for line in lines)
    if not count:
        return text
    if not columns:
        return text + " \n" * count
    # Column by column, each value cut where too wide and padded, a value that repeats (a state,
    # a partition) once; then each row is its columns' pieces joined.
    padded = []
    for column, (_, width, align) in zip(values, columns):
        pad = f"{{:{'<' if align == 'left' else '>'}{width}}} ".format

        def fitted(value: str, width=width, pad=pad) -> str:
            return pad(value if len(value) <= width else value[: width - 1] + "+")

        if len(set(column)) * 4 <= len(column):
            padded.append(list(map(Memo(fitted).__getitem__, column)))
        else:
            if max(map(len, column)) > width:
                column = [value if len(value) <= width else value[: width - 1] + "+" for value in column]
            padded.append(list(map(pad, column)))
    padded.append(["\n"] * count)
    return text + "".join(map("".join, zip(*padded)))


def field_columns(text: str, rows_by_name: dict[str, dict]) -> tuple[list[tuple[str, int, str]], str | None]:
    """sacct's and sstat's ``--format``: (name, width, align) for each ``Name[%[-]width]`` asked
    for (a minus aligns left), or the first name the table lacks (then no columns)."""
    columns = []
    for item in filter(None, text.split(",")):
        name, _, size = item.partition("%")
        row = rows_by_name.get(name.strip().lower())
        if row is None:
            return [], name
        width, align = row["width"], row["align"]
        if size:
            align = "left" if size.startswith("-") else "right"
            width = int(size.lstrip("-"))
        columns.append((row["name"], width, align))
    return columns, None
