"""Value grammars against SLURM's own answers, round trips, and fuzzing."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest
from hypothesis import given, settings, strategies as st

from sflow.slurm import values as v

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTLISTS = json.load(open(os.path.join(ROOT, "compat", "golden", "hostlist.json")))
# Inputs where scontrol's hostlist parser has quirks sflow does not copy:
# "node[1-" is read as "node]", and a suffix starting with "-" after a bracket is refused.
QUIRKS = {"node[1-", "c[1-2]-ib"}


@pytest.mark.parametrize("row", [r for r in HOSTLISTS if r["input"] not in QUIRKS], ids=lambda r: r["input"])
def test_hostlists_match_scontrol(row):
    if row["hostlist"]["exit_code"] != 0:
        with pytest.raises(v.InvalidValue):
            v.expand_hostlist(row["input"])
        return
    names = v.expand_hostlist(row["input"])
    assert names == row["hostnames"]["stdout"].split()
    assert v.compress_hostlist(names) == row["hostlist"]["stdout"].strip()


@pytest.mark.parametrize("text, minutes, shown", [
    ("5", 5, "00:05:00"), ("0:30", 1, "00:01:00"), ("0:90", 2, "00:02:00"), ("1:30", 2, "00:02:00"),
    ("1:30:00", 90, "01:30:00"), ("90", 90, "01:30:00"), ("61", 61, "01:01:00"), ("1-0", 1440, "1-00:00:00"),
    ("1-2", 1560, "1-02:00:00"), ("1-2:3", 1563, "1-02:03:00"), ("1-2:3:4", 1564, "1-02:04:00"),
    ("UNLIMITED", v.INFINITE, "UNLIMITED"), ("infinite", v.INFINITE, "UNLIMITED"), ("-1", v.INFINITE, "UNLIMITED"),
    ("0", v.INFINITE, "UNLIMITED"),
])
def test_time_limits_as_scontrol_shows_them(text, minutes, shown):
    assert v.parse_time_limit(text) == minutes
    assert v.format_timelimit_scontrol(minutes) == shown


@pytest.mark.parametrize("minutes, shown", [(2, "2:00"), (61, "1:01:00"), (1564, "1-02:04:00"), (v.INFINITE, "UNLIMITED")])
def test_time_limits_as_squeue_shows_them(minutes, shown):
    assert v.format_timelimit_squeue(minutes) == shown


@pytest.mark.parametrize("text", ["abc", "1:2:3:4", "", "1-", "-", "1:", "5m"])
def test_bad_time_limits(text):
    with pytest.raises(v.InvalidValue):
        v.parse_time_limit(text)


@pytest.mark.parametrize("text, indices, shown", [
    ("1-5", (1, 2, 3, 4, 5), "1-5"), ("1,3,5", (1, 3, 5), "1,3,5"), ("0-15:4", (0, 4, 8, 12), "0,4,8,12"),
    ("0-9%2", tuple(range(10)), "0-9%2"), ("0,2,3,4", (0, 2, 3, 4), "0,2-4"), ("1-7:2,10", (1, 3, 5, 7, 10), "1,3,5,7,10"),
    ("0-1000", tuple(range(1001)), "0-1000"),
])
def test_arrays(text, indices, shown):
    spec = v.parse_array(text, 1001)
    assert tuple(spec.indices) == indices and spec.text == shown


@pytest.mark.parametrize("text", ["0-1001", "abc", "5-1", "1-5:0", "%2", "", "0-4294967295",
                                  "0-99999999999999999999", "1-2000:1000"])
def test_bad_arrays(text):
    with pytest.raises(v.InvalidValue):
        v.parse_array(text, 1001)


def test_dependencies():
    dep = v.parse_dependency("afterok:1:2,afterany:3_4")
    assert not dep.any_of
    assert [(i.kind, i.job_id) for i in dep.items] == [("afterok", "1"), ("afterok", "2"), ("afterany", "3_4")]
    dep = v.parse_dependency("afterok:1?after:2+5")
    assert dep.any_of and dep.items[1].delay_minutes == 5
    assert v.parse_dependency("singleton").items[0].kind == "singleton"
    for bad in ("abc", "afterok", "afterok:", "afterok:x", "afterok:1,", "afterok:1+5"):
        with pytest.raises(v.InvalidValue):
            v.parse_dependency(bad)


@pytest.mark.parametrize("text, mb", [("4G", 4096), ("512", 512), ("100K", 1), ("2048K", 2), ("1T", 1048576), ("0", 0), ("3gb", 3072)])
def test_memory(text, mb):
    assert v.parse_memory_mb(text) == mb


def test_gpus_and_gres():
    assert v.parse_gpus("8") == v.GpuSpec(None, 8)
    assert v.parse_gpus("h100:8") == v.GpuSpec("h100", 8)
    assert v.parse_gres("gpu:a100:2,mps:100") == (v.Gres("gpu", "a100", 2), v.Gres("mps", None, 100))
    assert v.parse_gres("gpu") == (v.Gres("gpu", None, 1),)
    assert v.parse_gres("none") == ()
    for bad in ("::", "gpu:", "0"):
        with pytest.raises(v.InvalidValue):
            v.parse_gres(bad) if bad != "0" else v.parse_gpus(bad)


def test_signals():
    assert v.parse_signal_spec("USR1@90") == v.SignalSpec(10, "USR1", 90, False, False)
    assert v.parse_signal_spec("B:TERM") == v.SignalSpec(15, "TERM", 60, True, False)
    assert v.parse_signal_spec("R:10@30") == v.SignalSpec(10, "USR1", 30, False, True)
    assert v.parse_signal_spec("SIGINT").signal == 2
    for bad in ("FOO", "USR1@", "X:USR1", "USR1@70000", ""):
        with pytest.raises(v.InvalidValue):
            v.parse_signal_spec(bad)


def test_export():
    assert v.parse_export("NONE").mode == "NONE"
    spec = v.parse_export('ALL,FOO=bar,BAZ,Q="a,b"')
    assert spec.mode == "ALL" and spec.names == ("BAZ",) and spec.assignments == {"FOO": "bar", "Q": "a,b"}
    # sbatch takes any name as given (SLURM's test 17.14 exports TEST_ENV_17.14=123).
    spec = v.parse_export("TEST_ENV_17.14=123,A-B,1X=2,,=x")
    assert spec.names == ("A-B",) and spec.assignments == {"TEST_ENV_17.14": "123", "1X": "2"}


def test_counts_round_trip():
    assert v.expand_counts("2(x3),1") == [2, 2, 2, 1]
    assert v.compress_counts([2, 2, 2, 1]) == "2(x3),1"
    assert v.compress_counts([4]) == "4"


@pytest.mark.parametrize("pattern, expected", [
    ("out-%j.txt", "out-128.txt"), ("job%4j.out", "job0128.out"), ("%x-%u.out", "train-alice.out"),
    ("%A_%a.out", "100_7.out"), ("%4a", "0007"), ("job%J.out", "job128.0.out"), ("x-%%-%j", "x-%-128"),
    ("job%j-%2t.out", "job128-03.out"), ("%N-%n", "node2-1"), ("b\\-%j.out", "b-%j.out"),
])
def test_output_patterns(pattern, expected):
    ctx = dict(job_id=128, array_job_id=100, array_task_id=7, job_name="train", user="alice",
               node_name="node2", node_id=1, step_id=0, task_id=3)
    assert v.expand_output_pattern(pattern, ctx) == expected


def test_output_pattern_of_the_batch_step():
    # SLURM 22.05: -o out-%J-%s.out of batch job 100600 writes out-100600-batch.out
    ctx = dict(job_id=100600, job_name="wrap", user="alice", node_name="node1", node_id=0,
               step_id="batch", task_id=0)
    assert v.expand_output_pattern("out-%J-%s.out", ctx) == "out-100600-batch.out"


def test_begin():
    now = datetime(2026, 11, 24, 15, 0, 0)
    assert v.parse_time("now+1hour", now) == datetime(2026, 11, 24, 16, 0)
    assert v.parse_time("now+60", now) == datetime(2026, 11, 24, 15, 1)
    assert v.parse_time("16:00", now) == datetime(2026, 11, 24, 16, 0)
    assert v.parse_time("14:00", now) == datetime(2026, 11, 25, 14, 0)
    assert v.parse_time("2026-12-01T08:00", now) == datetime(2026, 12, 1, 8, 0)
    assert v.parse_time("midnight", now) == datetime(2026, 11, 25, 0, 0)
    assert v.parse_time("teatime", now) == datetime(2026, 11, 24, 16, 0)
    with pytest.raises(v.InvalidValue):
        v.parse_time("abc", now)


PARSERS = [v.parse_time_limit, v.expand_hostlist, v.parse_array, v.parse_dependency, v.parse_memory_mb,
           v.parse_gpus, v.parse_gres, v.parse_signal_spec, v.parse_export, v.expand_counts,
           v.parse_node_range, v.parse_positive_int]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PARSERS), st.text(alphabet="0123456789abnodeKMG:-,[]%?_+@xBRUSN() ", max_size=20))
def test_parsers_fail_only_with_invalid_value(parser, text):
    try:
        parser(text)
    except v.InvalidValue:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["node", "gpu", "n"]), st.integers(0, 120)), min_size=1, max_size=12))
def test_hostlist_round_trip(hosts):
    names = [f"{prefix}{number}" for prefix, number in hosts]
    assert v.expand_hostlist(v.compress_hostlist(names)) == names
