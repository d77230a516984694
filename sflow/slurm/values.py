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

from sflow.slurm.indexset import IndexSet

INFINITE = 0xFFFFFFFE  # SLURM's UNLIMITED time limit
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
    from lark.exceptions import LarkError

    from sflow.slurm.grammars import parser

    if not isinstance(text, str) or not text.strip():
        raise InvalidValue(kind, text if isinstance(text, str) else repr(text))
    try:
        return parser("values", _STARTS).parse(text.strip(), start=kind)
    except LarkError:
        raise InvalidValue(kind, text) from None


def _ints(tree) -> list[int]:
    return [int(t) for t in tree.children if getattr(t, "type", None) == "INT"]


# ---------------------------------------------------------------- integers


def parse_positive_int(text: str) -> int:
    if not re.fullmatch(r"\s*\+?\d+\s*", text or ""):
        raise InvalidValue("int", text)
    number = int(text)
    if number < 1:
        raise InvalidValue("int", text, "must be at least 1")
    return number


def parse_node_range(text: str) -> tuple[int, int | None]:
    """``2`` -> (2, None); ``2-4`` -> (2, 4). The maximum is None when not given."""
    match = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", text or "")
    if not match:
        raise InvalidValue("node_range", text)
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else None
    if low < 1 or (high is not None and high < low):
        raise InvalidValue("node_range", text)
    return low, high


# ---------------------------------------------------------------- time


_FIELD_SECONDS = {"t_m": (60,), "t_ms": (60, 1), "t_hms": (3600, 60, 1), "t_dh": (86400, 3600),
                  "t_dhm": (86400, 3600, 60), "t_dhms": (86400, 3600, 60, 1)}
_LONG_MAX = (1 << 63) - 1


def _int32(number: int) -> int:
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
    rounded = _int32(_int32(seconds) + 59)
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


def parse_dependency(text: str) -> Dependency:
    tree = _parse("dependency", text)
    items: list[DepItem] = []
    for dep in tree.children:
        if dep.data == "dep_singleton":
            items.append(DepItem("singleton"))
            continue
        kind = str(dep.children[0])
        for job in dep.children[1:]:
            job_id = str(job.children[0])
            delay = int(job.children[1]) if len(job.children) > 1 else 0
            if delay and kind != "after":
                # Only "after" takes a +time delay in SLURM 22.05.
                raise InvalidValue("dependency", text)
            items.append(DepItem(kind, job_id, delay))
    return Dependency(tree.data == "dep_any", tuple(items))


# ---------------------------------------------------------------- memory, GPUs


_MEM_FACTOR = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_memory_mb(text: str) -> int:
    """MB; K rounds up to whole MB; ``0`` means all of the node's memory."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGTkmgt])?[Bb]?\s*", text or "")
    if not match:
        raise InvalidValue("memory", text)
    number = int(match.group(1))
    factor = _MEM_FACTOR[(match.group(2) or "M").upper()]
    mb = number * factor
    return int(mb) if mb == int(mb) else int(mb) + 1


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
    if text.isascii() and text.isdigit():  # str.isdigit() also takes "²", which int() refuses
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
    from sflow.exec.layout import compress_counts as _compress

    return _compress(counts)


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
        if pad and value in _NUMERIC and text.isdigit():
            text = text.zfill(pad)
        out.append(text)
    return "".join(out)


# ---------------------------------------------------------------- --begin

_NAMED_TIMES = {"midnight": (0, 0), "noon": (12, 0), "fika": (15, 0), "teatime": (16, 0)}
_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}


def parse_begin(text: str, now: datetime) -> datetime:
    """``now+1hour``, ``16:00``, ``2026-12-01T08:00``, ``midnight``, ``tomorrow``..."""
    value = (text or "").strip()
    low = value.lower()
    match = re.fullmatch(r"now(?:\+(\d+)([a-z]*))?", low)
    if match:
        if not match.group(1):
            return now
        unit = match.group(2) or "seconds"
        for name, factor in _UNITS.items():
            if name.startswith(unit) or name.rstrip("s") == unit:
                return now + timedelta(seconds=int(match.group(1)) * factor)
        raise InvalidValue("begin", text)
    if low in ("today", "tomorrow"):
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return day + timedelta(days=1 if low == "tomorrow" else 0)
    if low in _NAMED_TIMES:
        hour, minute = _NAMED_TIMES[low]
        moment = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return moment if moment > now else moment + timedelta(days=1)
    match = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?(am|pm)?", low)
    if match:
        hour, minute = int(match.group(1)), int(match.group(2))
        if match.group(4) == "pm" and hour < 12:
            hour += 12
        moment = now.replace(hour=hour, minute=minute, second=int(match.group(3) or 0), microsecond=0)
        return moment if moment > now else moment + timedelta(days=1)
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d", "%m/%d/%y", "%m/%d"):
        try:
            moment = datetime.strptime(value, fmt)
        except ValueError:
            continue
        if fmt == "%m/%d":
            moment = moment.replace(year=now.year)
        return moment
    raise InvalidValue("begin", text)
