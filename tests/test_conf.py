"""slurm.conf reading (sflow.conf): every form of the syntax, errors with their file and line,
Include, defaults, the built-in one-node cluster, and the parse cache."""

from __future__ import annotations

import os
import textwrap

import pytest

from sflow import conf
from sflow.conf import INFINITE, Partition, load_cluster, load_file
from sflow.errors import SlurmError, render
from sflow.queue import paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "compat", "golden", "cluster", "slurm.conf")


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SFLOW_CONF", raising=False)


def write(path, text: str) -> str:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def load(tmp_path, text: str):
    return load_file(write(tmp_path / "slurm.conf", text))


def error_of(tmp_path, text: str) -> SlurmError:
    with pytest.raises(SlurmError) as caught:
        load(tmp_path, text)
    return caught.value


# ------------------------------------------------------------------ the syntax


def test_the_reference_cluster():
    cluster = load_file(REFERENCE)
    assert cluster.name == "ref"
    assert cluster.first_job_id == 100000
    assert [n.name for n in cluster.nodes] == ["node1", "node2", "node3", "node4"]
    node = cluster.node("node2")
    assert (node.cpus, node.real_memory_mb, node.gpus, node.gpu_type) == (2, 4000, 8, None)
    assert (node.addr, node.hostname, node.port, node.gres) == ("127.0.0.12", "node2", 17002, ("gpu:8",))
    # only CPUs given: SLURM infers one core per socket, as its scontrol shows (Sockets=2 CoresPerSocket=1)
    assert (node.sockets, node.cores_per_socket, node.threads_per_core, node.boards) == (2, 1, 1, 1)
    part = cluster.partition()
    assert (part.name, part.nodes, part.default, part.max_time, part.state) == (
        "debug", ("node1", "node2", "node3", "node4"), True, INFINITE, "UP")
    assert cluster.controllers == ("vm(127.0.0.1)",)
    assert cluster.source == os.path.abspath(REFERENCE)


def test_comments_several_pairs_per_line_and_case_insensitive_keys(tmp_path):
    cluster = load(tmp_path, """
        # a comment line
        clustername=Lab   FIRSTJOBID=500 killwait=10   # a comment after the pairs
        MinJobAge=60 maxarraysize=2000
        nodename=n[1-2] cpus=4 realmemory=8000
        partitionname=main nodes=n[1-2] default=yes
    """)
    assert cluster.name == "lab"  # SLURM lower-cases the cluster name
    assert (cluster.first_job_id, cluster.kill_wait, cluster.min_job_age, cluster.max_array_size) == (500, 10, 60, 2000)
    assert [(n.name, n.cpus, n.real_memory_mb) for n in cluster.nodes] == [("n1", 4, 8000), ("n2", 4, 8000)]
    assert cluster.partition().name == "main"


def test_gres_forms(tmp_path):
    cluster = load(tmp_path, """
        NodeName=a Gres=gpu:8
        NodeName=b Gres=gpu:h100:4
        NodeName=c Gres=gpu:a100:2,mps:100
        NodeName=d Gres=gpu
        NodeName=e
    """)
    shown = [(n.gpus, n.gpu_type, n.gres) for n in cluster.nodes]
    assert shown == [(8, None, ("gpu:8",)), (4, "h100", ("gpu:h100:4",)), (2, "a100", ("gpu:a100:2", "mps:100")),
                     (1, None, ("gpu",)), (0, None, ())]


def test_node_and_partition_defaults(tmp_path):
    cluster = load(tmp_path, """
        NodeName=DEFAULT CPUs=8 RealMemory=16000 Gres=gpu:2
        NodeName=n[1-2]
        NodeName=big CPUs=64 Gres=gpu:h100:8
        PartitionName=DEFAULT MaxTime=1:00:00 State=UP DefaultTime=10
        PartitionName=short Nodes=n[1-2] Default=YES
        PartitionName=long Nodes=big MaxTime=7-00:00:00
    """)
    assert [(n.cpus, n.real_memory_mb, n.gpus) for n in cluster.nodes] == [(8, 16000, 2), (8, 16000, 2), (64, 16000, 8)]
    short, long = cluster.partitions
    assert (short.max_time, short.default_time) == (60, 10)
    assert (long.max_time, long.default_time) == (7 * 24 * 60, 10)


