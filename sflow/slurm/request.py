"""From sbatch's ingredients to one ``JobRequest``, the way sbatch builds it.

Sources, in SLURM's precedence (later wins): ``#SBATCH``/``#SFLOW`` directives,
then ``SBATCH_*``/``SFLOW_*`` input environment variables, then the command
line. Every value is checked, whichever source ends up winning, as sbatch does.
The option table (``compat/options.toml``) says what each option is; the value
grammars (``sflow.slurm.values``) say what its argument means.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping

from sflow.credentials import SECRET_NAMES
from sflow.errors import SflowError, SlurmError, UsageError
from sflow.slurm import values
from sflow.slurm.display import defined_options
from sflow.slurm.getopt import getopt
from sflow.slurm.options import Option, table
from sflow.slurm.script import SBATCH_PREFIX, SFLOW_PREFIX, check_script, directives, wrap_script


@dataclass
class Setting:
    """One option occurrence, wherever it came from."""

    option: Option
    raw: str | None
    line: int | None = None  # directive line, None for the command line and environment
    source: str | None = None  # where: the script's name, or an environment variable


@dataclass
class Submission:
    request: Any  # JobRequest; typed loosely so this module imports pydantic lazily
    flags: Any  # SubmitFlags
    warnings: list[str] = field(default_factory=list)
    listing: str = ""  # -v / SBATCH_DEBUG: sbatch's "defined options" block, printed before submitting


def _nonnegative(text: str) -> int:
    number = int(text.strip())
    if number < 0:
        raise values.InvalidValue("int", text)
    return number


# --priority=TOP: the highest priority a job can be given, one below the held/none markers.
PRIORITY_TOP = 0xFFFFFFFD
PRIORITY_NONE = 0xFFFFFFFE  # SLURM's NO_VAL: no priority can reach it
NICE_LIMIT = 2147483645
NICE_DEFAULT = 100  # --nice without an adjustment


def _leading_int(text: str) -> int:
    """The number C's strtol reads at the start of ``text`` (0 if none): sbatch reads
    --priority and --nice that way, so "2abc" is 2 and "abc" is 0."""
    number, _rest = values.strtol(text)
    return number or 0


def _priority(text: str) -> int | None:
    """None for 0 (or no number at all): sbatch takes that as no --priority given."""
    if text.strip(values.C_SPACE).upper() == "TOP":
        return PRIORITY_TOP
    number = _leading_int(text)
    if number < 0:
        raise SlurmError("Priority must be >= 0", 255)
    if number >= PRIORITY_NONE:
        raise SlurmError(f"Priority must be < {PRIORITY_NONE}", 255)
    return number or None


def _nice(text: str) -> int:
    if text == "":
        return NICE_DEFAULT
    number = _leading_int(text)
    # C's llabs of the most negative long is itself, so that one passes the range check.
    if number != values.LONG_MIN and abs(number) > NICE_LIMIT:
        raise SlurmError(f"Invalid --nice value, out of range (+/- {NICE_LIMIT})", 255)
    return values.int32(number)


def _count(text: str, name: str, *, minimum: int = 1, limit: int = values.LONG_MAX) -> int:
    """A count as sbatch reads one: a whole C long (leading blanks and sign allowed, nothing after),
    at least ``minimum``, below the long's ceiling (``limit``, when lower, is checked too), then cut
    to the 32-bit int SLURM keeps it in: ``4294967298`` is 2 and ``2147483648`` is negative."""
    number, rest = values.strtol(text)
    if number is None or rest:
        raise SlurmError(f'Invalid numeric value "{text}" for {name}.', 1)
    if number >= values.LONG_MAX or number > limit:
        raise SlurmError(f"Numeric argument ({number}) to big for {name}.", 1)
    if number < minimum:
        raise SlurmError(f'Invalid numeric value "{text}" for {name}.', 1)
    return values.int32(number)


# What sbatch itself refuses of a count once it is cut to 32 bits; other counts that come
# out zero or negative are taken as not given.
_COUNT_REFUSED = {
    "ntasks": lambda n: f"invalid number of tasks (-n {n})" if n < 0 else None,
    "cpus-per-task": lambda n: f"invalid number of cpus per task (-c {n})" if n <= 0 else None,
}


def _int_option(option: Option, text: str) -> int:
    number = _count(text, f"--{option.long}")
    refused = _COUNT_REFUSED.get(option.long, lambda n: None)(number)
    if refused:
        raise SlurmError(refused, 1)
    return number


def _count0_option(option: Option, text: str) -> int:
    return _count(text, f"--{option.long}", minimum=0)


_B_PARTS = ("first", "second", "third")
_INT_MAX = (1 << 31) - 1


def _node_info(option: Option, text: str) -> tuple[int, ...]:
    """-B sockets[:cores[:threads]]: each part a count of zero or more that fits an int."""
    parts = text.split(":")
    if len(parts) > len(_B_PARTS):
        raise values.InvalidValue("node_info", text)
    return tuple(_count(part, f"{which} arg of -B", minimum=0, limit=_INT_MAX)
                 for part, which in zip(parts, _B_PARTS))


def _switches(option: Option, text: str) -> int:
    """--switches=count[@max-time]: the count is read as any count; the time is not checked."""
    return _count(text.partition("@")[0], "--switches")


def _wait_all_nodes(option: Option, text: str) -> int:
    """0 or 1; sbatch keeps it in 16 bits, so 4294967296 is 0 and 2147483648 is 0 too."""
    number = _count(text, "--wait-all-nodes", minimum=0) if text else 0
    if number & 0xFFFF not in (0, 1):
        raise values.InvalidValue("wait_all_nodes", text)
    return number & 0xFFFF


def _choice(kind: str) -> Callable[[str], str]:
    allowed = kind.split(":", 1)[1].split("|")

    def parse(text: str) -> str:
        if text not in allowed:
            raise values.InvalidValue(kind, text)
        return text

    return parse


# Value kind (the table's ``value``) -> parser from text to plain data.
CONVERTERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "flag": lambda text: True,  # an optional argument sflow reads no further: the option is simply on
    "uint": _nonnegative,
    "time_limit": values.parse_time_limit,
    "duration": values.parse_time_limit,
    "node_range": values.parse_node_range,
    "memory": values.parse_memory_mb,
    "gpus": values.parse_gpus,
    "gres": values.parse_gres,
    "array": values.parse_array,
    "dependency": values.parse_dependency,
    "signal": values.parse_signal_spec,
    "export": values.parse_export,
    "hostlist": values.expand_hostlist,
    "output_pattern": str,
    "priority": _priority,
    "nice": _nice,
    "begin": lambda text: values.parse_time(text, datetime.now()),
    "mail_type": values.parse_mail_type,
}


# Kinds whose messages name the option: parser from (option, text).
OPTION_CONVERTERS: dict[str, Callable[[Option, str], Any]] = {
    "int": _int_option,
    "count0": _count0_option,
    "node_info": _node_info,
    "switches": _switches,
    "wait_all_nodes": _wait_all_nodes,
}


def convert(option: Option, raw: str | None) -> Any:
    """Parse one option's argument, or raise SLURM's message for that option."""
    if option.arg == "none":
        return True
    if raw is None:  # an optional argument left out
        return True
    kind = option.value or "str"
    if kind.startswith("choice:"):
        parser = _choice(kind)
    elif kind in OPTION_CONVERTERS:
        def parser(text: str, convert_option=OPTION_CONVERTERS[kind]) -> Any:
            return convert_option(option, text)
    else:
        parser = CONVERTERS.get(kind, str)
    try:
        return parser(raw)
    except (values.InvalidValue, ValueError, OverflowError) as err:
        # A node range names the part at fault ("3-3abc": "3abc"), or says both counts.
        shown = err.text if kind == "node_range" and isinstance(err, values.InvalidValue) else raw
        message = getattr(err, "message", None) or \
            (option.invalid or "Invalid --{long} specification").format(value=shown, long=option.long)
        where = err.position_line() if isinstance(err, values.InvalidTime) else None
        raise SlurmError(message, option.invalid_exit or 255, preface=(where,) if where else ()) from None


def _from_directives(text: str, script_name: str) -> list[Setting]:
    found: list[Setting] = []
    for directive in directives(text, (SBATCH_PREFIX, SFLOW_PREFIX)):
        command = "sbatch" if directive.prefix == SBATCH_PREFIX else "sflow"
        try:
            parsed = getopt(command, list(directive.words))
        except SlurmError as err:
            err.line, err.source = directive.line, script_name
            raise
        if parsed.positionals:
            raise SlurmError(
                f"Invalid directive found in batch script: {parsed.positionals[0]}",
                255, line=directive.line, source=script_name,
            )
        found += [Setting(opt, raw, directive.line, script_name) for opt, raw in parsed.options]
    return found


def _from_environment(env: Mapping[str, str]) -> list[Setting]:
    found: list[Setting] = []
    for command in ("sflow", "sbatch"):
        for name, option in table(command).env_map().items():
            if name in env:
                # SBATCH_DEBUG is a verbosity level, not a flag: its number is kept.
                raw = env[name] if option.arg != "none" or option.long == "verbose" else None
                found.append(Setting(option, raw, None, name))
    return found


def parse_sbatch(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    script_text: str | None = None,
    user: str,
    uid: int,
    gid: int,
    host: str,
    cluster: Any = None,
    now: float | None = None,
) -> Submission:
    """Everything sbatch would submit for ``sbatch ARGV``, or the error it would print.

    ``script_text`` is the script as the submitting side read it (the file ARGV names, or
    what was piped in); this module opens no files. None with a file named: it could not be read.
    """
    command_line = getopt("sbatch", argv)
    cli = [Setting(opt, raw) for opt, raw in command_line.options]
    wraps = [s.raw for s in cli if s.option.field == "wrap"]

    if wraps:
        if command_line.positionals:
            raise SlurmError("Script arguments not permitted with --wrap option")
        script_text, script_path, script_args = wrap_script(wraps[-1]), None, []
        script_name = "wrap"
    elif command_line.positionals:
        script_path, *script_args = command_line.positionals
        if script_text is None:
            raise SlurmError(f"Unable to open file {script_path}")
        script_name = os.path.basename(script_path)
    else:
        script_text, script_path, script_args = script_text or "", None, []
        script_name = "sbatch"
    check_script(script_text)

    # sbatch reads no directives from a --wrap command.
    settings = [] if wraps else _from_directives(script_text, script_path or script_name)
    settings += _from_environment(env)
    settings += cli
    settings = _memory_options(settings)
    _gpu_options(settings)
    if cluster is not None:
        _check_against(cluster, settings)
    submission = _build(settings, script_text, script_path, script_args, script_name,
                        env=env, cwd=cwd, user=user, uid=uid, gid=gid, host=host, now=now)
    verbosity = _verbosity(settings)
    if verbosity:
        submission.listing = _listing(settings, verbosity, submission.request.work_dir)
    return submission


MEMORY_OPTIONS = ("mem", "mem-per-cpu", "mem-per-gpu")


def _memory_options(settings: list[Setting]) -> list[Setting]:
    """sbatch's fatal refusal of two kinds of memory request. The command line and the script
    may not mix them; the environment may not either, but the command line and script
    override an environment variable silently."""
    from_env = {s.option.long for s in settings if s.option.long in MEMORY_OPTIONS and s.line is None and s.source}
    if len(from_env) > 1:
        raise UsageError(["sbatch: fatal: SLURM_MEM_PER_CPU, SLURM_MEM_PER_GPU, and SLURM_MEM_PER_NODE are "
                          "mutually exclusive."], 1)
    given = {s.option.long for s in settings if s.option.long in MEMORY_OPTIONS and (s.line or not s.source)}
    if len(given) > 1:
        raise UsageError(["sbatch: fatal: --mem, --mem-per-cpu, and --mem-per-gpu are mutually exclusive."], 1)
    if given:
        return [s for s in settings if not (s.option.long in from_env and s.line is None and s.source)]
    return settings


def _gpu_count(raw: str | None) -> int | None:
    """The count of ``[type:]N`` (``--gpus``), or of a ``gpu[:type]:N`` entry of ``--gres``."""
    if raw is None:
        return None
    tail = raw.strip().rsplit(":", 1)[-1]
    return int(tail) if tail.isdecimal() else None


def _gpu_options(settings: list[Setting]) -> None:
    """The combinations of GPU options sbatch (and salloc, srun) refuse before submitting,
    in SLURM's words: what contradicts itself, not what the cluster cannot hold."""
    last = {s.option.long: s.raw for s in settings}
    if "ntasks-per-gpu" in last:
        for other in ("gpus-per-task", "ntasks-per-node"):
            if other in last:
                raise UsageError([f"sbatch: fatal: --{other} is mutually exclusive with --ntasks-per-gpu "
                                  "and SLURM_NTASKS_PER_GPU"], 1)

    def refuse(text: str) -> None:
        raise SlurmError(f"{text}\nInvalid generic resource (gres) specification", 1)

    if "cpus-per-gpu" in last and "cpus-per-task" in last:
        refuse("--cpus-per-gpu is mutually exclusive with --cpus-per-task")
    if "gpus-per-socket" in last and "sockets-per-node" not in last:
        refuse("--gpus-per-socket option requires --sockets-per-node specification")
    gres_gpus = [_gpu_count(entry) for entry in (last.get("gres") or "").split(",")
                 if entry.split(":", 1)[0] == "gpu" and ":" in entry]
    per_node = gres_gpus[0] if gres_gpus else _gpu_count(last.get("gpus-per-node"))
    total = _gpu_count(last.get("gpus"))
    per_socket = _gpu_count(last.get("gpus-per-socket"))
    per_task = _gpu_count(last.get("gpus-per-task"))
    ntasks = _leading_digits(last.get("ntasks"))
    tasks_per_node = _leading_digits(last.get("ntasks-per-node"))
    sockets = _leading_digits(last.get("sockets-per-node"))
    nodes = [_leading_digits(part) for part in (last.get("nodes") or "").split("-")] if "nodes" in last else []
    if (total and per_node and total < per_node) or (per_node and per_socket and per_node < per_socket) \
            or (total and per_socket and total < per_socket):
        refuse("Failed to ensure --gpus >= --gres=gpu/--gpus-per-node >= --gpus-per-socket")
    if total and per_node and total % per_node:
        refuse("Failed to validate job spec, --gpus is not multiple of --gres=gpu/--gpus-per-node")
    if per_node and per_socket and sockets and per_node // per_socket != sockets:
        refuse("Failed to validate job spec. Based on --gres=gpu/--gpus-per-node and --gpus-per-socket "
               "required number of sockets differ from --sockets-per-node.")
    if total and per_node and nodes and nodes[0]:
        low, high = nodes[0], (nodes[-1] or nodes[0])
        if not low <= total // per_node <= high:
            refuse(f"Failed to validate job spec. Based on --gpu and --gres=gpu/--gpus-per-node required nodes "
                   f"({total // per_node}) doesn't fall between min_nodes ({low}) and max_nodes ({high}) boundaries.")
    if total and nodes and nodes[0] and total < nodes[0]:
        refuse("Failed to validate job spec, --gpus < -N")
    if per_task:
        if total and total % per_task:
            refuse("Failed to validate job spec, --gpus not multiple of --gpus-per-task")
        if total and ntasks and total // per_task != ntasks:
            refuse("Failed to validate job spec. Based on --gpus and --gpus-per-task number of requested tasks "
                   "differ from -n/--ntasks.")
        if per_node and tasks_per_node and per_node // per_task != tasks_per_node:
            refuse("Failed to validate job spec. Based on --gres=gpu/--gpus-per-node and --gpus-per-task "
                   "requested number of tasks per node differ from --ntasks-per-node.")
        if not total and not ntasks and not tasks_per_node:  # --ntasks-per-node gives a task count too
            refuse("Failed to validate job spec. --gpus-per-task used without either --gpus or -n/--ntasks "
                   "is not allowed.")


