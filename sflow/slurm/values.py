"""Values of SLURM options: parse to plain data, and format back as SLURM shows them.

Structured values (time limits, hostlists, arrays, dependencies, GRES, count
lists) go through ``grammar/values.lark``; a few trivially regular ones
(integers, memory sizes, signals) are read with plain code. Every parse error
is an ``InvalidValue``; callers turn it into the option's own SLURM message.
"""

from __future__ import annotations

import itertools
import re
import signal as _signal
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sflow.records import INFINITE
from sflow.slurm.indexset import IndexSet

MAX_TIME_SECONDS = 60 * INFINITE


class InvalidValue(ValueError):
    """A value that does not parse; ``kind`` names the grammar rule it failed."""

    def __init__(self, kind: str, text: str, detail: str = ""):
        super().__init__(f"invalid {kind}: {text!r}" + (f" ({detail})" if detail else ""))
        self.kind = kind
        self.text = text
        self.detail = detail


_STARTS = ("time_limit", "hostlist", "array", "dependency", "memory", "gpus", "gres", "counts")


def _parse(kind: str, text: str):
    # deferred: lark costs ~40 ms, and squeue, scancel and sacct use only the values that need no grammar
    from sflow.slurm.grammars import LarkError, parser

    if not isinstance(text, str) or not text.strip():
        raise InvalidValue(kind, text if isinstance(text, str) else repr(text))
    try:
        return parser("values", _STARTS).parse(text.strip(), start=kind)
    except LarkError:
        raise InvalidValue(kind, text) from None


def _ints(tree) -> list[int]:
    return [int(t) for t in tree.children if getattr(t, "type", None) == "INT"]


# ---------------------------------------------------------------- integers


C_SPACE = " \t\n\v\f\r"
LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1


def strtol(text: str) -> tuple[int | None, str]:
    """C's strtol in base 10: leading blanks and a sign, then digits; the value saturates at a
    64-bit long, as sbatch reads every count. (None, text) when no digits; else (value, rest)."""
    body = text.lstrip(C_SPACE)
    sign = -1 if body[:1] == "-" else 1
    if body[:1] in ("+", "-"):
        body = body[1:]
    end = 0
    while end < len(body) and body[end] in "0123456789":
        end += 1
    if not end:
        return None, text
    return max(LONG_MIN, min(LONG_MAX, sign * int(body[:end]))), body[end:]


def _overflows(text: str) -> bool:
    """Whether strtol would have saturated (its ERANGE): the number is past a long's range."""
    number = re.match(r"[ \t\n\v\f\r]*([+-]?\d+)", text)
    return bool(number) and not LONG_MIN <= int(number.group(1)) <= LONG_MAX


def parse_positive_int(text: str) -> int:
    number, rest = strtol(text or "")
    if number is None or rest.strip(C_SPACE):
        raise InvalidValue("int", text)
    if number < 1:
        raise InvalidValue("int", text, "must be at least 1")
    return number


def _node_count(part: str) -> int:
    number, rest = strtol(part)
    if number is None or rest.strip(C_SPACE):
        raise InvalidValue("node_range", part)
    return int32(number)


def parse_node_range(text: str) -> tuple[int, int | None]:
    """``2`` -> (2, 2); ``2-4`` -> (2, 4); ``2-0`` -> (2, None): no maximum.

    As sbatch 22.05 reads -N: each side a C long cut to 32 bits (``4294967298`` is 2); a lone
    count must not come out negative; a missing minimum (``-3``) is 1 and a missing maximum
    (``2-``) is -1, which fails the maximum's check. ``InvalidValue.text`` is the part at fault.
    """
    text = text or ""
    low_text, dash, high_text = text.partition("-")
    if not dash:
        low = _node_count(text)
        if low < 0:
            raise InvalidValue("node_range", text)
        return low, low or None  # scontrol shows a lone 0 as 0, not 0-0
    low = _node_count(low_text) if low_text else 1
    high = _node_count(high_text) if high_text.strip(C_SPACE) else -1
    if low < 0:  # SLURM reads a negative minimum as none given
        low = 1
    if high and high < low:
        raise NodeRangeOrder(low, high)
    return low, high or None


