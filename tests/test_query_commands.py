"""squeue, sinfo, sacct and scancel against real SLURM 22.05 (compat/golden/query.json): -v dumps,
input environment variables, iterate, help texts, errors and sacct's time forms.

The recorded commands ran as user nobody, who had no jobs; here the shims run against a fresh,
empty controller with the reference cluster's slurm.conf, so the outputs must be the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest

from conftest import BIN, ROOT

GOLDEN = json.load(open(os.path.join(ROOT, "compat", "golden", "query.json")))
CONF = os.path.join(ROOT, "compat", "golden", "cluster", "slurm.conf")
RUNS = [(case, run) for case in GOLDEN for run in case["runs"]]
# SLURM's -v also logs its plugins' loading on stderr: sflow has no plugins.
PLUGIN_LINE = re.compile(r"^\w+: select/.*\n", re.M)
DUMP_END = "-" * 29 + "\n\n"
# What moves with the clock: the time above the header, and when squeue's data was loaded.
MOMENT = re.compile(r"^\w{3} \w{3} \d\d \d\d:\d\d:\d\d \d{4}$|^last_update_time=\d+", re.M)


def _steady(text: str) -> str:
    return MOMENT.sub("<moment>", text)


@pytest.fixture(scope="module")
def environ(tmp_path_factory):
    home = tmp_path_factory.mktemp("query-home")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SQUEUE_", "SINFO_", "SACCT_", "SCANCEL_"))}
    env.update(SFLOW_HOME=str(home), SFLOW_CONF=CONF, PATH=BIN + os.pathsep + env.get("PATH", ""), TZ="UTC")
    yield env
    subprocess.run([os.path.join(BIN, "python3") if os.path.exists(os.path.join(BIN, "python3")) else "python3",
                    "-c", "from sflow.queue import client; client.call(None, 'shutdown', start=False)"],
                   env=env, capture_output=True, timeout=60)


@pytest.mark.parametrize("case, run", RUNS, ids=[f"{c['name']}:{' '.join(r['argv'])}"[:100] for c, r in RUNS])
def test_matches_slurm(case, run, environ):
    done = subprocess.run(run["argv"], env={**environ, **case["env"]}, capture_output=True, text=True,
                          cwd="/tmp", timeout=60)
    assert (done.stderr, done.returncode) == (PLUGIN_LINE.sub("", run["stderr"]), run["exit_code"])
    if case["dump_only"]:  # after the dump, the cluster as it was at that moment
        assert done.stdout.split(DUMP_END)[0] == run["stdout"].split(DUMP_END)[0]
    else:
        assert _steady(done.stdout) == _steady(run["stdout"])


@pytest.mark.parametrize("argv, header", [(["squeue", "-o", "%P", "--iterate=1"], "PARTITION"),
                                          (["sinfo", "-i", "1", "-o", "%P"], "PARTITION")])
def test_iterate_repeats_until_killed(argv, header, environ):
    process = subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, text=True, cwd="/tmp")
    try:
        seen = 0
        while seen < 2:  # each round: the time, the header, its rows, a blank line
            line = process.stdout.readline()
            assert line, "the command stopped by itself"
            seen += line.strip() == header
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_squeue_reads_its_format_from_the_environment_unless_given():
    from sflow.records import JobRecord  # noqa: F401  (the view's input type)
    from sflow.views.squeue import squeue_main

    out = squeue_main([], [], env={"SQUEUE_FORMAT": "JID=%i UID=%U"})[0]
    assert out == "JID=JOBID UID=UID\n"
    assert squeue_main(["-o", "%i"], [], env={"SQUEUE_FORMAT": "JID=%i"})[0] == "JOBID\n"
    assert squeue_main(["-h"], [], env={"SQUEUE_FORMAT2": "JobID:5"})[0] == ""


def test_sacct_time_forms_of_the_man_page():
    import time

    from sflow.views.sacct import _parse_time

    now = time.mktime((2026, 12, 3, 7, 0, 30, 0, 0, -1))
    at = lambda *t: time.mktime((*t, 0, 0, -1))  # noqa: E731
    assert _parse_time("00:00", now) == at(2026, 12, 3, 0, 0, 0)  # today, even when already past
    assert _parse_time("10:00pm", now) == at(2026, 12, 3, 22, 0, 0)
    assert _parse_time("1203", now) == at(2026, 12, 3, 0, 0, 0)
    assert _parse_time("120326-05:00", now) == at(2026, 12, 3, 5, 0, 0)
    assert _parse_time("12.03.26", now) == at(2026, 12, 3, 0, 0, 0)
    assert _parse_time("12/03/26-01:02:03", now) == at(2026, 12, 3, 1, 2, 3)
    assert _parse_time("2026-12-03T05:06", now) == at(2026, 12, 3, 5, 6, 0)
    assert _parse_time("noon", now) == at(2026, 12, 3, 12, 0, 0)
    assert _parse_time("teatime", now) == at(2026, 12, 3, 16, 0, 0)
    assert _parse_time("now-1hour", now) == now - 3600
    assert _parse_time("now+2days", now) == now + 2 * 86400


def _job(job_id: int, **extra):
    from sflow.records import JobRecord

    fields = dict(job_id=job_id, name="j", user="alice", uid=1234, gid=1234, partition="debug", state="RUNNING",
                  reason="None", submit_time=1.0, work_dir="/w", command="/w/s.sh", stdout="/w/o",
                  nodelist="node2", start_time=2.0)
    fields.update(extra)
    return JobRecord(**fields)


def test_squeue_users_by_name_or_uid_and_nodes_by_name():
    from sflow.views.squeue import squeue_main

    jobs = [_job(1), _job(2, user="bob", uid=99, nodelist="node[3-4]")]
    nodes = ["node1", "node2", "node3", "node4"]
    listing = lambda *argv: squeue_main(["-h", "-o", "%i", *argv], jobs, now=10.0, node_names=nodes)  # noqa: E731
    assert listing("-u", "1234")[0] == "1\n"
    assert listing("-u", "bob")[0] == "2\n"
    assert listing("-w", "node4")[0] == "2\n"
    assert listing("-w", "node[1-2]")[0] == "1\n"
    assert listing("-w", "node9") == ("", "squeue: error: Invalid node name node9\n", 1)
    assert listing("-S", "-i")[0] == "2\n1\n"


def test_sacct_refuses_operands():
    # SLURM 22.05: sacct -n foo bar names each unknown word and lists nothing.
    from sflow.views.sacct import sacct_main

    out, err, code = sacct_main(["-n", "-o", "JobID", "foo", "bar"], [], [], user="alice")
    assert (out, err, code) == ("", "sacct: error: Unknown arguments:\nsacct: error:  foo\nsacct: error:  bar\n", 1)


def test_squeue_partition_filter_and_priority_list_a_multi_partition_job_per_partition():
    # A pending job given -p a,b is in each of them: -p b finds it, -P lists it once per
    # partition, and sorting by priority ranks the partitions' priority tiers first.
    from sflow.views.squeue import squeue_main

    jobs = [_job(1, partition="a,b", state="PENDING", nodelist="", start_time=None, priority=5),
            _job(2, partition="b", priority=9)]
    listing = lambda *argv, **kw: squeue_main(["-h", "-o", "%i %P", *argv], jobs, now=10.0, **kw)  # noqa: E731
    assert listing("-p", "b", "-S", "i")[0] == "1 a,b\n2 b\n"
    assert listing("-p", "a")[0] == "1 a,b\n"
    assert listing("-P", "-S", "i")[0] == "1 a\n1 b\n2 b\n"
    assert listing("-P", "-p", "b", "-t", "PD")[0] == "1 b\n"
    assert listing("-P", "-t", "PD", "-S", "p,i", partition_tiers={"a": 1, "b": 2})[0] == "1 a\n1 b\n"
    assert listing("-P", "-t", "PD", "-S", "p,i", partition_tiers={"a": 2, "b": 1})[0] == "1 b\n1 a\n"
    assert listing("-P", "-S", "-p", partition_tiers={"a": 1, "b": 1})[0] == "2 b\n1 a\n1 b\n"


def test_squeue_sort_refuses_letters_it_cannot_sort_by_after_the_header():
    from sflow.views.squeue import squeue_main

    jobs = [_job(1), _job(2)]
    assert squeue_main(["-o", "%i", "-S", "i,Z"], jobs, now=10.0) == (
        "JOBID\n", "squeue: error: Invalid sort specification: Z\n", 1)
    assert squeue_main(["-h", "-o", "%i", "-S", "-ib"], jobs, now=10.0) == (
        "2\n1\n", "squeue: Invalid sort specification: b\n", 0)


@pytest.mark.parametrize("argv, env, message", [
    ([], {"SINFO_ALL": "", "SINFO_PARTITION": "debug"}, "SINFO_ALL and SINFO_PARTITION"),
    (["--help"], {"SINFO_ALL": "1", "SINFO_PARTITION": "x"}, "SINFO_ALL and SINFO_PARTITION"),
    (["-p", "debug", "-a"], {}, "-a and -p"),
    (["-a", "--hide", "-p", "debug"], {"SINFO_PARTITION": "debug"}, "-a and -p"),
])
def test_sinfo_refuses_all_with_partition(argv, env, message):
    from sflow.conf import load_file
    from sflow.views.sinfo import sinfo_main

    out, err, code = sinfo_main(argv, load_file(CONF), {}, env=env)
    assert (out, err, code) == (
        "", f"sinfo: error: Conflicting options, {message}, specified. Please choose one or the other.\n", 1)


def test_sacct_shows_a_held_job_when_named_and_an_eligible_pending_one_in_its_window():
    # SLURM 22.05: a held job is PENDING in sacct -j (Eligible Unknown) but in no time window;
    # a pending job that may start is in every window since it became eligible.
    from sflow.views.sacct import sacct_main

    pending = dict(state="PENDING", nodelist="", start_time=None, submit_time=100.0)
    jobs = [_job(1, reason="JobHeldUser", **pending), _job(2, reason="Resources", eligible_time=100.0, **pending),
            _job(3, partition="a,b", reason="JobHeldUser", **pending)]
    listing = lambda *argv: sacct_main(["-n", "-X", "-P", "-o", "JobID,State", *argv], jobs, [],  # noqa: E731
                                       now=200.0, user="alice")[0]
    assert sacct_main(["-j", "1", "-X", "-P", "-o", "JobID,State,Eligible,Reason"], jobs, [], now=200.0,
                      user="alice")[0] == "JobID|State|Eligible|Reason\n1|PENDING|Unknown|JobHeldUser\n"
    assert listing("-j", "1,2") == "1|PENDING\n2|PENDING\n"
    assert listing("-j", "1,2", "-s", "PD") == "2|PENDING\n"
    assert listing("-s", "PD") == listing() == "2|PENDING\n"
    assert listing("-j", "1,2,3", "-r", "a") == ""
    assert listing("-j", "1,2,3", "-r", "debug,x") == "1|PENDING\n2|PENDING\n"