def _leading_digits(raw: str | None) -> int | None:
    digits = re.match(r"\s*(\d+)", raw or "")
    return int(digits.group(1)) if digits else None


def _verbosity(settings: list[Setting]) -> int:
    """Each -v adds one; SBATCH_DEBUG, when set, gives the level outright (over any -v)."""
    counted = [s for s in settings if s.option.long == "verbose"]
    from_env = [s.raw for s in counted if s.raw is not None]
    if from_env:
        try:
            return max(0, int(from_env[-1]))
        except ValueError:
            return 0
    return len(counted)


def _listing(settings: list[Setting], verbosity: int, work_dir: str) -> str:
    given = []
    for setting in settings:
        raw = setting.raw
        # sbatch shows file names as the step will open them, from its working directory.
        if setting.option.long in ("output", "error", "input") and raw and raw.lower() != "none":
            raw = os.path.join(work_dir, raw)
        elif setting.option.long == "chdir":
            raw = work_dir
        given.append((setting.option.long, raw))
    return defined_options(given, verbosity, "sbatch")


def _check_against(cluster: Any, settings: list[Setting]) -> None:
    """What sbatch learns from the controller: partitions and the array size bound."""
    for setting in settings:
        field_name = setting.option.field
        if field_name == "partition" and setting.raw:
            for name in setting.raw.split(","):
                cluster.partition(name)
        elif field_name == "array" and setting.raw:
            try:
                values.parse_array(setting.raw, cluster.max_array_size)
            except values.InvalidValue:
                raise SlurmError(setting.option.invalid or "Invalid job array specification", 1) from None


