"""Where a job's (or a step's) tasks go: SLURM's block distribution over nodes.

Pure: from node slots and task counts to per-node task lists.
"""

from __future__ import annotations


def block_layout(ntasks: int, slots: list[int], cpus_per_task: int = 1,
                 per_node: int | None = None, min_one_each: bool = True) -> list[int]:
    """Tasks per node: fill each node up to its CPUs (or ``per_node``) in order.

    Every node of the allocation gets at least one task when there are enough
    tasks (SLURM does not leave an allocated node idle); tasks beyond the
    capacity of all nodes go round-robin (overcommit).
    """
    count = len(slots)
    if per_node is not None:
        capacity = [per_node] * count
    else:
        capacity = [max(1, c // max(1, cpus_per_task)) for c in slots]
    layout = [0] * count
    remaining = ntasks
    if min_one_each and ntasks >= count:
        layout = [1] * count
        remaining -= count
    for i in range(count):
        take = min(remaining, capacity[i] - layout[i])
        if take > 0:
            layout[i] += take
            remaining -= take
    i = 0
    while remaining > 0 and count:
        layout[i % count] += 1
        remaining -= 1
        i += 1
    return layout


def ranks_by_node(layout: list[int], distribution: str = "block", plane: int | None = None) -> list[list[int]]:
    """Global task ids per node: ``[2, 1]`` -> ``[[0, 1], [2]]`` in blocks; ``cyclic`` deals
    them out one at a time over the nodes, ``plane`` ``plane`` at a time (``[[0, 2], [1]]``)."""
    kind = distribution.split(":")[0].split(",")[0]
    if kind not in ("cyclic", "plane"):
        out, rank = [], 0
        for n in layout:
            out.append(list(range(rank, rank + n)))
            rank += n
        return out
    size = max(1, plane or 1) if kind == "plane" else 1
    out = [[] for _ in layout]
    left = list(layout)
    rank, total = 0, sum(layout)
    while rank < total:
        for i in range(len(layout)):
            take = min(size, left[i])
            out[i].extend(range(rank, rank + take))
            left[i] -= take
            rank += take
    return out
