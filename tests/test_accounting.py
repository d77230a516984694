"""Usage accounting: memory and CPU measured per step, shown by sacct, sstat and seff."""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

from sflow.exec.usage import format_cpu, format_kb, frequency, parse_times
from sflow.records import JobRecord, StepRecord
from sflow.views.seff import report
from sflow.views.sstat import sstat_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = json.load(open(os.path.join(ROOT, "compat", "golden", "accounting.json")))
REF_CONF = os.path.join(ROOT, "compat", "golden", "ref-slurm.conf")

HOLD = ("import time\nb = bytearray({mb} * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
        "time.sleep({secs})\n")


def _runs(name):
    return GOLDEN["runs"][name]


def _column(text: str, field: str) -> list[str]:
    lines = text.splitlines()
    names = lines[0].split("|")
    return [line.split("|")[names.index(field)] for line in lines[1:]]


# ------------------------------------------------------------------ forms, against the recording


def test_memory_and_cpu_forms_match_the_recording():
    recorded = _runs("sacct-usage-parsable")[0]["stdout"]
    for field in ("MaxRSS", "AveRSS", "MaxVMSize"):
        values = _column(recorded, field)
        assert values[0] == ""  # the job's own line has no memory figures
        assert all(re.fullmatch(r"\d+K", v) for v in values[1:])
    for field in ("TotalCPU", "UserCPU", "SystemCPU"):
        assert all(re.fullmatch(r"\d\d:\d\d[.:]\d{2,3}", v) for v in _column(recorded, field))
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", v) for v in _column(recorded, "CPUTime"))
    assert format_kb(318244) == "318244K" and format_kb(0) == "0" and format_kb(2048) == "2M"
    assert format_cpu(3.001) == "00:03.001" and format_cpu(0.0) == "00:00.000"
    assert format_cpu(3725.5) == "01:02:05" and format_cpu(90061) == "1-01:01:01"


def test_gather_frequency_forms():
    assert frequency(None) == 30 and frequency("5") == 5 and frequency("task=2,energy=0") == 2
    assert frequency("0") == 0
    assert parse_times("0m0.000000s 0m0.000000s\n1m2.500000s 0m0.250000s\n") == (62.5, 0.25)


def _running_job(job_id=7):
    return JobRecord(job_id=job_id, name="j", user="u", uid=1, gid=1, partition="debug", state="RUNNING",
                     reason="None", submit_time=1.0, work_dir="/tmp", command="j", start_time=1.0,
                     nodelist="node1")


USED = {"max_rss": 213024, "cur_rss": 213024, "ave_rss": 213024, "max_vmsize": 218768, "cur_vmsize": 218768,
        "ave_vmsize": 218768, "max_rss_node": "node1", "max_vmsize_node": "node1", "user_cpu": 0.5, "sys_cpu": 0.1,
        "task_max_rss": [213024]}


def _sstat(argv):
    steps = [StepRecord(7, "batch", "batch", "RUNNING", 1.0, None, "node1"),
             StepRecord(7, "0", "python3", "RUNNING", 2.0, None, "node1")]
    done = _running_job(8)
    done.state = "COMPLETED"
    return sstat_main(argv, [_running_job(), done], steps, lambda step: USED)


def test_sstat_layout_matches_the_recording():
    recorded = _runs("sstat-running")
    out, err, code = _sstat(["-j", "7"])
    assert out.splitlines()[:2] == recorded[0]["stdout"].splitlines()[:2]
    assert [l.split()[0] for l in out.splitlines()[2:]] == ["7.0"]  # srun's steps only
    out, _, _ = _sstat(["-a", "-j", "7"])
    assert [l.split()[0] for l in out.splitlines()[2:]] == ["7.batch", "7.0"]
    out, _, _ = _sstat(["--format=JobID,MaxRSS,AveRSS,MaxVMSize,NTasks", "-j", "7"])
    assert out == re.sub(r"\d{6}\.0 ", "7.0      ", recorded[6]["stdout"])
    out, _, _ = _sstat(["-n", "-P", "-a", "-o", "jobid,maxrss", "-j", "7"])
    assert out == "7.batch|213024K\n7.0|213024K\n"
    assert _sstat(["-p", "-j", "7"])[0].splitlines()[0] == recorded[3]["stdout"].splitlines()[0]
    assert _sstat(["-o", "JobID,bogus", "-j", "7"])[1:] == (recorded[9]["stderr"], 1)


def test_sstat_errors_match_the_recording():
    finished, unknown, nothing, bad = _runs("sstat-errors")
    assert _sstat(["-j", "8"])[1] == re.sub(r"\d+$", "8", finished["stderr"].rstrip()) + "\n"
    assert _sstat(["-j", "999999"])[1] == unknown["stderr"]
    assert _sstat([])[1:] == (nothing["stderr"], nothing["exit_code"])
    assert _sstat(["-j", "abc"])[1:] == (bad["stderr"], bad["exit_code"])
    no_step = _runs("sstat-batch-only")[2]
    assert _sstat(["-j", "7.3"])[1] == re.sub(r"\d+\.0", "7.3", no_step["stderr"])