def _build(settings: list[Setting], script_text, script_path, script_args, default_name, *,
           env, cwd, user, uid, gid, host, now) -> Submission:
    # deferred: pydantic costs ~30 ms at srun's start, which uses only convert()
    from sflow.slurm.model import JobRequest, SubmitFlags

    warnings: list[str] = []
    chosen: dict[str, tuple[Any, Setting]] = {}
    for setting in settings:
        option = setting.option
        if option.status == "ignored":
            if option.value:  # still checked as SLURM checks it
                try:
                    convert(option, setting.raw)
                except SlurmError as err:
                    err.line, err.source = setting.line, setting.source if setting.line else None
                    raise
            if option.note not in warnings:  # one warning per option, however many places set it
                warnings.append(option.note)
            continue
        if option.status != "supported" or not option.field:
            continue
        try:
            value = convert(option, setting.raw)
        except SlurmError as err:
            err.line, err.source = setting.line, setting.source if setting.line else None
            raise
        chosen[option.field] = (value, setting)

    fields: dict[str, Any] = {}
    flags: dict[str, Any] = {}
    cloud: dict[str, Any] = {}
    for name, (value, setting) in chosen.items():
        apply = _APPLY.get(name)
        if apply is not None:
            apply(fields, flags, cloud, value, setting)
        elif name in _FLAG_FIELDS:
            flags[name] = value
        elif name in _CLOUD_FIELDS:
            cloud[name] = value
        elif name in JobRequest.model_fields:
            fields[name] = value
        else:
            fields.setdefault("extra", {})[name] = setting.raw if setting.raw is not None else True

    fields.setdefault("job_name", default_name)
    work_dir = fields.pop("chdir", None)
    fields["work_dir"] = os.path.normpath(os.path.join(cwd, work_dir)) if work_dir else cwd
    _derive(fields)
    export = fields.get("export")
    fields["environment"] = _exported_environment(env, export)
    fields.update(
        script=script_text,
        script_path=os.path.join(cwd, script_path) if script_path and not os.path.isabs(script_path) else script_path,
        script_args=list(script_args),
        submit_dir=cwd,
        user=user, uid=uid, gid=gid, submit_host=host,
        cloud=cloud,
        warnings=warnings,
    )
    request = JobRequest.model_validate(fields)
    return Submission(request, SubmitFlags.model_validate(flags), warnings)


