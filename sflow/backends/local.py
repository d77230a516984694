"""This machine as a cluster of virtual nodes: CPU, memory and GPU accounting per node.

Placement follows SLURM's block rule: nodes in the cluster's order, each
given as many of the job's tasks as its free CPUs hold, every chosen node at
least one task.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sflow.backends.base import Allocation, AllocatedNode, Pending


@dataclass
class NodeUse:
    cpus: int = 0
    mem_mb: int = 0
    gpus: set[int] = field(default_factory=set)
    exclusive: bool = False
    jobs: int = 0


@dataclass(frozen=True)
class Need:
    """What a job asks of the cluster, from its request."""

    min_nodes: int
    max_nodes: int | None
    ntasks: int
    cpus_per_task: int
    ntasks_per_node: int | None
    mem_per_node_mb: int | None
    mem_per_cpu_mb: int | None
    gpus_per_node: int
    gpus_total: int
    gpus_per_task: int
    nodelist: tuple[str, ...]
    exclude: tuple[str, ...]
    exclusive: bool
    nodes_given: bool

    @classmethod
    def of(cls, request) -> "Need":
        per_node = request.gpus_per_node or sum(g.count for g in request.gres if g.name == "gpu")
        return cls(request.min_nodes, request.max_nodes, request.ntasks, request.cpus_per_task,
                   request.ntasks_per_node, request.mem_per_node_mb, request.mem_per_cpu_mb,
                   per_node or 0, request.gpus or 0, request.gpus_per_task or 0,
                   tuple(request.nodelist), tuple(request.exclude), request.exclusive, request.nodes_given)


class LocalCluster:
    """Free resources of the cluster's nodes, and placement of jobs on them."""

    def __init__(self, cluster, home: str):
        self.cluster = cluster
        self.home = home
        self.use: dict[str, NodeUse] = {n.name: NodeUse() for n in cluster.nodes}

    def node_root(self, name: str) -> str:
        path = os.path.join(self.home, "nodes", name)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    # -------------------------------------------------------------- accounting

    def take(self, alloc: Allocation, exclusive: bool = False) -> None:
        for node in alloc.nodes:
            use = self.use.setdefault(node.name, NodeUse())
            use.cpus += node.cpus
            use.mem_mb += node.mem_mb
            use.gpus |= set(node.gpu_indices)
            use.exclusive = use.exclusive or exclusive
            use.jobs += 1

    def give_back(self, alloc: Allocation, exclusive: bool = False) -> None:
        for node in alloc.nodes:
            use = self.use.get(node.name)
            if use is None:
                continue
            use.cpus -= node.cpus
            use.mem_mb -= node.mem_mb
            use.gpus -= set(node.gpu_indices)
            use.jobs -= 1
            if exclusive or use.jobs == 0:
                use.exclusive = False

    # -------------------------------------------------------------- placement

    def fits_ever(self, need: Need, partition) -> str | None:
        """Why the job can never run in this partition, or None if it can."""
        nodes = self._candidates(need, partition)
        if len(nodes) < need.min_nodes:
            return "PartitionNodeLimit" if need.min_nodes > len(partition.nodes) else "ReqNodeNotAvail"
        empty = {n.name: NodeUse() for n in nodes}
        if self._place(need, nodes, empty) is None:
            return "Resources"
        return None

    def allocate(self, job_id: int, need: Need, partition) -> Allocation | Pending:
        placed = self._place(need, self._candidates(need, partition), self.use)
        if placed is None:
            return Pending("Resources")
        alloc = Allocation(job_id, [
            AllocatedNode(node.name, cpus, mem, gpus, self.node_root(node.name), None, tasks)
            for node, tasks, cpus, mem, gpus in placed
        ])
        self.take(alloc, need.exclusive)
        return alloc

    def _candidates(self, need: Need, partition):
        members = set(partition.nodes)
        nodes = [n for n in self.cluster.nodes if n.name in members and n.name not in need.exclude]
        if need.nodelist:
            wanted = set(need.nodelist)
            # Required nodes first, in cluster order, then the rest.
            nodes = [n for n in nodes if n.name in wanted] + [n for n in nodes if n.name not in wanted]
        return nodes

    def _place(self, need: Need, nodes, use: dict[str, NodeUse]):
        cpt = max(1, need.cpus_per_task)
        required = set(need.nodelist)
        chosen = []
        tasks_left = need.ntasks
        max_nodes = need.max_nodes or (need.min_nodes if need.nodes_given else len(nodes))
        for node in nodes:
            if len(chosen) >= max(max_nodes, len(required)):
                break
            if tasks_left <= 0 and len(chosen) >= need.min_nodes and not (required - {c[0].name for c in chosen}):
                break
            state = use.get(node.name, NodeUse())
            if state.exclusive or (need.exclusive and state.jobs):
                continue
            free_cpus = node.cpus - state.cpus
            if need.ntasks_per_node:
                tasks = need.ntasks_per_node
            else:
                slots_after = max(0, need.min_nodes - len(chosen) - 1)
                tasks = min(free_cpus // cpt, max(1, tasks_left - slots_after))
                tasks = max(tasks, 1 if tasks_left <= 0 else 0)
            if tasks <= 0 or tasks * cpt > free_cpus:
                continue
            cpus = node.cpus if need.exclusive else tasks * cpt
            mem = 0
            if need.mem_per_node_mb is not None:
                mem = need.mem_per_node_mb or node.real_memory_mb
            elif need.mem_per_cpu_mb is not None:
                mem = need.mem_per_cpu_mb * cpus
            if mem and mem > node.real_memory_mb - state.mem_mb:
                continue
            gpus_wanted = need.gpus_per_node + need.gpus_per_task * tasks
            free_gpus = [i for i in range(node.gpus) if i not in state.gpus]
            if gpus_wanted > len(free_gpus) or (need.gpus_total and not free_gpus):
                continue
            chosen.append((node, tasks, cpus, mem, tuple(free_gpus[:gpus_wanted])))
            tasks_left -= tasks
        if len(chosen) < need.min_nodes or tasks_left > 0:
            return None
        if required - {c[0].name for c in chosen}:
            return None
        if need.gpus_total:
            # --gpus counts over the whole job: fill the chosen nodes in order.
            left = need.gpus_total
            spread = []
            for node, tasks, cpus, mem, gpus in chosen:
                free = [i for i in range(node.gpus) if i not in use.get(node.name, NodeUse()).gpus and i not in gpus]
                extra = free[:left]
                left -= len(extra)
                spread.append((node, tasks, cpus, mem, tuple(sorted(gpus + tuple(extra)))))
            if left > 0:
                return None
            chosen = spread
        return chosen

    def usage(self) -> dict[str, NodeUse]:
        return self.use
