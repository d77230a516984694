"""Job ids, the store's read API and its speed, durability of acknowledged submissions."""

from __future__ import annotations

import os
import stat

from sflow.queue import store
from sflow.records import JobRecord, StepRecord, job_row
from queue_harness import queue  # noqa: F401  (the fixture)


def test_ids_start_at_first_job_id_and_count_up(queue):
    ids = [queue.sbatch("--hold", "--wrap", "true") for _ in range(5)]
    assert ids == [100, 101, 102, 103, 104]
    assert [j.job_id for j in queue.jobs()] == ids
    job = queue.job(100)
    assert (job.state, job.reason, job.held, job.priority) == ("PENDING", "JobHeldUser", True, 0)
    assert job.partition == "debug" and job.time_limit == 60  # the partition's MaxTime when -t is absent


def test_submit_replies_as_sbatch_prints(queue):
    plain = queue.submit("--hold", "--wrap", "true")
    assert plain["stdout"] == f"Submitted batch job {plain['job_id']}\n" and plain["stderr"] == ""
    parsable = queue.submit("--hold", "--parsable", "--wrap", "true")
    assert parsable["stdout"] == f"{parsable['job_id']}\n"
    quiet = queue.submit("--hold", "-Q", "--parsable", "--wrap", "true")
    assert quiet["stdout"] == "" and quiet["ok"]
    bad = queue.submit("--bogus-option", "--wrap", "true")
    assert not bad["ok"] and bad["exit_code"] == 255
    assert bad["stderr"].startswith("sbatch: unrecognized option '--bogus-option'")
    nopart = queue.submit("-p", "nosuch", "--wrap", "true")
    assert nopart["stderr"] == ("sbatch: error: invalid partition specified: nosuch\n"
                                "sbatch: error: Batch job submission failed: Invalid partition name specified\n")
    assert nopart["exit_code"] == 1


def test_requests_that_never_fit_are_refused_as_slurm_refuses_them(queue):
    cases = {
        ("--mem=5000",): "sbatch: error: Memory specification can not be satisfied\n"
                         "sbatch: error: Batch job submission failed: Requested node configuration is not available\n",
        ("-c", "3"): "sbatch: error: CPU count per node can not be satisfied\n"
                     "sbatch: error: Batch job submission failed: Requested node configuration is not available\n",
        ("--gpus=5",): "sbatch: error: Batch job submission failed: Requested node configuration is not available\n",
        ("-w", "n9"): "sbatch: error: Batch job submission failed: Invalid node name specified\n",
    }
    for argv, message in cases.items():
        reply = queue.submit(*argv, "--wrap", "true")
        assert (reply["ok"], reply["stderr"], reply["exit_code"]) == (False, message, 1), argv
    # Too big for the partition but well formed: SLURM queues it, waiting forever.
    nodes = queue.sbatch("-N", "3", "--wrap", "true")
    cpus = queue.sbatch("-n", "5", "--wrap", "true")
    assert queue.wait_state(nodes, "PENDING").reason in ("PartitionNodeLimit",)
    queue.wait_for(lambda: queue.job(nodes).reason == "PartitionNodeLimit", what="reason")
    queue.wait_for(lambda: queue.job(cpus).reason == "PartitionConfig", what="reason")
    assert queue.job(cpus).num_nodes == 3  # as SLURM shows it: 5 CPUs over 2-CPU nodes


def test_test_only_tells_when_and_where_and_spends_an_id(queue):
    reply = queue.submit("--test-only", "-n", "3", "--wrap", "true")
    assert reply["ok"] and reply["stdout"] == ""
    assert reply["stderr"].startswith("sbatch: Job 100 to start at ")
    assert reply["stderr"].endswith(" using 3 processors on nodes n[1-2] in partition debug\n")
    never = queue.submit("--test-only", "-N", "3", "--wrap", "true")
    assert (never["ok"], never["stderr"], never["exit_code"]) == (
        False, "allocation failure: Requested node configuration is not available\n", 1)
    assert queue.sbatch("--hold", "--wrap", "true") == 102
    assert [j.job_id for j in queue.jobs()] == [102]