# SubmitFlags fields: how the command behaves, not what the job is.
_FLAG_FIELDS = {"parsable", "wait", "test_only", "quiet", "verbose"}
_CLOUD_FIELDS = {"backend", "limit_price", "instance_type", "region", "capacity"}


def _set_nodes(fields, flags, cloud, value, setting):
    low, high = value
    fields.update(min_nodes=low, max_nodes=high, nodes_given=True)


def _set_count(name):
    def apply(fields, flags, cloud, value, setting):
        if value > 0:  # -n 4294967296 comes out 0: as if no -n was given
            fields[name] = value
            fields[f"{name}_given"] = True
    return apply


def _set_positive(name):
    """A count that comes out zero or negative once cut to 32 bits counts as not given."""
    def apply(fields, flags, cloud, value, setting):
        fields[name] = value if value > 0 else None
    return apply


def _set_raw(name):
    def apply(fields, flags, cloud, value, setting):
        fields[name] = setting.raw
    return apply


def _set_tmp(fields, flags, cloud, value, setting):
    # SLURM keeps --tmp in 32 bits, where NO_VAL (0xfffffffe) means none asked.
    mb = value & 0xFFFFFFFF
    fields["tmp_mb"] = None if mb == 0xFFFFFFFE else mb


def _set_exclusive(fields, flags, cloud, value, setting):
    # =user and =mcs share nodes with the user's (or group's) other jobs, which sflow's
    # nodes always allow; only a bare --exclusive keeps a node to the job.
    fields["exclusive"] = value is True


