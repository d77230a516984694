"""This machine as a cluster of virtual nodes: CPU, memory and GPU accounting per node.

Placement follows what SLURM's cons_tres does on a plain cluster: nodes are
tried in the cluster's order and packed first-fit, each chosen node taking as
many of the job's tasks as its free CPUs hold (at least one each when the job
spans several nodes), required nodes (``--nodelist``) first. Memory counts
only for jobs that ask for it (SLURM's default ``CR_Core`` does not track
memory otherwise); GPUs are handed out by index, lowest free first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from sflow.backends.base import Allocation, Checked, Pending
from sflow.errors import SlurmError
from sflow.records import AllocatedNode

NOT_AVAILABLE = "Batch job submission failed: Requested node configuration is not available"
CHECKS_KEPT = 256  # the (job shape, partition) answers check_need keeps, at most


@dataclass
class NodeUse:
    cpus: int = 0
    mem_mb: int = 0
    gpus: frozenset = frozenset()
    exclusive: bool = False
    jobs: int = 0


class Usage:
    """What is in use on each node; copied freely by the planner."""

    def __init__(self, names=()):
        self.nodes: dict[str, NodeUse] = {name: NodeUse() for name in names}

    def get(self, name: str) -> NodeUse:
        return self.nodes.get(name) or NodeUse()

    def copy(self) -> "Usage":
        other = Usage()
        other.nodes = {k: replace(v) for k, v in self.nodes.items()}
        return other

    def add(self, alloc: Allocation) -> None:
        for node in alloc.nodes:
            use = self.nodes.setdefault(node.name, NodeUse())
            use.cpus += node.cpus
            use.mem_mb += node.mem_mb
            use.gpus = use.gpus | frozenset(node.gpu_indices)
            use.exclusive = use.exclusive or alloc.exclusive
            use.jobs += 1

    def remove(self, alloc: Allocation) -> None:
        for node in alloc.nodes:
            use = self.nodes.get(node.name)
            if use is None:
                continue
            use.cpus = max(0, use.cpus - node.cpus)
            use.mem_mb = max(0, use.mem_mb - node.mem_mb)
            use.gpus = use.gpus - frozenset(node.gpu_indices)
            use.jobs = max(0, use.jobs - 1)
            if alloc.exclusive or use.jobs == 0:
                use.exclusive = False

    def busy_cpus(self) -> int:
        return sum(u.cpus for u in self.nodes.values())


@dataclass(frozen=True)
class Need:
    """What a job asks of the nodes, from its JobRequest."""

    ntasks: int = 1
    cpus_per_task: int = 1
    min_nodes: int = 1
    max_nodes: int | None = None  # None: as many as the tasks need
    nodes_given: bool = False
    ntasks_per_node: int | None = None
    mem_per_node_mb: int | None = None  # 0: all of each node's memory
    mem_per_cpu_mb: int | None = None
    mem_per_gpu_mb: int | None = None
    gpus_per_node: int = 0
    gpus_per_task: int = 0
    gpus_total: int = 0
    gpu_type: str | None = None
    nodelist: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exclusive: bool = False
    constraint: str | None = None
    overcommit: bool = False  # -O: CPUs as for one task per node, tasks beyond them share

    @classmethod
    def of(cls, request) -> "Need":
        gres_gpus = [g for g in request.gres if g.name == "gpu"]
        # --gres=gpu:N and --gpus-per-node name the same count: a node must hold the larger.
        per_node = max(request.gpus_per_node or 0, sum(g.count for g in gres_gpus))
        gpu_type = request.gpu_type or next((g.type for g in gres_gpus if g.type), None)
        max_nodes = request.max_nodes
        if request.nodes_given and max_nodes is None:
            max_nodes = max(1, request.min_nodes)  # -N 0 still runs on one node, as in SLURM
        return cls(
            ntasks=max(1, request.ntasks), cpus_per_task=max(1, request.cpus_per_task),
            min_nodes=max(1, request.min_nodes), max_nodes=max_nodes, nodes_given=request.nodes_given,
            ntasks_per_node=request.ntasks_per_node,
            mem_per_node_mb=request.mem_per_node_mb, mem_per_cpu_mb=request.mem_per_cpu_mb,
            mem_per_gpu_mb=request.mem_per_gpu_mb,
            gpus_per_node=per_node or 0, gpus_per_task=request.gpus_per_task or 0,
            gpus_total=request.gpus or 0, gpu_type=gpu_type,
            nodelist=tuple(dict.fromkeys(request.nodelist)), exclude=tuple(request.exclude),
            exclusive=request.exclusive, constraint=request.constraint,
            overcommit=bool(getattr(request, "overcommit", False)),
        )

    def without_gpus(self) -> "Need":
        return replace(self, gpus_per_node=0, gpus_per_task=0, gpus_total=0, mem_per_gpu_mb=None)


def _features_match(constraint: str | None, features: tuple[str, ...]) -> bool:
    """``a&b``, ``a,b`` (all of) or ``a|b`` (any of); counts and brackets are not modelled."""
    if not constraint:
        return True
    have = set(features)
    if "|" in constraint:
        return any(name.strip() in have for name in constraint.split("|"))
    names = [n.strip() for n in constraint.replace(",", "&").split("&") if n.strip()]
    return all(name.split("*")[0] in have for name in names)


def estimate_nodes(need: Need, nodes) -> int:
    """The node count SLURM shows for a pending job (NumNodes): tasks over the biggest node."""
    if need.nodes_given:
        return need.min_nodes
    if need.ntasks_per_node:
        return max(need.min_nodes, -(-need.ntasks // need.ntasks_per_node))
    biggest = max((n.cpus for n in nodes), default=1)
    per_node = max(1, biggest // need.cpus_per_task)
    return max(need.min_nodes, len(need.nodelist), -(-need.ntasks // per_node))


def place(need: Need, nodes, usage: Usage):
    """First-fit placement over ``nodes`` (required ones first), or None if it does not fit.

    Returns a list of ``(node, tasks, cpus, mem_mb, gpu_indices)``.
    """
    if need.overcommit and not need.exclusive:
        return _place_overcommitted(need, nodes, usage)
    required = set(need.nodelist)
    cpt = need.cpus_per_task
    want_nodes = max(need.min_nodes, len(required))
    if need.ntasks_per_node:
        want_nodes = max(want_nodes, -(-need.ntasks // need.ntasks_per_node))
    max_nodes = need.max_nodes if need.max_nodes is not None else len(nodes)
    max_nodes = max(max_nodes, len(required))
    remaining = need.ntasks
    gpus_left = need.gpus_total
    chosen = []
    names: set[str] = set()
    for node in nodes:
        if remaining <= 0 and gpus_left <= 0 and len(chosen) >= want_nodes and required <= names:
            break
        if len(chosen) >= max_nodes:
            break
        is_required = node.name in required
        use = usage.get(node.name)
        if use.exclusive or (need.exclusive and use.jobs):
            if is_required:
                return None
            continue
        free_cpus = node.cpus - use.cpus
        capacity = (node.cpus if need.exclusive else free_cpus) // cpt
        if need.ntasks_per_node:
            capacity = min(capacity, need.ntasks_per_node)
        if need.gpus_per_node and need.gpus_per_task:
            # A node's GPUs (--gpus-per-node) hold only as many tasks as they give --gpus-per-task each.
            capacity = min(capacity, need.gpus_per_node // need.gpus_per_task)
        nodes_after = max(0, want_nodes - len(chosen) - 1)
        take = min(capacity, max(0, remaining - nodes_after))
        if take <= 0 and remaining > 0 and capacity > 0:
            take = 1
        if capacity <= 0 and (remaining > 0 or free_cpus < 1):
            if is_required:
                return None
            continue
        cpus = node.cpus if need.exclusive else max(take, 1) * cpt
        tpc = max(1, node.threads_per_core)
        cpus = min(node.cpus, -(-cpus // tpc) * tpc)  # whole cores, as CR_Core allocates
        if cpus > (node.cpus if need.exclusive else free_cpus):
            if is_required:
                return None
            continue
        free_gpus = [i for i in range(node.gpus) if i not in use.gpus]
        if need.gpu_type and node.gpu_type and need.gpu_type != node.gpu_type:
            free_gpus = []
        # The node's GPUs: the larger of what the node is asked for and what its tasks need.
        wanted = max(need.gpus_per_node, need.gpus_per_task * take)
        if wanted > len(free_gpus):
            if is_required:
                return None
            continue
        extra = min(gpus_left, len(free_gpus) - wanted)
        if remaining <= 0 and len(chosen) >= want_nodes and not is_required and extra <= 0:
            continue  # this node would add nothing the job still needs
        # A whole node comes with all of its GPUs, as --exclusive gives every GRES in SLURM 22.05.
        gpus = tuple(free_gpus) if need.exclusive else tuple(free_gpus[: wanted + extra])
        if need.exclusive:
            mem = node.real_memory_mb
        elif need.mem_per_node_mb is not None:
            mem = need.mem_per_node_mb or node.real_memory_mb
        elif need.mem_per_cpu_mb is not None:
            mem = need.mem_per_cpu_mb * cpus
        elif need.mem_per_gpu_mb is not None:
            mem = need.mem_per_gpu_mb * len(gpus)
        else:
            mem = 0
        if mem and mem > node.real_memory_mb - use.mem_mb:
            if is_required:
                return None
            continue
        chosen.append((node, take, cpus, mem, gpus))
        names.add(node.name)
        remaining -= take
        gpus_left -= extra
    if remaining > 0 or gpus_left > 0 or len(chosen) < want_nodes or not required <= names:
        return None
    return chosen


def selection_order(nodes, need: Need, usage: Usage) -> list:
    """The order cons_tres tries nodes in: required ones first, then by Weight, then the best fit
    (fewest free CPUs, so a partly used node fills before an idle one is broken into), then
    slurm.conf's order. On the reference cluster a 1-CPU job goes to the half-used node3
    rather than idle node2."""
    required = set(need.nodelist)
    index = {node.name: i for i, node in enumerate(nodes)}
    return sorted(nodes, key=lambda n: (n.name not in required, n.weight,
                                        n.cpus - usage.get(n.name).cpus, index[n.name]))


def _place_overcommitted(need: Need, nodes, usage: Usage):
    """-O: the nodes are chosen and charged as for one task each; the job's tasks are then
    spread over them in blocks (``3(x2)`` for 6 tasks on 2 nodes)."""
    want = max(need.min_nodes, len(set(need.nodelist)))
    if need.ntasks_per_node:
        want = max(want, -(-need.ntasks // need.ntasks_per_node))
    if need.max_nodes is not None:
        want = min(want, max(need.max_nodes, len(set(need.nodelist))))
    placed = place(replace(need, ntasks=want, ntasks_per_node=None, overcommit=False), nodes, usage)
    if placed is None:
        return None
    count = len(placed)
    base, extra = divmod(need.ntasks, count)
    return [(node, base + (1 if i < extra else 0), cpus, mem, gpus)
            for i, (node, _, cpus, mem, gpus) in enumerate(placed)]


class LocalBackend:
    """The cluster's virtual nodes on this machine."""

    name = "local"
    on_this_machine = True
    wake_fd = None  # it answers at once: nothing to wait for

    def __init__(self, cluster, home: str):
        self.cluster = cluster
        self.home = home
        self.usage = Usage(n.name for n in cluster.nodes)
        self._by_name = {n.name: n for n in cluster.nodes}
        self._checked: dict[tuple[Need, object], str | None] = {}  # see check_need

    # ------------------------------------------------------------ the seam

    def check(self, request, partitions: list, limit: int, env: dict, now: float) -> Checked:
        return Checked(never=self.never(Need.of(request), partitions))

    def never(self, need: Need, partitions: list) -> str | None:
        """Why the job can never start (raises when SLURM refuses it at once): None when any of its
        partitions could run it."""
        reasons = [self.check_need(need, partition) for partition in partitions]
        return None if None in reasons else reasons[0]

    def allocate(self, job, request) -> Allocation | Pending:
        need = Need.of(request)
        partition = self.cluster.partition(job.partition)
        alloc = self.place(job.job_id, need, partition, self.usage)
        if alloc is None:
            return Pending("Resources")
        self.usage.add(alloc)
        return alloc

    def release(self, allocation: Allocation) -> None:
        self.usage.remove(allocation)

    def restore(self, allocation: Allocation) -> None:
        self.usage.add(allocation)

    # ------------------------------------------------------------ hooks of a backend with news of its own: none

    def events(self, now: float) -> list:
        return []

    def busy(self) -> bool:
        return False

    def recover(self, live_jobs: set[int]) -> None:
        pass

    def resync(self) -> None:
        pass

    def close(self) -> None:
        pass

    # ------------------------------------------------------------ planning

    def candidates(self, need: Need, partition) -> list:
        members = set(partition.nodes)
        excluded = set(need.exclude)
        nodes = [n for n in self.cluster.nodes
                 if n.name in members and n.name not in excluded and _features_match(need.constraint, n.features)]
        if need.nodelist:
            wanted = set(need.nodelist)
            nodes = [n for n in nodes if n.name in wanted] + [n for n in nodes if n.name not in wanted]
        return nodes

    def place(self, job_id: int, need: Need, partition, usage: Usage) -> Allocation | None:
        placed = place(need, selection_order(self.candidates(need, partition), need, usage), usage)
        if placed is None:
            return None
        return Allocation(job_id, [
            AllocatedNode(node.name, cpus, mem, gpus, self.node_root(node.name), None, tasks)
            for node, tasks, cpus, mem, gpus in placed
        ], need.exclusive)

    def node_root(self, name: str) -> str:
        return os.path.join(self.home, "nodes", name)

    def make_node_roots(self) -> None:
        for node in self.cluster.nodes:
            os.makedirs(self.node_root(node.name), mode=0o700, exist_ok=True)

    def check_need(self, need: Need, partition) -> str | None:
        """SLURM's refusal at submit for a job that can never run here (raises), or the
        reason it will pend with until the partition changes, or None."""
        # Kept per shape of job and partition: submissions mostly repeat a few, the answer is a
        # trial placement on empty nodes, and this backend's nodes never change (a new
        # configuration makes a new backend). A refusal is worked out again each time.
        key = (need, partition)
        try:
            return self._checked[key]
        except KeyError:
            pass
        reason = self._check_need(need, partition)
        if len(self._checked) >= CHECKS_KEPT:
            self._checked.clear()
        self._checked[key] = reason
        return reason

    def _check_need(self, need: Need, partition) -> str | None:
        known = self._by_name
        for name in need.nodelist:
            if name not in known:
                raise SlurmError("Batch job submission failed: Invalid node name specified")
        if any(name not in partition.nodes for name in need.nodelist):
            raise SlurmError(NOT_AVAILABLE)
        if set(need.nodelist) & set(need.exclude):
            raise SlurmError(NOT_AVAILABLE)
        nodes = self.candidates(need, partition)
        if need.constraint and not nodes:
            raise SlurmError("Batch job submission failed: Invalid feature specification")
        if not nodes:
            raise SlurmError(NOT_AVAILABLE)
        if need.cpus_per_task > max(n.cpus for n in nodes):
            raise SlurmError(f"CPU count per node can not be satisfied\n{NOT_AVAILABLE}")
        biggest_mem = max(n.real_memory_mb for n in nodes)
        if need.mem_per_node_mb and need.mem_per_node_mb > biggest_mem:
            raise SlurmError(f"Memory specification can not be satisfied\n{NOT_AVAILABLE}")
        if need.mem_per_cpu_mb and need.mem_per_cpu_mb * need.cpus_per_task > biggest_mem:
            raise SlurmError(f"Memory specification can not be satisfied\n{NOT_AVAILABLE}")
        if need.nodes_given and (need.min_nodes > len(partition.nodes)
                                 or (partition.max_nodes and need.min_nodes > partition.max_nodes)):
            return "PartitionNodeLimit"
        empty = Usage(n.name for n in nodes)
        if place(need, nodes, empty) is not None:
            return None
        if place(need.without_gpus(), nodes, empty) is None:
            return "PartitionConfig"  # too many CPUs for the partition: SLURM queues it anyway
        raise SlurmError(NOT_AVAILABLE)


__all__ = ["LocalBackend", "Need", "NodeUse", "Usage", "estimate_nodes", "place"]
