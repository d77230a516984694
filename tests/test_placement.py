"""Which nodes a job lands on, as the reference SLURM's cons_tres chose them (4 nodes of 2 CPUs).

Observed on the reference cluster: with every node idle, 1-CPU jobs fill node1 before node2; a
1-CPU job goes to a half-used node rather than an idle one; two 1-CPU nodes are taken from the
half-used node first, then the idle ones in order; a 2-CPU job skips half-used nodes.
"""

from __future__ import annotations

import os

import pytest

from sflow.backends.local import LocalBackend, Need, Usage
from sflow.conf import load_file
from sflow.slurm.request import parse_sbatch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = load_file(os.path.join(ROOT, "compat", "golden", "ref-slurm.conf"))


def _need(*args: str) -> Need:
    sub = parse_sbatch([*args, "--wrap", "true"], env={}, cwd="/tmp", user="u", uid=1, gid=1, host="h")
    return Need.of(sub.request)


def _run(backend, usage, *args):
    alloc = backend.place(1, _need(*args), CLUSTER.partition(), usage)
    usage.add(alloc)
    return [n.name for n in alloc.nodes]


@pytest.mark.parametrize("busy, args, nodes", [
    ([], ["-n1"], ["node1"]),
    ([["-n1"]], ["-n1"], ["node1"]),                               # node1 fills first
    ([["-n1"], ["-n1"], ["-n1"]], ["-N2", "-n2"], ["node2", "node3"]),  # half-used node2, then node3
    ([["-w", "node1", "-c2"], ["-w", "node3", "-n1"]], ["-n1"], ["node3"]),  # best fit over idle node2
    ([["-w", "node1", "-c2"], ["-w", "node3", "-n1"]], ["-c2"], ["node2"]),
    ([["-w", "node1", "-c2"], ["-w", "node3", "-c2"]], ["-N2", "-n2"], ["node2", "node4"]),
])
def test_nodes_are_chosen_as_cons_tres_chooses_them(tmp_path, busy, args, nodes):
    backend = LocalBackend(CLUSTER, str(tmp_path))
    usage = Usage([n.name for n in CLUSTER.nodes])
    for earlier in busy:
        _run(backend, usage, *earlier)
    assert _run(backend, usage, *args) == nodes


@pytest.mark.parametrize("args, refused", [
    (["--gpus-per-task=1", "--gpus-per-node=1", "-n2", "-N1"], True),   # two tasks, one GPU on the node
    (["--gpus-per-task=1", "--gpus-per-node=2", "-n2", "-N1"], False),
    (["--gpus-per-task=1", "--gpus-per-node=1", "-n2", "-N2"], False),  # a task and a GPU per node
])
def test_gpus_per_node_hold_only_their_tasks_gpus(tmp_path, args, refused):
    from sflow.errors import SflowError

    backend = LocalBackend(CLUSTER, str(tmp_path))
    if refused:
        with pytest.raises(SflowError, match="Requested node configuration is not available"):
            backend.check_need(_need(*args), CLUSTER.partition())
    else:
        assert backend.check_need(_need(*args), CLUSTER.partition()) is None
        alloc = backend.place(1, _need(*args), CLUSTER.partition(), Usage(n.name for n in CLUSTER.nodes))
        assert sum(len(n.gpu_indices) for n in alloc.nodes) == 2