def test_partition_forms(tmp_path):
    cluster = load(tmp_path, """
        NodeName=n[1-4] CPUs=2
        PartitionName=all Nodes=ALL MaxTime=INFINITE State=UP
        PartitionName=pick Nodes=n3,n1 MaxTime=UNLIMITED MaxNodes=2 MinNodes=1 State=DOWN Hidden=YES
        PartitionName=remote Nodes=n[2-3] Backend=mithril Default=YES PriorityTier=3 OverSubscribe=FORCE
    """)
    whole, pick, remote = cluster.partitions
    assert whole.nodes == ("n1", "n2", "n3", "n4")
    assert pick.nodes == ("n1", "n3")  # in the node table's order, as SLURM keeps them
    assert (pick.max_time, pick.max_nodes, pick.min_nodes, pick.state, pick.hidden) == (INFINITE, 2, 1, "DOWN", True)
    assert (remote.backend, remote.priority_tier, remote.oversubscribe) == ("mithril", 3, "FORCE:4")
    assert cluster.partition() is remote
    assert whole.max_time == INFINITE and Partition("x", ()).max_time is None


def test_the_last_default_partition_wins(tmp_path):
    cluster = load(tmp_path, """
        NodeName=n1
        PartitionName=a Nodes=n1 Default=YES
        PartitionName=b Nodes=n1 Default=YES
    """)
    assert [p.name for p in cluster.partitions if p.default] == ["b"]


def test_line_continuation_and_quoted_values(tmp_path):
    cluster = load(tmp_path, """
        NodeName=n[1-2] \\
            CPUs=16 \\
            RealMemory=64000 State=DRAIN Reason="disk check"
        PartitionName=p Nodes=n[1-2]
    """)
    node = cluster.nodes[1]
    assert (node.cpus, node.real_memory_mb, node.state, node.reason) == (16, 64000, "DRAIN", "disk check")


def test_node_topology_is_inferred_as_slurm_does(tmp_path):
    cluster = load(tmp_path, """
        NodeName=a Sockets=2 CoresPerSocket=8 ThreadsPerCore=2
        NodeName=b CPUs=16 CoresPerSocket=4 ThreadsPerCore=2
        NodeName=c Boards=2 SocketsPerBoard=2 CoresPerSocket=2
        NodeName=d
    """)
    shown = [(n.cpus, n.sockets, n.cores_per_socket, n.threads_per_core) for n in cluster.nodes]
    assert shown == [(32, 2, 8, 2), (16, 2, 4, 2), (8, 4, 2, 1), (1, 1, 1, 1)]


def test_per_node_addresses_and_ports(tmp_path):
    cluster = load(tmp_path, """
        NodeName=n[1-3] NodeAddr=10.0.0.[1-3] NodeHostname=host[1-3] Port=[7001-7003]
        NodeName=m[1-2] NodeAddr=gateway Port=6000
    """)
    assert [(n.addr, n.hostname, n.port) for n in cluster.nodes] == [
        ("10.0.0.1", "host1", 7001), ("10.0.0.2", "host2", 7002), ("10.0.0.3", "host3", 7003),
        ("gateway", None, 6000), ("gateway", None, 6000)]


def test_down_nodes_lines(tmp_path):
    cluster = load(tmp_path, """
        NodeName=n[1-3]
        DownNodes=n[2-3] Reason="no power" State=DOWN
    """)
    assert [(n.state, n.reason) for n in cluster.nodes] == [(None, None), ("DOWN", "no power"), ("DOWN", "no power")]


def test_other_keys_are_kept_with_their_defaults(tmp_path):
    cluster = load(tmp_path, """
        SchedulerParameters=bf_continue,bf_interval=30
        SomeSiteKey=whatever
        selecttype=select/cons_tres
        NodeName=n1
    """)
    assert cluster.config["SchedulerParameters"] == "bf_continue,bf_interval=30"
    assert cluster.config["SomeSiteKey"] == "whatever"
    assert cluster.config["SelectType"] == "select/cons_tres"  # SLURM's spelling of a known key
    assert cluster.config["KillWait"] == "30" and cluster.config["MaxArraySize"] == "1001"  # defaults
    assert "Prolog" not in cluster.config  # unset keys stay unset
    assert cluster.config_value("schedulerparameters") == "bf_continue,bf_interval=30"


def test_no_partition_line_makes_one_default_partition(tmp_path):
    cluster = load(tmp_path, "NodeName=n[1-2]\n")
    assert [(p.name, p.nodes, p.default) for p in cluster.partitions] == [("debug", ("n1", "n2"), True)]


