"""The burst service's settings: /etc/sflow/burst.toml as ``flow burst config`` writes it.

Read by the power-saving programs on every call, so this module imports only the
standard library. A missing or malformed file is a ``BurstError`` naming it.
"""

from __future__ import annotations

import os
import shlex
import string
import tomllib
from dataclasses import dataclass, field

DEFAULT_PATH = "/etc/sflow/burst.toml"
CONFIG_NAME = "burst.toml"  # beside slurm.conf: slurmctld gives its programs SLURM_CONF and no PATH
DEFAULT_SLURM_BIN = "/usr/bin"  # where SLURM's packages put scontrol: slurmctld's programs get no PATH
DEFAULT_BOOT_COMMAND = "sudo slurmd -N {node} --conf-server {conf_server}"
BOOT_FIELDS = ("node", "conf_server")
STARTUP_SCRIPT_MAX = 10_000  # what Mithril takes of a bid's startup script
DEFAULT_STATE_DIR = "/var/lib/sflow-burst"
DEFAULT_RESUME_TIMEOUT = 1800  # as flow burst config writes slurm.conf's ResumeTimeout
DEFAULT_TIMEOUT_MARGIN = 60  # a bid not won this long before ResumeTimeout is given back first
# After a preemption notice, how long the jobs have between their signal and their requeue (a job
# that ends sooner is requeued then): less than Mithril's notice, or the instances go first.
DEFAULT_PREEMPT_GRACE = 60
DEFAULT_CONF_SERVER_PORT = 6817  # slurmctld's default SlurmctldPort


class BurstError(Exception):
    """What a burst program or the service says in one line, then exits 1."""


@dataclass(frozen=True)
class PartitionSettings:
    name: str
    nodes: str  # the partition's node hostlist, as slurm.conf names them
    instance_type: str  # Mithril's id
    instance_type_name: str
    region: str
    limit_price: str  # per instance-hour unless it says /gpu-hr, as #SFLOW --limit-price reads it


@dataclass(frozen=True)
class BurstSettings:
    path: str
    state_dir: str = DEFAULT_STATE_DIR
    api_url: str | None = None
    project: str | None = None
    api_key_file: str | None = None
    slurm_bin: str = DEFAULT_SLURM_BIN  # the directory of scontrol, scancel, squeue
    scontrol: str = ""  # scontrol's own path, when it is not in slurm_bin
    resume_timeout: int = DEFAULT_RESUME_TIMEOUT
    timeout_margin: int = DEFAULT_TIMEOUT_MARGIN
    conf_server: str = ""  # host:port slurmd fetches its configuration from; "": this host's name
    set_node_addr: bool = False  # scontrol update NodeAddr= after boot; unneeded with cloud_reg_addrs
    poll_seconds: float | None = None  # how often bids are looked at; None: the Mithril default
    preempt_grace: float = DEFAULT_PREEMPT_GRACE
    boot_command: str = DEFAULT_BOOT_COMMAND  # run over SSH on an instance to make it the node
    startup_script: str | None = None  # a file whose text every bid carries as its startup script
    partitions: dict[str, PartitionSettings] = field(default_factory=dict)


def config_path(environ=None) -> str:
    """``$SFLOW_BURST_CONFIG``, else burst.toml beside ``$SLURM_CONF`` when there is one, else
    /etc/sflow/burst.toml. slurmctld runs its programs with SLURM_CONF alone, so an admin
    keeps burst.toml next to slurm.conf, or at the fixed path."""
    env = os.environ if environ is None else environ
    if env.get("SFLOW_BURST_CONFIG"):
        return env["SFLOW_BURST_CONFIG"]
    if env.get("SLURM_CONF"):
        beside = os.path.join(os.path.dirname(os.path.abspath(env["SLURM_CONF"])), CONFIG_NAME)
        if os.path.exists(beside):
            return beside
    return DEFAULT_PATH


def boot_command(template: str, node: str, conf_server: str) -> str:
    """The boot command for one node: ``{node}`` and ``{conf_server}`` replaced, each shell-quoted."""
    return template.format(node=shlex.quote(node), conf_server=shlex.quote(conf_server))


