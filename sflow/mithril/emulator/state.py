"""Keeping an emulator's market across restarts (``--state FILE``): plain JSON, written at exit.

Time does not stop while the emulator is down: on the next start the market replays
the gap (auctions, notices running out, reservation windows) up to the clock.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

from sflow.mithril.emulator.account import ApiKey, Project, SshKey
from sflow.mithril.emulator.market import S_RUNNING, S_STARTING, Bid, Event, Instance, Interval, Reservation

VERSION = 1


def dump(service) -> dict:
    with service.lock:
        m, a = service.market, service.account
        return {
            "version": VERSION,
            "market": {
                "start": m.start, "next_tick": m.next_tick, "seq": m._seq,
                "ids": {"seed": m.ids.seed, "counts": m.ids.counts},
                "pools": [{"region": p.region, "instance_type": p.instance_type.fid, "supply": p.supply,
                           "demand": p.demand, "clearing_cents": p.clearing_cents,
                           "lowest_allocated_cents": p.lowest_allocated_cents, "competing_held": p.competing_held}
                          for p in m.pools.values()],
                "bids": [asdict(b) for b in m.bids.values()],
                "instances": [asdict(i) for i in m.instances.values()],
                "reservations": [asdict(r) for r in m.reservations.values()],
                "ledger": {bid: {inst: [asdict(iv) for iv in ivs] for inst, ivs in per.items()}
                           for bid, per in m.ledger.items()},
            },
            "account": {"user_fid": a.user_fid, "email": a.email, "user_name": a.user_name,
                        "organization_id": a.organization_id, "created_at": a.created_at,
                        "projects": [asdict(p) for p in a.projects],
                        "ssh_keys": [asdict(k) for k in a.ssh_keys.values()],
                        "api_keys": [asdict(k) for k in a.api_keys.values()]},
            "idempotency": [[op, key, *stored] for (op, key), stored in service.idempotency.items()],
        }


def restore(service, data: dict) -> None:
    if data.get("version") != VERSION:
        raise ValueError(f"state file version {data.get('version')!r} is not {VERSION}")
    with service.lock:
        m, a = service.market, service.account
        md = data["market"]
        m.start, m.next_tick, m._seq = md["start"], md["next_tick"], md["seq"]
        m.ids.seed, m.ids.counts = md["ids"]["seed"], dict(md["ids"]["counts"])
        for pd in md["pools"]:
            pool = m.pools.get((pd["region"], pd["instance_type"]))
            if pool is None:  # the catalog changed: that auction is gone
                continue
            pool.supply = [tuple(s) for s in pd["supply"]]
            pool.demand = [tuple(d) for d in pd["demand"]]
            pool.clearing_cents = pd["clearing_cents"]
            pool.lowest_allocated_cents = pd["lowest_allocated_cents"]
            pool.competing_held = pd["competing_held"]
        m.bids = {b["fid"]: Bid(**b) for b in md["bids"]}
        m.instances = {i["fid"]: Instance(**i) for i in md["instances"]}
        m.reservations = {r["fid"]: Reservation(**r) for r in md["reservations"]}
        m.ledger = {bid: {inst: [Interval(**iv) for iv in ivs] for inst, ivs in per.items()}
                    for bid, per in md["ledger"].items()}
        ad = data["account"]
        a.user_fid, a.email, a.user_name = ad["user_fid"], ad["email"], ad["user_name"]
        a.organization_id, a.created_at = ad["organization_id"], ad["created_at"]
        a.projects = [Project(**p) for p in ad["projects"]]
        a.ssh_keys = {k["fid"]: SshKey(**k) for k in ad["ssh_keys"]}
        a.api_keys = {k["fid"]: ApiKey(**k) for k in ad.get("api_keys", [])}  # absent from older state files
        service.idempotency = {(op, key): (fp, status, payload) for op, key, fp, status, payload in data["idempotency"]}
        # the hosts of the machines that were up died with the last process: start them again
        for inst in m.instances.values():
            if inst.status in (S_STARTING, S_RUNNING):
                m.events.append(Event("start", inst.fid))
        service.sync()


def save(service, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(dump(service), f)
    os.replace(tmp, path)  # never leave a half-written state behind


def load_into(service, path: str) -> bool:
    """Restore from ``path`` if it exists; False when there was nothing to load."""
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        restore(service, json.load(f))
    return True
