"""``sinfo``: partitions and nodes, with what running jobs hold."""

from __future__ import annotations

import sys


def node_states(store, cluster) -> dict:
    """Each configured node's usage as SLURM would report it, from the running jobs' allocations."""
    from sflow.views.cluster_show import NodeUsage, machine_facts

    held: dict[str, list[int]] = {}
    for node in store.allocated_nodes():
        use = held.setdefault(node.name, [0, 0, 0])
        use[0] += node.cpus
        use[1] += node.mem_mb
        use[2] += len(node.gpu_indices)
    facts = machine_facts()  # every virtual node is this machine
    return {node.name: NodeUsage.from_allocation(node, *held.get(node.name, (0, 0, 0)), **facts)
            for node in cluster.nodes}


def main(argv: list[str]) -> int:
    import os
    import time

    from sflow.cli.common import reader
    from sflow.conf import load_cluster
    from sflow.views.sinfo import parse_interval, sinfo_main

    cluster = load_cluster()
    period = parse_interval(argv, os.environ)
    first = True
    while True:
        out, err, code = sinfo_main(argv, cluster, node_states(reader(), cluster), env=os.environ, dump=first)
        sys.stdout.write(out)
        sys.stderr.write(err)
        if not period or code:
            return code
        # --iterate: the report again every so many seconds, a blank line after each, until killed
        sys.stdout.write("\n")
        sys.stdout.flush()
        first = False
        time.sleep(period)