def test_acknowledged_submission_survives_kill_9(queue):
    job_id = queue.sbatch("--hold", "-J", "durable", "--wrap", "true")
    queue.kill_controller()
    # Nothing running: the database on disk alone has it.
    assert queue.job(job_id).name == "durable"
    assert queue.sbatch("--hold", "--wrap", "true") == job_id + 1  # and the next id is not reused


def test_state_files_are_private(queue):
    queue.sbatch("--hold", "--wrap", "true")
    for name in ("sflow.db", "ctl.sock", "ctl.lock"):
        mode = stat.S_IMODE(os.stat(os.path.join(queue.home, name)).st_mode)
        assert mode & 0o077 == 0, (name, oct(mode))
    script = os.path.join(queue.home, "jobs", "100.script")
    assert stat.S_IMODE(os.stat(script).st_mode) & 0o077 == 0
    with open(script) as handle:
        assert handle.read() == "#!/bin/sh\n# This script was created by sbatch --wrap.\n\ntrue\n"
    # A job that never started has its script kept and no directory: one file made per submission.
    assert not os.path.exists(os.path.join(queue.home, "jobs", "100"))


def _record(i: int) -> JobRecord:
    return JobRecord(job_id=i, name=f"job{i}", user="alice", uid=1000, gid=1000, partition="debug",
                     state="COMPLETED" if i % 3 else "PENDING", reason="None", submit_time=1.7e9 + i,
                     work_dir="/home/alice/project", command="/home/alice/project/run.sh",
                     array_job_id=i - i % 10 if i % 7 == 0 else None, time_limit=60, nodelist="n[1-2]",
                     requeue=bool(i % 2), held=False, exit_code=i % 4)


def test_read_jobs_is_faithful_over_ten_thousand_jobs(tmp_path):
    # Its speed is benchmarks/bench_queue.py's business (squeue with 10,000 jobs), not a timed test's.
    conn = store.open_db(str(tmp_path))
    conn.execute("BEGIN")
    records = [_record(i) for i in range(1, 10_001)]
    for rec in records:
        store.insert_job(conn, rec)
        store.save_request(conn, rec.job_id, '{"x": "' + "y" * 4000 + '"}')
    conn.execute("COMMIT")
    assert store.read_jobs(str(tmp_path)) == records
    assert store.read_jobs(conn, "state = ?", ("PENDING",)) == [r for r in records if r.state == "PENDING"]
    assert [r.job_id for r in store.read_jobs(conn, job_ids=[70])] == [70, 77]  # an array id names its tasks
    assert isinstance(store.read_jobs(conn)[1].requeue, bool)


def test_job_rows_are_the_records_values_and_a_changed_job_is_read_afresh(tmp_path, monkeypatch):
    # Rows of a long read are kept by their packed bytes and reused: a job written since is read anew.
    monkeypatch.setattr(store, "ROWS_KEPT", (2, 100))
    conn = store.open_db(str(tmp_path))
    conn.execute("BEGIN")
    records = [_record(i) for i in range(1, 31)]
    for rec in records:
        store.insert_job(conn, rec)
    conn.execute("COMMIT")
    assert store.read_job_rows(conn) == [job_row(rec) for rec in records]
    assert store.read_job_rows(conn, job_ids=[70]) == []
    records[4].state, records[4].end_time = "CANCELLED", 1.8e9
    conn.execute("BEGIN")
    store.update_job(conn, records[4])
    conn.execute("COMMIT")
    assert store.read_job_rows(conn) == [job_row(rec) for rec in records]
    assert store.read_job_rows(conn, "state = ?", ("CANCELLED",)) == [job_row(records[4])]
    store.set_meta(conn, "layout", "an,older,layout")  # rows from the columns then, the same values
    assert store.read_job_rows(conn) == [job_row(rec) for rec in records]