class NodeRangeOrder(InvalidValue):
    """``5-2``: sbatch names both counts."""

    def __init__(self, low: int, high: int):
        super().__init__("node_range", f"{low}-{high}")
        self.message = f"Maximum node count {high} is less than minimum node count {low}"


# ---------------------------------------------------------------- time


_FIELD_SECONDS = {"t_m": (60,), "t_ms": (60, 1), "t_hms": (3600, 60, 1), "t_dh": (86400, 3600),
                  "t_dhm": (86400, 3600, 60), "t_dhms": (86400, 3600, 60, 1)}
_LONG_MAX = (1 << 63) - 1


def int32(number: int) -> int:
    number &= 0xFFFFFFFF
    return number - (1 << 32) if number & 0x80000000 else number


def parse_duration_seconds(text: str) -> int:
    """A SLURM time string in seconds, or INFINITE*60 for UNLIMITED."""
    tree = _parse("time_limit", text)
    if tree.data == "t_inf":
        return MAX_TIME_SECONDS
    return sum(field * unit for field, unit in zip(_ints(tree), _FIELD_SECONDS[tree.data]))


def parse_time_limit(text: str) -> int:
    """Minutes; seconds round up, as SLURM rounds them. UNLIMITED -> INFINITE.

    As sbatch, -t and scontrol read it, observed on SLURM 22.05: each field saturates at a 64-bit
    long, the sum in seconds and its rounding wrap at 32 bits (so ``35791394`` is some 8,000
    years), ``-N`` alone means N days back (wrapped likewise), and a total of 0 is no limit.
    """
    stripped = (text or "").strip()
    if stripped == "-1":
        return INFINITE
    if re.fullmatch(r"-\d+", stripped):
        seconds = -min(int(stripped[1:]), _LONG_MAX + 1) * 86400
    else:
        tree = _parse("time_limit", stripped)
        if tree.data == "t_inf":
            return INFINITE
        seconds = sum(min(field, _LONG_MAX) * unit for field, unit in zip(_ints(tree), _FIELD_SECONDS[tree.data]))
    rounded = int32(int32(seconds) + 59)
    minutes = (abs(rounded) // 60 * (1 if rounded >= 0 else -1)) & 0xFFFFFFFF  # C division truncates
    if minutes == 0 or minutes >= INFINITE:
        return INFINITE  # SLURM reads a zero limit as no limit, and 0xFFFFFFFF is its own INFINITE
    return minutes


SQUEUE_TIME_MAX = 365 * 86400  # squeue shows a longer time as INVALID


def _dhms(seconds: int) -> tuple[int, int, int, int]:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return days, hours, minutes, secs


def format_timelimit_scontrol(minutes: int | None) -> str:
    """``TimeLimit=`` as scontrol shows it: ``01:30:00``, ``1-00:00:00``, ``UNLIMITED``."""
    if minutes is None or minutes == INFINITE:
        return "UNLIMITED"
    days, hours, mins, secs = _dhms(minutes * 60)
    if days:
        return f"{days}-{hours:02d}:{mins:02d}:{secs:02d}"
    return f"{hours:02d}:{mins:02d}:{secs:02d}"


def format_elapsed(seconds: int | float) -> str:
    """squeue's TIME and TIME_LIMIT style: ``0:05``, ``1:02:03``, ``1-00:00:00``."""
    days, hours, mins, secs = _dhms(max(0, int(seconds)))
    if days:
        return f"{days}-{hours:02d}:{mins:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{mins:02d}:{secs:02d}"
    return f"{mins}:{secs:02d}"


def format_time_squeue(seconds: int | float) -> str:
    """squeue's TIME, TIME_LIMIT and TIME_LEFT: INVALID past a year, as squeue 22.05 shows them."""
    return "INVALID" if seconds > SQUEUE_TIME_MAX else format_elapsed(seconds)


def format_timelimit_squeue(minutes: int | None) -> str:
    if minutes is None or minutes == INFINITE:
        return "UNLIMITED"
    return format_time_squeue(minutes * 60)


def format_elapsed_sacct(seconds: int | float) -> str:
    """sacct's Elapsed: always ``HH:MM:SS``, with ``D-`` when a day or more."""
    days, hours, mins, secs = _dhms(max(0, int(seconds)))
    if days:
        return f"{days}-{hours:02d}:{mins:02d}:{secs:02d}"
    return f"{hours:02d}:{mins:02d}:{secs:02d}"


# ---------------------------------------------------------------- hostlists


def expand_hostlist(text: str) -> list[str]:
    """``node[1-3],gpu[01-02]`` -> every host name, in order (duplicates kept)."""
    tree = _parse("hostlist", text)
    names: list[str] = []
    for host in tree.children:
        segments: list[list[str] | str] = []  # each piece of the name: a text, or a bracket's values
        for part in host.children:
            if getattr(part, "data", None) == "bracket":
                pieces = []
                for rng in part.children:
                    tokens = [t for t in rng.children]
                    low = tokens[0]
                    high = tokens[1] if len(tokens) > 1 else low
                    width = len(low) if low.startswith("0") and len(low) > 1 else 0
                    a, b = int(low), int(high)
                    if b < a or b - a > 1_000_000:
                        raise InvalidValue("hostlist", text)
                    pieces += [str(i).zfill(width) for i in range(a, b + 1)]
                segments.append(pieces)
            else:
                segments.append(str(part))
        names += _combine(segments)
    return names


def _combine(segments: list[list[str] | str]) -> list[str]:
    """Every name the segments spell, in SLURM's order: the last bracket varies fastest, then the
    first, the second... (``r[0,1]_k[2-3]_b[4,5]`` -> r0_k2_b4 r0_k2_b5 r1_k2_b4 ...)."""
    brackets = [i for i, values in enumerate(segments) if isinstance(values, list)]
    slowest_first = list(reversed(brackets[:-1])) + brackets[-1:]
    names = []
    for choice in itertools.product(*(segments[i] for i in slowest_first)):
        chosen = dict(zip(slowest_first, choice))
        names.append("".join(chosen.get(i, values) for i, values in enumerate(segments)))
    return names


_TAIL_NUMBER = re.compile(r"^(.*?)(\d+)$")


def _padded(digits: str) -> bool:
    return len(digits) > 1 and digits.startswith("0")


def compress_hostlist(names: list[str]) -> str:
    """SLURM's compressed form, as ``scontrol show hostlist`` gives it.

    Order is kept (no sorting): adjacent names sharing a prefix join one
    bracket group, and runs of consecutive numbers of the same width become
    ranges, so ``node3,node1,node2`` -> ``node[3,1-2]``. Sort first for an
    allocation's node list.
    """
    parts: list[str] = []
    i = 0
    while i < len(names):
        match = _TAIL_NUMBER.match(names[i])
        if not match:
            parts.append(names[i])
            i += 1
            continue
        prefix = match.group(1)
        numbers: list[str] = []
        while i < len(names):
            m = _TAIL_NUMBER.match(names[i])
            if not m or m.group(1) != prefix:
                break
            numbers.append(m.group(2))
            i += 1
        ranges: list[str] = []
        start = 0
        for k in range(1, len(numbers) + 1):
            if k < len(numbers) and int(numbers[k]) == int(numbers[k - 1]) + 1 and (
                    len(numbers[k]) == len(numbers[k - 1]) or not _padded(numbers[k - 1])):
                continue
            a, b = numbers[start], numbers[k - 1]
            ranges.append(a if start == k - 1 else f"{a}-{b}")
            start = k
        parts.append(f"{prefix}{numbers[0]}" if len(numbers) == 1 else f"{prefix}[{','.join(ranges)}]")
    return ",".join(parts)


# ---------------------------------------------------------------- arrays


# SLURM's own ceiling on MaxArraySize; a cluster's bound is checked against its slurm.conf.
MAX_ARRAY_SIZE = 4000001
# The longest array text a record keeps (a pathological set lists millions of indices);
# the views cut it shorter still, to SLURM_BITSTR_LEN.
ARRAY_TEXT_LIMIT = 65536
# A throttle of NO_VAL or more means none (SLURM shows ``0-9`` for ``0-9%4294967295``).
_NO_THROTTLE = 0xFFFFFFFF


@dataclass(frozen=True)
class ArraySpec:
    indices: IndexSet
    throttle: int | None
    text: str  # SLURM's form, as scontrol's ArrayTaskId shows it


def parse_array(text: str, max_array_size: int = MAX_ARRAY_SIZE) -> ArraySpec:
    """``0-15:4%2`` -> indices and throttle. Every bound is checked before anything is
    expanded, so ``0-4294967295`` costs no more than ``0-3``."""
    tree = _parse("array", text)
    runs = []
    throttle = None
    for child in tree.children:
        if getattr(child, "type", None) == "INT":
            throttle = int(child)
            continue
        n = _ints(child)
        low = n[0]
        high = n[1] if len(n) > 1 else low
        step = n[2] if len(n) > 2 else 1
        if high < low or step < 1:
            raise InvalidValue("array", text)
        if high >= max_array_size:
            raise InvalidValue("array", text, f"indices must be below MaxArraySize={max_array_size}")
        runs.append((low, high, step))
    indices = IndexSet.from_runs(runs)
    if not indices:
        raise InvalidValue("array", text)
    if throttle is not None and (throttle >= _NO_THROTTLE or throttle == 0):
        throttle = None
    return ArraySpec(indices, throttle, format_array(indices, throttle))


def format_array(indices, throttle: int | None = None, limit: int | None = ARRAY_TEXT_LIMIT) -> str:
    """``0,2-4``, ``1,3,5%2``, ``0-30:3``: the indices as SLURM shows them (see IndexSet.slurm_text)."""
    if not isinstance(indices, IndexSet):
        indices = IndexSet.of(indices)
    text = indices.slurm_text(limit)
    return f"{text}%{throttle}" if throttle else text


# ---------------------------------------------------------------- dependencies


@dataclass(frozen=True)
class DepItem:
    kind: str
    job_id: str | None = None
    delay_minutes: int = 0


@dataclass(frozen=True)
class Dependency:
    any_of: bool
    items: tuple[DepItem, ...]


def _job_ref_32(ref: str) -> str:
    """``4294967298`` -> ``2``: sbatch reads a dependency's job id (and task index) as a C long
    kept in 32 unsigned bits, so a huge id names a job id that can exist, never a bigger one."""
    return "_".join(str(min(int(part), LONG_MAX) & 0xFFFFFFFF) if part.isdigit() else part
                    for part in ref.split("_"))


def parse_dependency(text: str) -> Dependency:
    tree = _parse("dependency", text)
    items: list[DepItem] = []
    for dep in tree.children:
        if dep.data == "dep_singleton":
            items.append(DepItem("singleton"))
            continue
        kind = str(dep.children[0])
        for job in dep.children[1:]:
            job_id = _job_ref_32(str(job.children[0]))
            if job_id.split("_")[0] == "0":  # no job has id 0 (4294967296 wraps to it)
                raise InvalidValue("dependency", text)
            delay = int(job.children[1]) if len(job.children) > 1 else 0
            if delay and kind != "after":
                # Only "after" takes a +time delay in SLURM 22.05.
                raise InvalidValue("dependency", text)
            items.append(DepItem(kind, job_id, delay))
    return Dependency(tree.data == "dep_any", tuple(items))


# ---------------------------------------------------------------- memory, GPUs


_MEM_FACTOR = {"K": 1, "M": 1024, "G": 1024 ** 2, "T": 1024 ** 3}  # in KB
_MEM_UNIT = re.compile(r"([KMGTkmgt][Bb]?)?")
_UINT64 = (1 << 64) - 1
MEM_PER_CPU_FLAG = 1 << 63  # SLURM's marker bit: a size never reaches it


def parse_memory_mb(text: str) -> int:
    """MB; K rounds up to whole MB; ``0`` means all of the node's memory.

    As sbatch reads a size: a C long (leading blanks and ``+`` allowed, not ``-1``, not past
    the long's ceiling), one unit letter (optionally with B) and nothing after; the size in MB
    wraps at 64 bits, and the top bit (SLURM's per-CPU marker) is not part of the size.
    """
    number, rest = strtol(text or "")
    if number is None or _MEM_UNIT.fullmatch(rest) is None or number < 0 or _overflows(text):
        raise InvalidValue("memory", text)
    kb = number * _MEM_FACTOR[(rest[:1] or "M").upper()]
    return (-(-kb // 1024) & _UINT64) & ~MEM_PER_CPU_FLAG


@dataclass(frozen=True)
class GpuSpec:
    type: str | None
    count: int


def parse_gpus(text: str) -> GpuSpec:
    tree = _parse("gpus", text)
    if tree.data == "gpu_count":
        count, gtype = int(tree.children[0]), None
    else:
        gtype, count = str(tree.children[0]), int(tree.children[1])
    if count < 1:
        raise InvalidValue("gpus", text)
    return GpuSpec(gtype, count)


@dataclass(frozen=True)
class Gres:
    name: str
    type: str | None = None
    count: int = 1


def parse_gres(text: str) -> tuple[Gres, ...]:
    if (text or "").strip().lower() == "none":
        return ()
    tree = _parse("gres", text)
    out = []
    for item in tree.children:
        words = [str(t) for t in item.children if t.type == "WORD"]
        counts = [int(t) for t in item.children if t.type == "INT"]
        out.append(Gres(words[0], words[1] if len(words) > 1 else None, counts[0] if counts else 1))
    return tuple(out)


# ---------------------------------------------------------------- signals


@dataclass(frozen=True)
class SignalSpec:
    signal: int
    name: str
    seconds: int = 60
    batch_only: bool = False
    reservation: bool = False


def signal_number(name: str) -> int | None:
    """``USR1``, ``SIGUSR1`` or ``10`` -> 10; None if not a signal."""
    text = name.strip().upper()
    if text.isascii() and text.isdecimal():  # str.isdecimal() also takes "²", which int() refuses
        number = int(text)
        return number if 0 < number < _signal.NSIG else None
    if not text.startswith("SIG"):
        text = "SIG" + text
    member = getattr(_signal.Signals, text, None) if text in _signal.Signals.__members__ else None
    return int(member) if member is not None else None


def signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name[3:]
    except ValueError:
        return str(number)


def parse_signal_spec(text: str) -> SignalSpec:
    match = re.fullmatch(r"\s*(?:([RB]{1,2}):)?([A-Za-z0-9]+)(?:@(\d+))?\s*", text or "")
    if not match:
        raise InvalidValue("signal", text)
    flags, sig, seconds = match.groups()
    number = signal_number(sig)
    if number is None:
        raise InvalidValue("signal", text)
    secs = int(seconds) if seconds is not None else 60
    if secs > 0xFFFF:
        raise InvalidValue("signal", text)
    flags = flags or ""
    return SignalSpec(number, signal_name(number), secs, "B" in flags, "R" in flags)


# ---------------------------------------------------------------- --export


@dataclass(frozen=True)
class ExportSpec:
    mode: str | None  # ALL, NONE, NIL, or None when only names were listed
    names: tuple[str, ...] = ()
    assignments: dict[str, str] = field(default_factory=dict)


MAIL_TYPES = {"NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "STAGE_OUT", "TIME_LIMIT", "TIME_LIMIT_90",
              "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS", "INVALID_DEPEND"}


def parse_mail_type(text: str) -> list[str]:
    """``--mail-type``: comma-separated types, any case. sbatch refuses the list only when
    it names no known type at all (``END,bad`` passes, ``bad`` does not)."""
    known = [item.upper() for item in text.split(",") if item.upper() in MAIL_TYPES]
    if not known:
        raise InvalidValue("mail_type", text)
    return known


def parse_export(text: str) -> ExportSpec:
    """``ALL``, ``NONE``, ``NIL`` or a list of NAME / NAME=value, commas between.

    sbatch checks no name: ``A.B``, ``1X`` or ``A-B`` are exported as given, and an empty
    item (or an empty list) adds nothing.
    """
    if text is None:
        raise InvalidValue("export", text)
    mode = None
    names: list[str] = []
    assignments: dict[str, str] = {}
    # A value may hold commas when quoted: FOO="a,b".
    for item in re.findall(r'(?:[^,"\']|"[^"]*"|\'[^\']*\')+', text):
        item = item.strip()
        if item.upper() in ("ALL", "NONE", "NIL"):
            mode = item.upper()
        elif "=" in item:
            name, value = item.split("=", 1)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            if name:
                assignments[name] = value
        elif item:
            names.append(item)
    return ExportSpec(mode, tuple(names), assignments)


# ---------------------------------------------------------------- counts


def expand_counts(text: str) -> list[int]:
    """``2(x3),1`` -> ``[2, 2, 2, 1]``."""
    tree = _parse("counts", text)
    out: list[int] = []
    for count in tree.children:
        n = _ints(count)
        out += [n[0]] * (n[1] if len(n) > 1 else 1)
    return out


def compress_counts(counts: list[int]) -> str:
    """``[2, 2, 2, 1]`` -> ``2(x3),1`` as SLURM_TASKS_PER_NODE shows it."""
    parts: list[str] = []
    i = 0
    while i < len(counts):
        j = i
        while j + 1 < len(counts) and counts[j + 1] == counts[i]:
            j += 1
        run = j - i + 1
        parts.append(f"{counts[i]}(x{run})" if run > 1 else str(counts[i]))
        i = j + 1
    return ",".join(parts)


# ---------------------------------------------------------------- output patterns

_PATTERN = re.compile(r"%(\d*)([%AaJjNnstux])")
_NUMERIC = set("AaJjnst")


def parse_output_pattern(text: str) -> list[tuple[str, str, int]]:
    """Tokens of a filename pattern: ("lit", text, 0) or ("spec", letter, pad)."""
    if "\\" in text:
        return [("lit", text.replace("\\", ""), 0)]
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    for match in _PATTERN.finditer(text):
        if match.start() > pos:
            tokens.append(("lit", text[pos:match.start()], 0))
        tokens.append(("spec", match.group(2), int(match.group(1) or 0)))
        pos = match.end()
    if pos < len(text):
        tokens.append(("lit", text[pos:], 0))
    return tokens


def expand_output_pattern(pattern: str, ctx: dict) -> str:
    """Expand ``%j``, ``%4a``... with ``ctx`` (job_id, array_job_id, array_task_id,
    job_name, user, node_name, node_id, step_id, task_id). A backslash anywhere
    turns expansion off; unknown context leaves the specifier as written."""
    out: list[str] = []
    for kind, value, pad in parse_output_pattern(pattern):
        if kind == "lit":
            out.append(value)
            continue
        if value == "%":
            out.append("%")
            continue
        job_id = ctx.get("job_id")
        step = ctx.get("step_id")
        array_job = ctx.get("array_job_id")
        source = {
            "j": job_id,
            # The batch step has no number: SLURM writes the bare job id for it.
            "J": f"{job_id}.{step}" if step not in (None, "batch") else job_id,
            "A": array_job if array_job is not None else job_id,
            "a": ctx.get("array_task_id", 4294967294 if array_job is None else None),
            "x": ctx.get("job_name"),
            "u": ctx.get("user"),
            "N": ctx.get("node_name"),
            "n": ctx.get("node_id"),
            "s": step,
            "t": ctx.get("task_id"),
        }[value]
        if source is None:
            out.append(f"%{pad or ''}{value}")
            continue
        text = str(source)
        if pad and value in _NUMERIC and text.isdecimal():
            text = text.zfill(pad)
        out.append(text)
    return "".join(out)


# ---------------------------------------------------------------- times (--begin, sacct -S)


class InvalidTime(InvalidValue):
    """A time SLURM's parser rejects; ``pos`` is where it stopped understanding the text
    (None when there was nothing to read: SLURM then prints no position line)."""

    def __init__(self, text: str, pos: int | None):
        super().__init__("time", text, f"pos={pos}")
        self.pos = pos

    def position_line(self) -> str | None:
        return None if self.pos is None else f"Invalid time specification (pos={self.pos}): {self.text}"


# Times of day by name; SLURM 22.05 does not know "elevenses", whatever sbatch(1) says.
_NAMED_TIMES = {"midnight": (0, 0), "noon": (12, 0), "fika": (15, 0), "teatime": (16, 0)}
# now+N's units, longest spelling first so "hours" is not read as "hour" and a stray "s".
_UNITS = (("seconds", 1), ("second", 1), ("minutes", 60), ("minute", 60), ("hours", 3600), ("hour", 3600),
          ("days", 86400), ("day", 86400), ("weeks", 604800), ("week", 604800))


class _TimeReader:
    """One pass over a time string: dates and times of day may come in either order,
    separated by blanks (or an upper-case T)."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, pos: int):
        raise InvalidTime(self.text, pos)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def digits(self) -> tuple[str, int]:
        """The digit run at the cursor and where it ends (the cursor moves past it)."""
        start = self.pos
        while self.peek().isdecimal():
            self.pos += 1
        return self.text[start:self.pos], self.pos

    def field(self, low: int, high: int, *, exact: bool) -> int:
        """A two-digit field (one digit too when not ``exact``): a wrong length or a value
        out of range stops where SLURM's parser does."""
        start = self.pos
        run, end = self.digits()
        if not run or (exact and len(run) == 1):
            self.fail(end)
        if len(run) > 2:
            self.fail(start + (1 if len(run) == 3 else 2))
        value = int(run)
        if not low <= value <= high:
            self.fail(end - 2)
        return value

    def end_of_token(self):
        if self.peek() and not self.peek().isspace() and self.peek() != "T":
            self.fail(self.pos)

    def clock(self, hour_run: str, hour_end: int) -> tuple[int, int, int]:
        """HH:MM[:SS] [AM|PM], the cursor on the first colon."""
        if len(hour_run) > 2:
            self.fail(hour_end if len(hour_run) == 3 else hour_end - len(hour_run) + 2)
        if int(hour_run) > 23:
            self.fail(hour_end - 2)
        hour = int(hour_run)
        self.pos += 1
        minute = self.field(0, 59, exact=True)
        second = 0
        if self.peek() == ":":
            self.pos += 1
            second = self.field(0, 59, exact=True)
        after = self.pos
        while self.peek().isspace():
            self.pos += 1
        half = self.text[self.pos:self.pos + 2].lower()
        if half in ("am", "pm"):
            if hour > 12:
                self.fail(self.pos)
            hour = hour % 12 + (12 if half == "pm" else 0)
            self.pos += 2
        else:
            self.pos = after
        return hour, minute, second

    def year2(self) -> int | None:
        """YY; 00 counts as no year given. Two more digits (a YYYY) stop after the first two."""
        start = self.pos
        run, end = self.digits()
        if len(run) < 2 or len(run) == 3:
            self.fail(end)
        if len(run) > 3:
            self.fail(start + 2)
        return 2000 + int(run) if int(run) else None

    def date(self, start: int, run: str, end: int) -> tuple[int | None, int, int]:
        """(year or None, month, day) from a digit run at ``start`` and what follows it."""
        text = self.text
        if len(run) == 4 and text[end:end + 1] == "-" and text[end + 3:end + 4] == "-" \
                and text[end + 1:end + 3].isdecimal():
            self.pos = end + 1
            month = self.field(1, 12, exact=True)
            self.pos += 1
            day_run, day_end = self.digits()
            if not day_run or len(day_run) > 2:
                self.fail(day_end)
            if not 1 <= int(day_run) <= 31:
                self.fail(day_end - 2)
            return int(run), month, int(day_run)
        separator = text[end:end + 1]
        if separator in ("/", "."):
            if len(run) > 2 or not 1 <= int(run) <= 12:
                self.fail(end - 2)
            self.pos = end + 1
            day_at = self.pos
            while self.peek().isdecimal() and self.pos - day_at < 2:
                self.pos += 1
            day_run = self.text[day_at:self.pos]
            if not day_run:
                self.fail(self.pos)
            if not 1 <= int(day_run) <= 31:
                self.fail(self.pos - 2)
            year = None
            # Digits straight after a two-digit day are its year (MM/DDYY).
            if self.peek() == separator or (len(day_run) == 2 and self.peek().isdecimal()):
                self.pos += self.peek() == separator
                year = self.year2()
            return year, int(run), int(day_run)
        # MMDD[YY]: the month is the first two digits, the rest says which form it is.
        month_digits = run[:2]
        if not 1 <= int(month_digits) <= 12:
            self.fail(start + len(month_digits) - 2)
        if len(run) <= 2:
            self.fail(end)
        if len(run) not in (3, 4, 6):
            self.fail(end)
        day_end = start + min(len(run), 4)
        day = int(run[2:4])
        if not 1 <= day <= 31:
            self.fail(day_end - 2)
        return (2000 + int(run[4:]) if len(run) == 6 and int(run[4:]) else None), int(month_digits), day


def _on_day(year: int, month: int, day: int, clock: tuple[int, int, int]) -> datetime:
    # A day past the month's end runs on into the next month (02/30 is March 2nd), as in SLURM.
    return datetime(year, month, 1, *clock) + timedelta(days=day - 1)


def parse_time(text: str, now: datetime, *, past: bool = False) -> datetime:
    """A time in the forms sbatch(1) --begin lists (HH:MM[:SS] [AM|PM], MMDD[YY], MM/DD[/YY],
    MM.DD[.YY], each with -HH:MM[:SS], YYYY-MM-DD[THH:MM[:SS]], now[{+|-}count[unit]], today,
    tomorrow, midnight, noon, fika, teatime), a date and a time of day in either order.

    A time of day or a date without a year that is already past means the next one, except
    with ``past`` (sacct's -S/-E), which reads them in the current day and year.
    Raises ``InvalidTime`` with where SLURM's parser stops.
    """
    text = text or ""
    reader = _TimeReader(text)
    now = now.replace(microsecond=0)
    today = now.replace(hour=0, minute=0, second=0)
    day: tuple[int | None, int, int] | None = None
    fixed_day = False  # today/tomorrow: a day that is never moved on
    clock: tuple[int, int, int] | None = None
    while reader.pos < len(text):
        char = reader.peek()
        if char.isspace() or char == "T":
            reader.pos += 1
            continue
        start = reader.pos
        lower = text[start:].lower()
        word = next((w for w in ("today", "tomorrow", "now", *_NAMED_TIMES) if lower.startswith(w)), None)
        if word == "now":
            return _relative(reader, now)
        if word:
            reader.pos += len(word)
            if reader.peek() and not reader.peek().isspace():
                reader.fail(reader.pos)
            if word in _NAMED_TIMES:
                clock = (*_NAMED_TIMES[word], 0)
            else:
                moment = today + timedelta(days=1 if word == "tomorrow" else 0)
                day, fixed_day = (moment.year, moment.month, moment.day), True
            continue
        if not char.isdecimal():
            reader.fail(start)
        run, end = reader.digits()
        if reader.peek() == ":":
            clock = reader.clock(run, end)
        else:
            day = reader.date(start, run, end)
            fixed_day = False
            if reader.peek() == "-":  # -HH:MM[:SS]
                reader.pos += 1
                hour_run, hour_end = reader.digits()
                if not hour_run or reader.peek() != ":":
                    reader.fail(reader.pos)
                clock = reader.clock(hour_run, hour_end)
        reader.end_of_token()
    if day is None and clock is None:
        raise InvalidTime(text, None)
    if day is None:
        moment = _on_day(now.year, now.month, now.day, clock)
        return moment if past or moment > now else moment + timedelta(days=1)
    year, month, date = day
    moment = _on_day(now.year if year is None else year, month, date, clock or (0, 0, 0))
    if year is None and not fixed_day and not past and moment < now:
        moment = _on_day(now.year + 1, month, date, clock or (0, 0, 0))
    return moment


def _relative(reader: _TimeReader, now: datetime) -> datetime:
    """now[ {+|-} count [unit]], the cursor on "now"."""
    reader.pos += 3
    while reader.peek().isspace():
        reader.pos += 1
    sign = reader.peek()
    if not sign:
        return now
    if sign not in "+-":
        reader.fail(reader.pos)
    sign_at = reader.pos
    reader.pos += 1
    while reader.peek().isspace():
        reader.pos += 1
    count_at = reader.pos
    run, _ = reader.digits()
    if not run:
        reader.fail(sign_at)
    while reader.peek().isspace():
        reader.pos += 1
    factor = 1
    if reader.peek():
        lower = reader.text[reader.pos:].lower()
        unit = next(((name, f) for name, f in _UNITS if lower.startswith(name)), None)
        if unit is None:
            reader.fail(count_at)
        reader.pos += len(unit[0])
        factor = unit[1]
        if reader.peek() and not reader.peek().isspace():
            reader.fail(reader.pos)
        while reader.peek().isspace():
            reader.pos += 1
        if reader.peek():
            reader.fail(reader.pos)
    step = timedelta(seconds=int(run) * factor)
    return now + step if sign == "+" else now - step