def _boot_template(burst: dict, where: str) -> str:
    template = _text(burst, "boot_command", where, DEFAULT_BOOT_COMMAND)
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise BurstError(f"{where}: boot_command: {err}") from None
    unknown = sorted(names - set(BOOT_FIELDS))
    if unknown or not template.strip():
        raise BurstError(f"{where}: boot_command may name only {{node}} and {{conf_server}}"
                         + (f", not {{{unknown[0]}}}" if unknown else ""))
    return template


def read_startup_script(settings: "BurstSettings") -> str | None:
    """The text of the ``startup_script`` file, or None when none is set."""
    if not settings.startup_script:
        return None
    try:
        with open(settings.startup_script, encoding="utf-8") as handle:
            text = handle.read(STARTUP_SCRIPT_MAX + 1)
    except OSError as err:
        raise BurstError(f"cannot read startup_script {settings.startup_script}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise BurstError(f"startup_script {settings.startup_script} is not UTF-8 text") from None
    if len(text) > STARTUP_SCRIPT_MAX:
        raise BurstError(f"startup_script {settings.startup_script} is longer than Mithril's "
                         f"{STARTUP_SCRIPT_MAX} characters")
    return text or None


def _text(table: dict, key: str, where: str, default=None, required: bool = False):
    value = table.get(key, default)
    if value is None and required:
        raise BurstError(f"{where}: {key} is missing")
    if value is not None and not isinstance(value, str):
        raise BurstError(f"{where}: {key} must be a string")
    return value


def _number(table: dict, key: str, where: str, default, kind=int):
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BurstError(f"{where}: {key} must be a number of 0 or more")
    return kind(value)


def parse(text: str, path: str) -> BurstSettings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BurstError(f"{path}: {err}") from None
    burst = data.get("burst")
    if not isinstance(burst, dict):
        raise BurstError(f"{path}: no [burst] table")
    where = f"{path} [burst]"
    parts = {}
    tables = burst.get("partitions") or {}
    if not isinstance(tables, dict):
        raise BurstError(f"{where}: partitions must be tables")
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise BurstError(f"{where}: partitions.{name} must be a table")
        at = f"{path} [burst.partitions.{name}]"
        parts[name] = PartitionSettings(
            name, _text(table, "nodes", at, required=True), _text(table, "instance_type", at, required=True),
            _text(table, "instance_type_name", at, table.get("instance_type")),
            _text(table, "region", at, required=True), _text(table, "limit_price", at, required=True))
    poll = burst.get("poll_seconds")
    return BurstSettings(
        path=path,
        state_dir=_text(burst, "state_dir", where, DEFAULT_STATE_DIR),
        api_url=_text(burst, "api_url", where), project=_text(burst, "project", where),
        api_key_file=_text(burst, "api_key_file", where),
        slurm_bin=_text(burst, "slurm_bin", where, DEFAULT_SLURM_BIN) or DEFAULT_SLURM_BIN,
        scontrol=_text(burst, "scontrol", where, ""),
        resume_timeout=_number(burst, "resume_timeout", where, DEFAULT_RESUME_TIMEOUT),
        timeout_margin=_number(burst, "timeout_margin", where, DEFAULT_TIMEOUT_MARGIN),
        conf_server=_text(burst, "conf_server", where, ""),
        set_node_addr=bool(burst.get("set_node_addr", False)),
        poll_seconds=None if poll is None else _number(burst, "poll_seconds", where, 0, float),
        preempt_grace=_number(burst, "preempt_grace", where, DEFAULT_PREEMPT_GRACE, float),
        boot_command=_boot_template(burst, where),
        startup_script=_text(burst, "startup_script", where) or None,
        partitions=parts)


def load(path: str | None = None, environ=None) -> BurstSettings:
    path = path or config_path(environ)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise BurstError(f"cannot read {path}: {err.strerror}") from None
    return parse(text, path)


__all__ = ["BurstError", "BurstSettings", "PartitionSettings", "boot_command", "config_path", "load", "parse",
           "read_startup_script"]
