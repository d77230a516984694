"""What ``flow burst status``, ``costs`` and ``unit`` print: records in, text out."""

from __future__ import annotations

import sys

from sflow.burst.store import Group, Node

BY = ("job", "user", "account")


def money(cents: float | None) -> str:
    return "-" if cents is None else f"${cents / 100:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def status_lines(groups: list[Group], nodes: dict[str, Node]) -> list[str]:
    """Every node the service knows, its bid and why it is as it is."""
    by_owner = {g.owner: g for g in groups}
    rows = []
    for node in nodes.values():
        group = by_owner.get(node.owner)
        rows.append([node.name, node.partition, node.state, str(node.slurm_job or "-"),
                     f"{node.owner} ({group.state})" if group else "-", node.instance or "-",
                     (group.limit_price if group and group.limit_price else "-"), node.reason or ""])
    if not rows:
        return ["no burst node has been resumed"]
    return _table(["NODE", "PARTITION", "STATE", "JOB", "BID", "INSTANCE", "LIMIT", "REASON"], rows)


def cost_lines(groups: list[Group], by: str = "job") -> list[str]:
    """What the bids cost, summed by SLURM job, user or account (nodes resumed for no job: '-')."""
    totals: dict[str, list] = {}
    for group in groups:
        if group.cost_cents is None:
            continue
        key = {"job": str(group.slurm_job or "-"), "user": group.user or "-", "account": group.account or "-"}[by]
        entry = totals.setdefault(key, [0.0, 0, set(), set()])
        entry[0] += group.cost_cents
        entry[1] += 1
        entry[2].add(group.user or "-")
        entry[3].add(group.account or "-")
    if not totals:
        return ["no burst costs recorded"]
    if by == "job":
        header = ["JOB", "USER", "ACCOUNT", "BIDS", "COST"]
        rows = [[k, ",".join(sorted(v[2])), ",".join(sorted(v[3])), str(v[1]), money(v[0])]
                for k, v in sorted(totals.items())]
    else:
        header = [by.upper(), "BIDS", "COST"]
        rows = [[k, str(v[1]), money(v[0])] for k, v in sorted(totals.items())]
    rows.append(["total", *[""] * (len(header) - 3), str(sum(v[1] for v in totals.values())),
                 money(sum(v[0] for v in totals.values()))])
    return _table(header, rows)


def unit_text(config: str, user: str = "slurm", python: str | None = None) -> str:
    """A systemd unit running the service as SlurmUser (who runs the programs and owns the state)."""
    python = python or sys.executable
    return f"""\
# sflow's burst service: save as /etc/systemd/system/sflow-burst.service, then
#   systemctl daemon-reload && systemctl enable --now sflow-burst
# The power-saving programs start the same service on demand when it is not running.
[Unit]
Description=sflow burst service (SLURM power saving on Mithril)
After=network-online.target slurmctld.service
Wants=network-online.target

[Service]
Type=simple
User={user}
Environment=SFLOW_BURST_CONFIG={config}
ExecStart={python} -m sflow.burst.service --config {config}
Restart=always
RestartSec=5
# Bids are recorded before they are placed: a restart follows them, never places them twice.
KillMode=process
UMask=0077

[Install]
WantedBy=multi-user.target
"""


__all__ = ["BY", "cost_lines", "money", "status_lines", "unit_text"]
