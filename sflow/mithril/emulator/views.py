"""Market objects as the JSON shapes of the OpenAPI document."""

from __future__ import annotations

from datetime import datetime, timezone

from sflow.mithril.emulator.account import Account, ApiKey, Project, SshKey
from sflow.mithril.emulator.catalog import InstanceType
from sflow.mithril.emulator.market import Bid, Instance, Interval, Market, Pool, Reservation
from sflow.mithril.money import dollars


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """An ISO 8601 time (a naive one is UTC) -> seconds since the epoch; ValueError otherwise."""
    dt = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def me(account: Account) -> dict:
    return {"id": account.user_fid, "fid": account.user_fid, "email": account.email, "user_name": account.user_name,
            "organization_id": account.organization_id, "organization_role": "owner"}


def project(p: Project) -> dict:
    return {"fid": p.fid, "name": p.name, "created_at": iso(p.created_at)}


def instance_type(it: InstanceType) -> dict:
    return {"fid": it.fid, "name": it.name, "num_cpus": it.num_cpus, "cpu_type": it.cpu_type, "ram_gb": it.ram_gb,
            "num_gpus": it.num_gpus, "gpu_type": it.gpu_type, "gpu_memory_gb": it.gpu_memory_gb,
            "gpu_socket": it.gpu_socket, "local_storage_gb": it.local_storage_gb, "network_type": it.network_type,
            "ib_count": it.ib_count, "bridge_count": it.bridge_count, "hourly_price": it.reserved_cents / 100}


def auction(market: Market, pool: Pool, now: float) -> dict:
    low = pool.lowest_allocated_cents
    return {"fid": pool.fid, "instance_type": pool.instance_type.fid, "region": pool.region,
            "capacity": market.available(pool, now), "last_instance_price": dollars(pool.clearing_cents),
            "lowest_allocated_price": dollars(low) if low is not None else None, "adjustable_memory": False,
            "default_image_version": None}


def launch_specification(spec: dict) -> dict:
    return {"volumes": list(spec.get("volumes") or []), "ssh_keys": list(spec.get("ssh_keys") or []),
            "startup_script": spec.get("startup_script"), "kubernetes_cluster": spec.get("kubernetes_cluster"),
            "image_version": spec.get("image_version"), "memory_gb": spec.get("memory_gb")}


def bid(b: Bid) -> dict:
    return {"fid": b.fid, "name": b.name, "project": b.project, "created_by": b.created_by,
            "created_at": iso(b.created_at), "deactivated_at": iso(b.deactivated_at),
            "limit_price": dollars(b.limit_cents), "instance_quantity": b.quantity, "instance_type": b.instance_type,
            "region": b.region, "instances": list(b.instances),
            "launch_specification": launch_specification(b.launch_specification), "status": b.status}


def instance(i: Instance) -> dict:
    return {"fid": i.fid, "name": i.name, "project": i.project, "created_at": iso(i.created_at),
            "created_by": i.created_by, "instance_type": i.instance_type, "region": i.region, "bid": i.bid,
            "reservation": i.reservation, "ssh_destination": i.ssh_destination, "private_ip": i.private_ip,
            "status": i.status}


def reservation(r: Reservation) -> dict:
    return {"fid": r.fid, "name": r.name, "project": r.project, "created_by": r.created_by,
            "created_at": iso(r.created_at), "deactivated_at": iso(r.deactivated_at),
            "instance_quantity": r.quantity, "instance_type": r.instance_type, "region": r.region,
            "instances": list(r.instances), "launch_specification": launch_specification(r.launch_specification),
            "status": r.status, "start_time": iso(r.start), "end_time": iso(r.end),
            "total_price": dollars(r.total_cents), "unit_price": dollars(r.unit_cents)}


def ssh_key(k: SshKey, private_key: str | None = None, *, created: bool = False) -> dict:
    out = {"fid": k.fid, "name": k.name, "project": k.project, "public_key": k.public_key,
           "created_at": iso(k.created_at), "required": k.required}
    if created:
        out["private_key"] = private_key
    return out


def api_key(k: ApiKey, *, created: bool = False) -> dict:
    out = {"fid": k.fid, "name": k.name, "created_at": iso(k.created_at), "expires_at": iso(k.expires_at),
           "deactivated_at": iso(k.deactivated_at), "snippet": k.secret[:9] + "..."}
    if created:
        out["secret"] = k.secret  # shown once, at creation
    return out


def slot(start: float, end: float, quantity: int) -> dict:
    return {"start_time": iso(start), "end_time": iso(end), "quantity": quantity}


def pricing_history(i: Instance, intervals: list[Interval]) -> dict:
    return {"instance_fid": i.fid, "bid_fid": i.bid, "reservation_fid": i.reservation,
            "events": [{"price_cents": iv.price_cents, "start_time": iso(iv.start), "end_time": iso(iv.end)}
                       for iv in intervals]}


def status_history(i: Instance, changes: list[tuple[float, str]]) -> dict:
    return {"instance_fid": i.fid, "bid_fid": i.bid, "reservation_fid": i.reservation,
            "events": [{"timestamp": iso(at), "status": status} for at, status in changes]}
