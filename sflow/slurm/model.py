"""The job description every later layer reads: one pydantic model.

Built by ``sflow.slurm.request`` after SLURM's precedence (command line over
``SBATCH_*`` environment over ``#SBATCH`` directives over defaults), with
SLURM's derived values filled in. The queue stores it as JSON; the backends and
the executor read it; nothing downstream re-parses SLURM syntax.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticSerializationError

from sflow.records import INFINITE
from sflow.slurm.indexset import IndexSet


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Text from outside (scripts, argv, environment, paths) is any bytes, held as str
    # decoded with surrogateescape; pydantic's own JSON refuses lone surrogates, the
    # standard library's escapes them (\udcXX) and reads them back. Pydantic's takes a third
    # of the time (each submission stores one): used where its text is all ASCII, as the other's is.
    def to_json(self) -> str:
        try:
            text = self.__pydantic_serializer__.to_json(self).decode()
        except PydanticSerializationError:
            text = ""
        if text.isascii() and text:
            return text
        return json.dumps(self.model_dump(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str):
        return cls.model_validate(json.loads(text))


class ArrayRequest(_Model):
    # Runs (first, last, step), not one int per index: arrays reach MaxArraySize (4,000,001).
    runs: list[tuple[int, int, int]]
    throttle: int | None = None
    text: str  # as scontrol shows ArrayTaskId, e.g. "0-15:4%2"

    @model_validator(mode="before")
    @classmethod
    def _from_index_list(cls, data):
        """Requests stored before runs held a list of indices."""
        if isinstance(data, dict) and "indices" in data and "runs" not in data:
            rest = {k: v for k, v in data.items() if k != "indices"}
            data = {**rest, "runs": IndexSet.of(data["indices"]).runs}
        return data

    @property
    def indices(self) -> IndexSet:
        return IndexSet(tuple(self.runs))


class DependencyItem(_Model):
    kind: Literal["after", "afterany", "afterok", "afternotok", "aftercorr", "afterburstbuffer", "singleton"]
    job_id: str | None = None  # "123" or "123_4"; None for singleton
    delay_minutes: int = 0


class DependencyRequest(_Model):
    any_of: bool = False  # "?" separated: any one satisfied is enough
    items: list[DependencyItem]
    text: str  # as given, for scontrol/squeue display


class SignalRequest(_Model):
    number: int
    name: str  # without the SIG prefix, e.g. "USR1"
    seconds: int = 60  # before the time limit
    batch_only: bool = False  # "B:": the batch shell only
    reservation: bool = False  # "R:"


class GresRequest(_Model):
    name: str
    type: str | None = None
    count: int = 1


class ExportRequest(_Model):
    mode: Literal["ALL", "NONE", "NIL"] = "ALL"
    names: list[str] = Field(default_factory=list)
    assignments: dict[str, str] = Field(default_factory=dict)
    text: str | None = None  # --export as written: SLURM_EXPORT_ENV repeats it


class CloudRequest(_Model):
    """What ``#SFLOW`` directives ask of a cloud backend (SLURM cannot say it)."""

    backend: Literal["local", "mithril"] | None = None
    limit_price: str | None = None  # as written: "$12.50", "2.00/gpu-hr"
    instance_type: str | None = None
    region: str | None = None
    capacity: Literal["spot", "reserved"] = "spot"


class JobRequest(_Model):
    """One job, as submitted: every supported field after precedence and defaults."""

    # What runs, where, as whom.
    job_name: str
    script: str
    script_args: list[str] = Field(default_factory=list)
    script_path: str | None = None  # None for --wrap and stdin scripts
    submit_dir: str
    work_dir: str  # --chdir, else the submit directory
    environment: dict[str, str] = Field(default_factory=dict)  # per --export, at submit
    export: ExportRequest = Field(default_factory=ExportRequest)
    user: str
    uid: int
    gid: int
    submit_host: str

    # Where.
    partition: str | None = None  # None: the cluster's default partition
    account: str | None = None
    qos: str | None = None
    reservation: str | None = None
    constraint: str | None = None
    nodelist: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    exclusive: bool = False
    comment: str | None = None
    acctg_freq: str | None = None  # --acctg-freq as given: how often the job's memory is sampled

    # How much.
    min_nodes: int = 1
    max_nodes: int | None = None
    nodes_given: bool = False  # -N was given explicitly
    ntasks: int = 1  # derived when not given, as SLURM derives it
    ntasks_given: bool = False
    ntasks_per_node: int | None = None
    cpus_per_task: int = 1
    cpus_per_task_given: bool = False
    mem_per_node_mb: int | None = None  # --mem; 0 means all of each node's memory
    mem_per_cpu_mb: int | None = None
    mem_per_gpu_mb: int | None = None
    gpus: int | None = None  # --gpus / -G, total over the job
    gpus_per_node: int | None = None
    gpus_per_task: int | None = None
    gpu_type: str | None = None
    gpus_per_socket: str | None = None  # as given: scontrol shows it verbatim
    sockets_per_node: str | None = None  # kept for --gpus-per-socket's checks; tasks are not bound
    cpus_per_gpu: int | None = None
    gpu_bind: str | None = None  # as given; kept for scontrol's TresBind
    gpu_freq: str | None = None  # as given; kept for scontrol's TresFreq
    tmp_mb: int | None = None  # --tmp: temporary disk per node
    gres: list[GresRequest] = Field(default_factory=list)
    overcommit: bool = False

    # When, how long.
    time_limit: int | None = None  # minutes; None: the partition's default; INFINITE
    time_min: int | None = None
    deadline: float | None = None  # --deadline: gone (DEADLINE) if it cannot end before this
    begin: float | None = None  # epoch seconds
    hold: bool = False
    priority: int | None = None
    nice: int = 0
    dependency: DependencyRequest | None = None
    kill_on_invalid_dep: bool | None = None
    array: ArrayRequest | None = None
    requeue: bool | None = None  # None: the cluster's JobRequeue default
    signal: SignalRequest | None = None

    # Files.
    output: str | None = None  # pattern; None: slurm-%j.out (slurm-%A_%a.out for arrays)
    error: str | None = None  # pattern; None: with the output
    input: str | None = None  # pattern; None: /dev/null
    open_mode: Literal["truncate", "append"] = "truncate"

    # Mail is accepted and not sent; kept so scontrol can show it.
    mail_type: str | None = None
    mail_user: str | None = None

    cloud: CloudRequest = Field(default_factory=CloudRequest)
    # Supported options sflow keeps but does not act on (shown by scontrol).
    extra: dict[str, str | bool] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @property
    def default_output(self) -> str:
        return "slurm-%A_%a.out" if self.array is not None else "slurm-%j.out"

    @property
    def stdout_pattern(self) -> str:
        return self.output or self.default_output

    @property
    def stderr_pattern(self) -> str:
        return self.error or self.stdout_pattern


class SubmitFlags(_Model):
    """How the submitting command behaves; not part of the job itself."""

    parsable: bool = False
    wait: bool = False
    test_only: bool = False
    quiet: bool = False
    verbose: int = 0
