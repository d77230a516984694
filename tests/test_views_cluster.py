"""sinfo and scontrol show node|partition|config|hostnames|hostlist against real SLURM 22.05.

compat/golden/cluster/<scenario>.json holds what the reference SLURM printed
(compat/record_cluster.py), the slurm.conf describing the same cluster, and
each node's state at the time; the renderers get the same inputs and must
print the same bytes. No SLURM is needed here.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time

import pytest

from sflow.conf import load_file, replace
from sflow.views.cluster_show import (NodeUsage, base_state, scontrol_show, show_config, show_hostlist,
                                      show_hostnames, show_node, show_partition, slurm_state)
from sflow.views.sinfo import ALL_FORMAT, Values, fields, parse_format, parse_long_format, sinfo_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "compat", "golden", "cluster")
SCENARIOS = {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob(os.path.join(GOLDEN, "*.json")))}

# Lines SLURM sorts with equal keys come out in an order its sort does not define (it differs
# between runs of the same listing); for these the lines must match as a set and their sort
# key (the column named) must run in the same order.
TIES = {
    ("partitions", "sinfo -N"): 0,
    ("partitions", "sinfo -N -l"): 0,
    ("partitions", "sinfo -N -o %N %P %n %o %t %e %O"): 0,
    ("partitions", "sinfo -N -S -N"): 0,
    ("partitions", "sinfo -S t"): 4,
    ("partitions", "sinfo -S +N"): 5,
}
# values.py reads "c[1-2]-ib" as c1-ib,c2-ib where scontrol refuses it (tests/test_values.py: QUIRKS).
QUIRKS = {("idle", "scontrol show hostnames c[1-2]-ib")}


def epoch(text: str | None) -> float | None:
    return None if text is None else time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def node_states(scenario: dict) -> dict[str, NodeUsage]:
    return {name: NodeUsage(
        alloc_cpus=s["alloc_cpus"], alloc_mem_mb=s["alloc_mem_mb"], alloc_gpus=s["alloc_gpus"], state=s["state"],
        reason=s["reason"], reason_user=s["reason_user"], reason_uid=s["reason_uid"],
        reason_time=epoch(s["reason_time"]), cpu_load=float(s["cpu_load"]), free_mem_mb=s["free_mem_mb"],
        arch=s["arch"], os=s["os"], boot_time=epoch(s["boot_time"]),
        slurmd_start_time=epoch(s["slurmd_start_time"]), last_busy_time=epoch(s["last_busy_time"]),
        version=s["version"]) for name, s in scenario["nodes"].items()}


_CLUSTERS: dict = {}


def cluster_of(name: str, tmp_dir: str):
    if name not in _CLUSTERS:
        path = os.path.join(tmp_dir, f"{name}.conf")
        with open(path, "w") as handle:
            handle.write(SCENARIOS[name]["conf"])
        # the file the reference SLURM read, as show config prints it
        _CLUSTERS[name] = replace(load_file(path), source="/etc/slurm/slurm.conf")
    return _CLUSTERS[name]


def run(case: dict, cluster, states) -> tuple[str, str, int]:
    argv, now = case["argv"], epoch(case["now"])
    if argv[0] == "sinfo":
        return sinfo_main(argv[1:], cluster, states, now=now)
    options = [a for a in argv[1:] if a in ("-o", "-a")]
    args = [a for a in argv[1:] if a not in options][1:]  # after "show"
    extra = {}
    boot = re.search(r"BOOT_TIME\s+= (\S+)", case["stdout"])
    if boot:  # the controller's own facts, which sflow's caller passes in
        extra = {"boot_time": epoch(boot.group(1)),
                 "next_job_id": int(re.search(r"NEXT_JOB_ID\s+= (\d+)", case["stdout"]).group(1))}
    return scontrol_show(args, cluster, states, one_liner="-o" in options, show_all="-a" in options,
                         env=case["env"], now=now, **extra)


CASES = [(name, case) for name, scenario in SCENARIOS.items() for case in scenario["cases"]]


def test_the_recordings_are_there():
    assert set(SCENARIOS) == {"idle", "busy", "drain", "partitions", "hostnames"}
    assert len(CASES) > 400


@pytest.mark.parametrize("scenario, case", CASES, ids=[f"{n}:{' '.join(c['argv'])}"[:120] for n, c in CASES])
def test_matches_slurm(scenario, case, tmp_path_factory):
    label = " ".join(case["argv"])
    if (scenario, label) in QUIRKS:
        pytest.skip("a hostlist quirk sflow does not copy")
    cluster = cluster_of(scenario, str(tmp_path_factory.getbasetemp()))
    out, err, code = run(case, cluster, node_states(SCENARIOS[scenario]))
    assert (err, code) == (case["stderr"], case["exit_code"])
    column = TIES.get((scenario, label))
    if column is None:
        assert out == case["stdout"]
        return
    want, got = case["stdout"].splitlines(), out.splitlines()
    assert sorted(got) == sorted(want)
    assert [line.split()[column] for line in got] == [line.split()[column] for line in want]


# ------------------------------------------------------------------ node states


def _node(cpus=4):
    from sflow.conf import Node

    return Node("n1", cpus, 1000)


@pytest.mark.parametrize("alloc, flags, state, shown", [
    (0, {}, "IDLE", "IDLE"), (2, {}, "MIXED", "MIXED"), (4, {}, "ALLOCATED", "ALLOCATED"),
    (0, {"drain": True}, "DRAINED", "IDLE+DRAIN"), (2, {"drain": True}, "DRAINING", "MIXED+DRAIN"),
    (4, {"drain": True}, "DRAINING", "ALLOCATED+DRAIN"), (0, {"down": True}, "DOWN", "DOWN"),
])
def test_node_state_from_allocations(alloc, flags, state, shown):
    use = NodeUsage.from_allocation(_node(), alloc, **flags)
    assert use.state == state
    assert slurm_state(_node(), use) == shown
    assert base_state(_node(), use) == shown.split("+")[0]


# ------------------------------------------------------------------ sinfo's formats


def test_every_specifier_has_a_value_and_all_covers_the_letters():
    values = Values(None)
    for row in fields():
        assert callable(getattr(values, row["value"])), row
        assert row["group"] in ("partition", "key", "min", "range", "sum", "nodes", "node", "first")
    letters = {row["letter"] for row in fields() if "letter" in row}
    assert set(re.findall(r"%(\w)", ALL_FORMAT)) == letters


def test_format_parsing():
    fmt = parse_format("[%.10P|%5N%%x %q%-3l]")
    assert fmt.prefix == "["
    assert [(s.field["letter"], s.width, s.right, s.suffix) for s in fmt.specs] == [
        ("P", 10, True, "|"), ("N", 5, False, "x %q%-3l]")]
    assert fmt.errors == ["Invalid node format specification: q\n", "Invalid node format specification: -\n"]
    fmt = parse_long_format("NodeList:.12|,bogus,,partition:")
    assert [(s.field["name"], s.width, s.right, s.suffix) for s in fmt.specs] == [
        ("NodeList", 12, True, "|"), ("Partition", None, False, "")]
    assert fmt.errors == ["sinfo: error: Invalid job format specification: bogus\n"]


def test_sinfo_on_a_cluster_of_its_own(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("NodeName=gpu[01-02] CPUs=8 RealMemory=64000 Gres=gpu:h100:4 Features=fast\n"
                    "NodeName=cpu01 CPUs=16 RealMemory=32000\n"
                    "PartitionName=gpu Nodes=gpu[01-02] Default=YES MaxTime=2-00:00:00 DefaultTime=90\n"
                    "PartitionName=all Nodes=ALL MaxTime=30 MaxNodes=2 Hidden=YES\n")
    cluster = load_file(str(conf))
    states = {"gpu01": NodeUsage.from_allocation(cluster.node("gpu01"), 8, 0, 4),
              "gpu02": NodeUsage.from_allocation(cluster.node("gpu02"), 2, 0, 1)}
    out, _, _ = sinfo_main([], cluster, states)
    assert out == ("PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST\n"
                   "gpu*         up 2-00:00:00      1    mix gpu02\n"
                   "gpu*         up 2-00:00:00      1  alloc gpu01\n")
    out, _, _ = sinfo_main(["-a", "-o", "%P %c %m %G %L %s %N"], cluster, states)
    assert out == ("PARTITION CPUS MEMORY GRES DEFAULTTIME JOB_SIZE NODELIST\n"
                   "gpu* 8 64000 gpu:h100:4 1:30:00 1-infinite gpu[01-02]\n"
                   "all 8 64000 gpu:h100:4 n/a 1-2 gpu[01-02]\n"
                   "all 16 32000 (null) n/a 1-2 cpu01\n")
    out, _, _ = sinfo_main(["-a", "-h", "-o", "%R %c %m %D"], cluster, states)
    assert out == "gpu 8 64000 2\nall 8+ 32000+ 3\n"  # without -e: the smallest, and "+"
    out, _, _ = sinfo_main(["-a", "-e", "-h", "-o", "%R %c %D"], cluster, states)
    assert out == "gpu 8 2\nall 8 2\nall 16 1\n"
    out, _, _ = sinfo_main(["-N", "-h", "-O", "NodeList:8,GresUsed:14,CPUsState"], cluster, states)
    assert out == ("gpu01   gpu:h100:4    8/0/0/8             \n"
                   "gpu02   gpu:h100:1    2/6/0/8             \n")


@pytest.mark.parametrize("argv, err, code", [
    (["-t", "sleepy"], 'sinfo: error: Bad state string: "sleepy"\nsinfo: error: valid states: unknown,', 1),
    (["--bogus"], "sinfo: unrecognized option '--bogus'\nTry \"sinfo --help\" for more information\n", 1),
    (["-l", "-o", "%P"], "sinfo: fatal: Options -o(--format) and -l(--long) are mutually exclusive.", 1),
    (["-i", "-3"], "sinfo: error: Error: invalid entry for --iterate=-3\n", 1),
    (["-O", "Nodes,Nope"], "sinfo: error: Invalid job format specification: Nope\n", 0),
])
def test_sinfo_errors(argv, err, code):
    cluster = load_file(os.path.join(GOLDEN, "slurm.conf"))
    _, got_err, got_code = sinfo_main(argv, cluster, {})
    assert got_err.startswith(err) and got_code == code


def test_sinfo_help_usage_and_version():
    cluster = load_file(os.path.join(GOLDEN, "slurm.conf"))
    assert sinfo_main(["--usage"], cluster, {})[0].startswith("Usage: sinfo [-abdelNRrsTv]")
    assert sinfo_main(["-V"], cluster, {})[0] == "slurm-wlm 22.05.8\n"
    assert "--Node" in sinfo_main(["--help"], cluster, {})[0]


def test_iterate_prints_the_time_above_the_header():
    cluster = load_file(os.path.join(GOLDEN, "slurm.conf"))
    now = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    out = sinfo_main(["-i", "5"], cluster, {}, now=now)[0]
    assert out.splitlines()[0] == "Wed Mar 04 05:06:07 2026"  # SLURM pads the day with a zero


# ------------------------------------------------------------------ scontrol show


def test_show_without_runtime_facts_says_so():
    cluster = load_file(os.path.join(GOLDEN, "slurm.conf"))
    text = show_node(cluster, {}, "node1")
    assert "CPULoad=N/A" in text and "FreeMem=N/A" in text and "State=IDLE " in text
    assert "BootTime=None" in text
    assert show_node(cluster, {}, "nosuch") == ""
    one = show_partition(cluster, one_liner=True)
    assert one.startswith("PartitionName=debug AllowGroups=ALL") and one.count("\n") == 1


def test_show_node_reason_and_memory():
    cluster = load_file(os.path.join(GOLDEN, "slurm.conf"))
    use = NodeUsage(alloc_cpus=1, alloc_mem_mb=2048, alloc_gpus=3, state="DRAINING", reason="fan",
                    reason_user="alice", reason_time=epoch("2026-01-02T03:04:05"))
    text = show_node(cluster, {"node2": use}, "node2")
    assert "State=MIXED+DRAIN " in text
    assert "   AllocTRES=cpu=1,mem=2G,gres/gpu=3\n" in text
    assert text.endswith("   Reason=fan [alice@2026-01-02T03:04:05]\n\n")


def test_show_config_keeps_unknown_keys_and_applies_units(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=Lab\nKillWait=5\nDefMemPerCPU=512\nSuspendTime=600\nDisableRootJobs=YES\n"
                    "SlurmctldHost=ctl1\nSlurmctldHost=ctl2(10.0.0.2)\nSiteKey=kept\nNodeName=n[1-3]\n")
    cluster = load_file(str(conf))
    text = show_config(cluster, now=0, boot_time=0, next_job_id=42)
    lines = text.splitlines()
    assert "ClusterName             = lab" in lines
    assert "KillWait                = 5 sec" in lines
    assert "DefMemPerCPU            = 512" in lines and not any(l.startswith("DefMemPerNode") for l in lines)
    assert "SuspendTime             = 600 sec" in lines
    assert "DisableRootJobs         = Yes" in lines
    assert "SlurmctldHost[0]        = ctl1" in lines and "SlurmctldHost[1]        = ctl2(10.0.0.2)" in lines
    assert "MaxNodeCount            = 3" in lines and "NEXT_JOB_ID             = 42" in lines
    assert "SLURM_CONF              = " + str(conf) in lines
    assert "SiteKey                 = kept" in lines
    assert lines[-2:] == ["Slurmctld(primary) at ctl1 is UP", "Slurmctld(backup) at ctl2 is UP"]


def test_hostnames_and_hostlists(tmp_path):
    assert show_hostnames("n[1-2],m3") == ("n1\nn2\nm3\n", "", 0)
    assert show_hostnames("n[2-1]") == (
        "", "scontrol: error: _parse_single_range: Invalid range: `2-1'\nInvalid hostlist: n[2-1]\n", 0)
    assert show_hostlist("n3,n1,n2", sort=True) == ("n[1-3]\n", "", 0)
    names = tmp_path / "hosts"
    names.write_text("a1,a2\na3\n\nb1\n")
    assert show_hostlist(str(names)) == ("a[1-3],b1\n", "", 0)
    assert show_hostlist(str(tmp_path / "missing")) == (f"Can not open {tmp_path / 'missing'}\n", "", 1)


def test_show_dispatch():
    cluster = load_file(os.path.join(GOLDEN, "slurm.conf"))
    assert scontrol_show([], cluster, {}) == ("", "too few arguments for keyword:show\n", 1)
    assert scontrol_show(["job", "5"], cluster, {}) is None  # jobs are shown elsewhere
    assert scontrol_show(["PART", "debug"], cluster, {})[0].startswith("PartitionName=debug\n")
    assert scontrol_show(["hostnames"], cluster, {}, env={}) == ("", "scontrol: error: host list is empty\n", 0)