def test_seff_report_layout():
    job = _running_job()
    job.state, job.end_time, job.num_cpus, job.gid = "COMPLETED", 101.0, 2, 0
    steps = [StepRecord(7, "batch", "batch", "COMPLETED", 1.0, 101.0, "node1", extra={"usage": USED})]
    text = report(job, steps, "ref", "root", 200.0, node_memory_mb=4000)
    assert text == ("Job ID: 7\nCluster: ref\nUser/Group: u/root\nState: COMPLETED (exit code 0)\nCores: 2\n"
                    "CPU Utilized: 00:00:00\nCPU Efficiency: 0.30% of 00:03:20 core-walltime\n"
                    "Job Wall-clock time: 00:01:40\nMemory Utilized: 208.03 MB\n"
                    "Memory Efficiency: 5.20% of 3.91 GB (3.91 GB/node)\n")


# ------------------------------------------------------------------ measured, end to end


@pytest.fixture
def fast_cluster(cluster, tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text(open(REF_CONF).read() + "\nJobAcctGatherFrequency=1\n")
    cluster.env["SFLOW_CONF"] = str(conf)
    os.environ["SFLOW_CONF"] = str(conf)
    return cluster


def _shim(cluster, name, *argv):
    code = f"import sys; sys.argv[0] = {name!r}; from sflow.cli import shims; shims.{name}()"
    return cluster.run(sys.executable, "-c", code, *argv)


def _wait_done(cluster, job: str, timeout: float = 120) -> dict[str, dict[str, str]]:
    fields = "JobID,State,MaxRSS,AveRSS,MaxVMSize,TotalCPU,UserCPU,SystemCPU,CPUTime,Elapsed,AllocCPUS"
    until = time.time() + timeout
    while time.time() < until:
        out = cluster.run("sacct", "-P", "-j", job, "-o", fields).stdout
        rows = {r["JobID"]: r for r in (dict(zip(fields.split(","), line.split("|")))
                                        for line in out.splitlines()[1:])}
        if rows.get(job, {}).get("State") in ("COMPLETED", "FAILED", "CANCELLED"):
            return rows
        time.sleep(0.5)
    raise AssertionError(f"job {job} did not end: {out}")


def _kib(text: str) -> int:
    return int(text.rstrip("K"))


def test_memory_held_by_the_batch_step_and_an_srun_step(fast_cluster):
    script = (f"#!/bin/bash\npython3 -c '{HOLD.format(mb=300, secs=4)}'\n"
              f"srun python3 -c '{HOLD.format(mb=200, secs=4)}'\n")
    path = os.path.join(fast_cluster.work, "mem.sh")
    open(path, "w").write(script)
    job = fast_cluster.run("sbatch", "--parsable", "-o", "/dev/null", path).stdout.strip()
    rows = _wait_done(fast_cluster, job)
    assert rows[job]["MaxRSS"] == ""  # the job's line: CPU times only
    assert abs(_kib(rows[f"{job}.batch"]["MaxRSS"]) - 300 * 1024) <= 0.1 * 300 * 1024
    assert abs(_kib(rows[f"{job}.0"]["MaxRSS"]) - 200 * 1024) <= 0.1 * 200 * 1024
    assert _kib(rows[f"{job}.batch"]["MaxVMSize"]) >= _kib(rows[f"{job}.batch"]["MaxRSS"])
    seff = _shim(fast_cluster, "seff", job)
    assert seff.returncode == 0
    used = re.search(r"Memory Utilized: ([\d.]+) MB", seff.stdout)
    assert used and abs(float(used.group(1)) - 300) <= 30


def _seconds(text: str) -> float:
    if "." in text:
        minutes, seconds = text.split(":")
        return int(minutes) * 60 + float(seconds)
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s)


def test_cpu_times_of_a_busy_job(fast_cluster):
    busy = "python3 -c 'import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5: pass'"
    job = fast_cluster.run("sbatch", "--parsable", "-o", "/dev/null", "-c", "2",
                           f"--wrap={busy}; srun -n1 {busy}").stdout.strip()
    rows = _wait_done(fast_cluster, job)
    for row in (rows[job], rows[f"{job}.batch"], rows[f"{job}.0"]):
        total, user, system = (_seconds(row[f]) for f in ("TotalCPU", "UserCPU", "SystemCPU"))
        assert abs(total - (user + system)) <= 0.002
    assert _seconds(rows[f"{job}.0"]["TotalCPU"]) >= 1.4
    assert _seconds(rows[f"{job}.batch"]["TotalCPU"]) >= 1.4
    assert abs(_seconds(rows[job]["TotalCPU"]) - _seconds(rows[f"{job}.batch"]["TotalCPU"])
               - _seconds(rows[f"{job}.0"]["TotalCPU"])) <= 0.002
    for row in rows.values():
        assert _seconds(row["CPUTime"]) == _seconds(row["Elapsed"]) * int(row["AllocCPUS"])


def test_sstat_on_a_running_job(fast_cluster):
    path = os.path.join(fast_cluster.work, "hold.sh")
    open(path, "w").write(f"#!/bin/bash\nsrun python3 -c '{HOLD.format(mb=100, secs=30)}'\n")
    job = fast_cluster.run("sbatch", "--parsable", "-o", "/dev/null", path).stdout.strip()
    until, seen = time.time() + 60, ""
    while time.time() < until:
        seen = _shim(fast_cluster, "sstat", "-n", "-P", "-j", job, "-o", "JobID,MaxRSS,NTasks").stdout
        if seen and int(seen.split("|")[1].rstrip("K") or 0) > 90 * 1024:
            break
        time.sleep(0.5)
    assert seen.startswith(f"{job}.0|") and seen.strip().endswith("|1")
    # 100 MB held, plus the interpreter's own resident pages
    assert 100 * 1024 <= int(seen.split("|")[1].rstrip("K")) <= 125 * 1024
    fast_cluster.run("scancel", job)