def test_reads_fall_back_to_columns_when_the_layout_changed(tmp_path):
    conn = store.open_db(str(tmp_path))
    conn.execute("BEGIN")
    store.insert_job(conn, _record(7))
    store.set_meta(conn, "layout", "an,older,layout")
    conn.execute("COMMIT")
    assert store.read_jobs(str(tmp_path)) == [_record(7)]
    store.open_db(str(tmp_path))  # the controller repacks on open
    assert store.get_meta(conn, "layout") == store.LAYOUT
    assert store.read_jobs(str(tmp_path)) == [_record(7)]


def test_steps_round_trip_and_missing_database(tmp_path):
    assert store.read_jobs(str(tmp_path / "nothing")) == []
    assert store.read_steps(str(tmp_path / "nothing")) == []
    conn = store.open_db(str(tmp_path))
    step = StepRecord(5, "0", "hostname", "COMPLETED", 1.0, 2.0, "n1", 1, 2, 2, 0, 0, {"tres": "cpu=2"})
    conn.execute("BEGIN")
    store.save_step(conn, step)
    store.save_step(conn, StepRecord(6, "batch", "batch", "FAILED", 1.0, 3.0, "n2", exit_code=3))
    conn.execute("COMMIT")
    assert store.read_steps(str(tmp_path), [5]) == [step]
    assert [s.step_id for s in store.read_steps(conn)] == ["0", "batch"]
    odd = StepRecord(7, "0", b"n\xff".decode("utf-8", "surrogateescape"), "COMPLETED", nodelist="n1")
    conn.execute("BEGIN")
    store.save_step(conn, odd)  # a name not UTF-8: kept as its bytes, read back as the same str
    conn.execute("COMMIT")
    assert store.read_steps(conn, [7]) == [odd] and store.read_steps(conn, [7], usage=False) == [odd]


def test_a_store_an_older_controller_holds_reads_with_defaults(queue):
    # An upgrade while the old controller runs: its store lacks the newer fields, and its packed
    # records another layout; the read-only commands still answer.
    import sqlite3

    job_id = queue.sbatch("--hold", "--wrap", "true")
    queue.call("shutdown")
    conn = sqlite3.connect(os.path.join(queue.home, "sflow.db"), isolation_level=None)
    conn.execute("ALTER TABLE jobs DROP COLUMN deadline")
    conn.execute("UPDATE meta SET value = 'older' WHERE key = 'layout'")
    conn.close()
    [job] = store.read_jobs(queue.home)
    assert (job.job_id, job.state, job.deadline) == (job_id, "PENDING", None)


def test_the_controller_takes_the_scripts_text_and_opens_no_file(queue):
    reply = queue.call("submit", argv=["--hold", "not-on-this-disk.sh"], env=queue.env, cwd=queue.work,
                       script="#!/bin/sh\n#SBATCH -J sent\ntrue\n", user="u", uid=os.getuid(), gid=os.getgid(),
                       host="qhost")
    assert reply["ok"], reply
    job = queue.job(reply["job_id"])
    assert (job.name, job.command) == ("sent", os.path.join(queue.work, "not-on-this-disk.sh"))


def test_the_controller_answers_a_submission_with_data_not_text(queue):
    refused = queue.call("submit", argv=["-p", "nosuch", "--wrap", "true"], env=queue.env, cwd=queue.work,
                         user="u", uid=os.getuid(), gid=os.getgid(), host="qhost")
    assert "stderr" not in refused and "stdout" not in refused
    assert (refused["ok"], refused["error"]["kind"], refused["error"]["exit_code"]) == (False, "slurm", 1)
    accepted = queue.call("submit", argv=["--hold", "--parsable", "--mail-type=END", "--wrap", "true"],
                          env=queue.env, cwd=queue.work, user="u", uid=os.getuid(), gid=os.getgid(), host="qhost")
    assert "stderr" not in accepted and "stdout" not in accepted
    assert (accepted["ok"], accepted["parsable"], accepted["quiet"]) == (True, True, False)
    assert accepted["warnings"] == ["--mail-type is accepted and ignored: sflow sends no mail"]
