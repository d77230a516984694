"""``sinfo``: partitions and nodes, with what running jobs hold."""

from __future__ import annotations

import sys


def node_usage(home: str) -> dict:
    import json

    from sflow.queue import store
    from sflow.views.cluster import NodeUsage

    usage: dict[str, NodeUsage] = {}
    conn = store.reader(home)
    if conn is None:
        return usage
    for (alloc,) in conn.execute("SELECT alloc FROM jobs WHERE state IN ('RUNNING', 'COMPLETING') AND alloc IS NOT NULL"):
        for node in json.loads(alloc)["nodes"]:
            use = usage.setdefault(node["name"], NodeUsage())
            use.alloc_cpus += node["cpus"]
            use.alloc_mem_mb += node["mem_mb"]
            use.alloc_gpus += len(node["gpu_indices"])
    return usage


def main(argv: list[str]) -> int:
    from sflow.cli.common import home
    from sflow.conf import load_cluster
    from sflow.views.cluster import sinfo_main

    out, err, code = sinfo_main(argv, load_cluster(), node_usage(home()))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code
