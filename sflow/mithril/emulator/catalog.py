"""What the emulated cloud sells: instance types, regions, reserve prices, supply."""

from __future__ import annotations

from dataclasses import dataclass, field

from sflow.mithril.emulator.ids import stable_id


@dataclass(frozen=True)
class InstanceType:
    name: str
    num_gpus: int
    gpu_type: str
    gpu_memory_gb: int
    gpu_socket: str
    num_cpus: int
    ram_gb: int
    local_storage_gb: int
    ib_count: int
    bridge_count: int
    reserve_cents: int  # spot floor, per instance-hour
    reserved_cents: int  # reservation unit price, per instance-hour
    cpu_type: str = "Intel"
    network_type: str | None = "InfiniBand"

    @property
    def fid(self) -> str:
        return stable_id("it", self.name)


@dataclass
class Catalog:
    instance_types: list[InstanceType]
    # capacity (instances) per (region, instance type name); a pair absent here is not sold
    supply: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def regions(self) -> list[str]:
        return sorted({region for region, _ in self.supply})

    def find(self, ref: str) -> InstanceType | None:
        """An instance type by fid or by name."""
        for it in self.instance_types:
            if ref in (it.fid, it.name):
                return it
        return None


def default_catalog() -> Catalog:
    # name, GPUs, GPU, GPU GB, socket, CPUs, RAM GB, local disk GB, IB ports, bridges
    h100x8 = InstanceType("8xh100", 8, "H100", 80, "SXM5", 224, 1800, 7800, 8, 4,
                          reserve_cents=800, reserved_cents=2000)
    a100x8 = InstanceType("8xa100", 8, "A100", 80, "SXM4", 128, 1000, 7000, 4, 2,
                          reserve_cents=480, reserved_cents=1200)
    a100x4 = InstanceType("4xa100", 4, "A100", 80, "SXM4", 64, 500, 3500, 2, 1,
                          reserve_cents=240, reserved_cents=600)
    a100x1 = InstanceType("1xa100", 1, "A100", 80, "SXM4", 16, 120, 850, 0, 0,
                          reserve_cents=60, reserved_cents=150, network_type=None)
    return Catalog(
        instance_types=[h100x8, a100x8, a100x4, a100x1],
        supply={
            ("us-central1-a", "8xh100"): 32,
            ("us-central1-a", "8xa100"): 16,
            ("us-central1-a", "4xa100"): 8,
            ("us-central1-a", "1xa100"): 32,
            ("eu-central1-a", "8xh100"): 16,
            ("eu-central1-a", "8xa100"): 8,
            ("eu-central1-a", "1xa100"): 16,
        },
    )