def _set_gpus(name):
    def apply(fields, flags, cloud, value, setting):
        fields[name] = value.count
        if value.type:
            fields["gpu_type"] = value.type
    return apply


def _set_plain(name):
    def apply(fields, flags, cloud, value, setting):
        fields[name] = value
    return apply


def _set_requeue(flag):
    def apply(fields, flags, cloud, value, setting):
        fields["requeue"] = flag
    return apply


def _set_gres(fields, flags, cloud, value, setting):
    fields["gres"] = [{"name": g.name, "type": g.type, "count": g.count} for g in value]


def _set_array(fields, flags, cloud, value, setting):
    fields["array"] = {"runs": value.indices.runs, "throttle": value.throttle, "text": value.text}


def _set_dependency(fields, flags, cloud, value, setting):
    fields["dependency"] = {
        "any_of": value.any_of,
        "items": [{"kind": i.kind, "job_id": i.job_id, "delay_minutes": i.delay_minutes} for i in value.items],
        "text": setting.raw,
    }


def _set_signal(fields, flags, cloud, value, setting):
    fields["signal"] = {"number": value.signal, "name": value.name, "seconds": value.seconds,
                        "batch_only": value.batch_only, "reservation": getattr(value, "reservation", False)}


def _set_export(fields, flags, cloud, value, setting):
    # Naming variables without ALL exports only those (and SLURM's own).
    mode = value.mode or ("NONE" if value.names or value.assignments else "ALL")
    fields["export"] = {"mode": mode, "names": list(value.names),
                        "assignments": dict(value.assignments), "text": setting.raw}


