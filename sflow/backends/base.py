"""The backend seam: how a job's nodes are obtained and given back.

The local backend hands out this machine's virtual nodes; a cloud backend
places bids. Both answer ``allocate`` with an Allocation or a reason to wait.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class AllocatedNode:
    name: str
    cpus: int
    mem_mb: int = 0
    gpu_indices: tuple[int, ...] = ()
    root_dir: str = ""
    address: str | None = None  # where to reach it (SSH); None: this machine
    tasks: int = 1  # tasks of the job placed on this node


@dataclass
class Allocation:
    job_id: int
    nodes: list[AllocatedNode] = field(default_factory=list)

    @property
    def nodelist(self) -> str:
        from sflow.slurm.values import compress_hostlist

        return compress_hostlist([n.name for n in self.nodes])

    def to_json(self) -> dict:
        return {"job_id": self.job_id, "nodes": [asdict(n) for n in self.nodes]}

    @classmethod
    def from_json(cls, data: dict) -> "Allocation":
        return cls(data["job_id"], [AllocatedNode(**{**n, "gpu_indices": tuple(n["gpu_indices"])})
                                    for n in data["nodes"]])


@dataclass(frozen=True)
class Pending:
    """No allocation yet; ``reason`` is SLURM's word for why."""

    reason: str