def test_partition_lookup(tmp_path):
    cluster = load(tmp_path, """
        NodeName=n1
        PartitionName=a Nodes=n1
    """)
    with pytest.raises(SlurmError, match="No partition specified or system default partition"):
        cluster.partition()
    with pytest.raises(SlurmError, match="invalid partition specified: nope"):
        cluster.partition("nope")
    with pytest.raises(SlurmError, match="Invalid node name specified: n9"):
        cluster.node("n9")


# ------------------------------------------------------------------ Include


def test_include_relative_absolute_and_cluster_name(tmp_path):
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc" / "nodes.conf", "NodeName=n[1-2] CPUs=4\n")
    absolute = write(tmp_path / "lab_parts.conf", "PartitionName=p Nodes=n[1-2] Default=YES\n")
    os.rename(absolute, tmp_path / "etc" / "lab_parts.conf")
    cluster = load(tmp_path / "etc", f"""
        ClusterName=LAB
        Include nodes.conf
        include {tmp_path}/etc/%c_parts.conf
    """)
    assert [n.name for n in cluster.nodes] == ["n1", "n2"]
    assert cluster.partition().name == "p"


def test_include_errors_name_the_line(tmp_path):
    err = error_of(tmp_path, """
        NodeName=n1
        Include missing.conf
    """)
    assert err.line == 2 and err.source.endswith("slurm.conf")
    assert "missing.conf: No such file or directory" in err.message
    write(tmp_path / "loop.conf", "Include slurm.conf\n")
    err = error_of(tmp_path, "NodeName=n1\nInclude loop.conf\n")
    assert "Include loop" in err.message and err.source.endswith("loop.conf") and err.line == 1


def test_errors_in_an_included_file_name_that_file(tmp_path):
    write(tmp_path / "nodes.conf", "NodeName=n1\nNodeName=n2 CPUs=many\n")
    err = error_of(tmp_path, "Include nodes.conf\n")
    assert (os.path.basename(err.source), err.line) == ("nodes.conf", 2)
    assert err.message == '"CPUs" value "many" is not a valid number'


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("text, line, message", [
    ("NodeName=n1\nFirstJobId=abc\n", 0, '"FirstJobId" value "abc" is not a valid number'),
    ("NodeName=n1\nFirstJobId=0\n", 0, '"FirstJobId" value "0" is out of range'),
    ("NodeName=n1\nKillWait=70000\n", 0, '"KillWait" value "70000" is out of range (0 to 65533)'),
    ("NodeName=n1 CPU=2\n", 1, "Parsing error at unrecognized key: CPU"),
    ("# c\nNodeName=n1\nPartitionName=p Nodes=n[1-2]\n", 3, 'Partition "p": node n2 is not defined'),
    ("NodeName=n[1-\n", 1, '"NodeName" value "n[1-" is not a valid hostlist'),
    ("NodeName=n1\nNodeName=n1\n", 2, "Duplicated NodeName n1"),
    ("NodeName=n1\nPartitionName=p Nodes=n1\nPartitionName=p Nodes=n1\n", 3, "Duplicated PartitionName p"),
    ("NodeName=n1\nPartitionName=p Nodes=n1 Backend=cloud\n", 2, '"Backend" value "cloud" is not local or mithril'),
    ("NodeName=n1\nPartitionName=p Nodes=n1 MaxTime=soon\n", 2, '"MaxTime" value "soon" is not a valid time'),
    ("NodeName=n1\nPartitionName=p Nodes=n1 State=OPEN\n", 2, '"State" value "OPEN" is not UP'),
    ("NodeName=n1\nPartitionName=p Nodes=n1 Default=maybe\n", 2, '"Default" value "maybe" is not YES or NO'),
    ("NodeName=n1 State=BROKEN\n", 1, '"State" value "BROKEN" is not a valid node state'),
    ("NodeName=n1\n\n# gap\nGarbage\n", 4, "Parsing error at unrecognized key: Garbage"),
    ("NodeName=n1 \\\n  CPUs=2 \\\n  Weight=x\n", 1, '"Weight" value "x" is not a valid number'),
    ("NodeName=n[1-2] NodeAddr=a[1-3]\n", 1, "NodeAddr count (3) does not match NodeName count (2)"),
])
def test_errors_carry_the_file_and_line(tmp_path, text, line, message):
    err = error_of(tmp_path, text)
    assert message in err.message
    assert err.source.endswith("slurm.conf")
    assert err.line == line
    assert render("sbatch", err).startswith("sbatch: error: ")
    assert f"slurm.conf line {line})" in render("sbatch", err)