def _set_begin(fields, flags, cloud, value, setting):
    fields["begin"] = value.timestamp()


def _set_deadline(fields, flags, cloud, value, setting):
    fields["deadline"] = value.timestamp()


def _set_nice(fields, flags, cloud, value, setting):
    fields["nice"] = NICE_DEFAULT if value is True else value


def _ignore(fields, flags, cloud, value, setting):
    """Handled before the request is built (``--wrap`` becomes the script)."""


def _set_capacity(flag):
    def apply(fields, flags, cloud, value, setting):
        cloud["capacity"] = flag
    return apply


_APPLY: dict[str, Callable] = {
    "nodes": _set_nodes,
    "ntasks": _set_count("ntasks"),
    "cpus_per_task": _set_count("cpus_per_task"),
    "ntasks_per_node": _set_positive("ntasks_per_node"),
    "cpus_per_gpu": _set_positive("cpus_per_gpu"),
    "sockets_per_node": _set_raw("sockets_per_node"),
    "exclusive": _set_exclusive,
    "mem": _set_plain("mem_per_node_mb"),
    "mem_per_cpu": _set_plain("mem_per_cpu_mb"),
    "mem_per_gpu": _set_plain("mem_per_gpu_mb"),
    "tmp_mb": _set_tmp,
    "gpus": _set_gpus("gpus"),
    "gpus_per_node": _set_gpus("gpus_per_node"),
    "gpus_per_task": _set_gpus("gpus_per_task"),
    "gres": _set_gres,
    "array": _set_array,
    "dependency": _set_dependency,
    "signal": _set_signal,
    "export": _set_export,
    "begin": _set_begin,
    "deadline": _set_deadline,
    "nice": _set_nice,
    "priority": _set_plain("priority"),
    "wrap": _ignore,
    "chdir": _set_plain("chdir"),
    "requeue": _set_requeue(True),
    "no_requeue": _set_requeue(False),
    "spot": _set_capacity("spot"),
    "reserved": _set_capacity("reserved"),
}


def _derive(fields: dict[str, Any]) -> None:
    """SLURM's derived counts: tasks from nodes and tasks-per-node, and the reverse."""
    nodelist = fields.get("nodelist") or []
    if nodelist and len(set(nodelist)) > fields.get("min_nodes", 1):
        fields["min_nodes"] = len(set(nodelist))
    per_node = fields.get("ntasks_per_node")
    if not fields.get("ntasks_given"):
        # One task per node unless told otherwise; tasks-per-node multiplies.
        fields["ntasks"] = fields.get("min_nodes", 1) * (per_node or 1)


def _exported_environment(env: Mapping[str, str], export: dict | None) -> dict[str, str]:
    """What of the submitting environment travels with the job, per ``--export``."""
    mode = (export or {}).get("mode", "ALL")
    names = (export or {}).get("names", [])
    assignments = (export or {}).get("assignments", {})
    if mode == "ALL":
        chosen = dict(env)
    else:
        chosen = {name: env[name] for name in names if name in env}
    chosen.update(assignments)
    # Credentials for sflow's own backends never travel into a job.
    for name in SECRET_NAMES:
        chosen.pop(name, None)
    return chosen


__all__ = ["Setting", "Submission", "convert", "parse_sbatch", "SflowError"]