def test_a_cluster_needs_nodes(tmp_path):
    err = error_of(tmp_path, "ClusterName=empty\n")
    assert "no NodeName lines" in err.message


def test_an_unreadable_file(tmp_path):
    with pytest.raises(SlurmError, match="Unable to open configuration file"):
        load_file(str(tmp_path / "nope.conf"))


# ------------------------------------------------------------------ the built-in cluster


def _meminfo_mb() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no MemTotal")


def test_default_cluster_is_this_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    cluster = conf.default_cluster()
    node, = cluster.nodes
    assert node.name == os.uname().nodename.split(".")[0]
    assert node.cpus == len(os.sched_getaffinity(0))
    assert node.sockets * node.cores_per_socket * node.threads_per_core == node.cpus
    assert node.real_memory_mb == _meminfo_mb()
    assert (node.gpus, node.gres) == (0, ())
    assert (cluster.name, cluster.first_job_id, cluster.source) == ("sflow", 1, None)
    part = cluster.partition()
    assert (part.name, part.nodes, part.default) == ("debug", (node.name,), True)
    assert cluster.config["ClusterName"] == "sflow" and cluster.config["FirstJobId"] == "1"


def test_default_cluster_counts_gpus_with_nvidia_smi(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: a)'\necho 'GPU 1: NVIDIA H100 (UUID: b)'\n"
                    "echo '  MIG 1g.10gb Device 0: (UUID: c)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/bin:/usr/bin")
    node, = conf.default_cluster().nodes
    assert (node.gpus, node.gres) == (2, ("gpu:2",))
    fake.write_text("#!/bin/sh\nexit 1\n")  # counted once per boot: the cached answer stands
    assert conf.default_cluster().nodes[0].gpus == 2


# ------------------------------------------------------------------ where the file is, and the cache


def test_which_file_is_read(tmp_path, monkeypatch):
    home = tmp_path / "home"
    assert load_cluster().source is None  # nothing: this machine
    assert not home.exists()  # looking for a slurm.conf makes no home
    home.mkdir()
    write(home / "slurm.conf", "ClusterName=homeconf\nNodeName=h1\n")
    assert load_cluster().name == "homeconf"
    monkeypatch.setenv("SFLOW_CONF", write(tmp_path / "other.conf", "ClusterName=envconf\nNodeName=e1\n"))
    assert load_cluster().name == "envconf"


def test_sflow_home_rules(tmp_path):
    assert paths.home({"SFLOW_HOME": str(tmp_path / "a")}) == str(tmp_path / "a")
    assert paths.home({"XDG_STATE_HOME": str(tmp_path / "x")}) == str(tmp_path / "x" / "sflow")
    assert os.stat(tmp_path / "x" / "sflow").st_mode & 0o777 == 0o700


def test_the_cache_skips_parsing_until_a_file_changes(tmp_path, monkeypatch):
    nodes = write(tmp_path / "nodes.conf", "NodeName=n[1-2] CPUs=2\n")
    path = write(tmp_path / "slurm.conf", "ClusterName=c1\nInclude nodes.conf\n")
    monkeypatch.setenv("SFLOW_CONF", path)
    first = load_cluster()
    monkeypatch.setattr(conf, "_load", lambda p: pytest.fail("parsed although nothing changed"))
    assert load_cluster() == first
    monkeypatch.undo()
    monkeypatch.setenv("SFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SFLOW_CONF", path)
    write(tmp_path / "nodes.conf", "NodeName=n[1-3] CPUs=4\n")  # an included file changed
    os.utime(nodes, ns=(1, 1))
    assert [n.cpus for n in load_cluster().nodes] == [4, 4, 4]
    write(tmp_path / "slurm.conf", "ClusterName=c2\nInclude nodes.conf\n")
    os.utime(path, ns=(2, 2))
    assert load_cluster().name == "c2"


def test_a_broken_cache_is_parsed_again(tmp_path, monkeypatch):
    path = write(tmp_path / "slurm.conf", "NodeName=n1\n")
    monkeypatch.setenv("SFLOW_CONF", path)
    cluster = load_cluster()
    cache = conf._cache_path(os.path.abspath(path), os.environ)
    with open(cache, "wb") as handle:
        handle.write(b"not marshal data")
    assert load_cluster() == cluster
