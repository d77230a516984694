"""The read-only commands' Reader: records from the store, older stores tolerated, one
connection per ``with`` block."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from sflow.queue import health, store
from sflow.queue.reader import Reader
from sflow.records import AllocatedNode, JobRecord, StepRecord, job_row
from sflow.slurm.indexset import IndexSet


def _record(job_id: int, **fields) -> JobRecord:
    values = dict(name=f"job{job_id}", user="alice", uid=1000, gid=1000, partition="debug", state="PENDING",
                  reason="None", submit_time=1.7e9 + job_id, work_dir="/tmp", command="/tmp/run.sh")
    return JobRecord(job_id=job_id, **{**values, **fields})


NODE = AllocatedNode("node1", 2, 100, (0, 1))


@pytest.fixture
def home(tmp_path):
    """A store with an array (pending remainder 10, task 11 running), a finished Mithril job and steps."""
    conn = store.open_db(str(tmp_path))
    conn.execute("BEGIN")
    store.insert_job(conn, _record(10, array_job_id=10, array_task_str="1-3"),
                     pending_indices=json.dumps(IndexSet.of([1, 2, 3]).to_json()))
    store.insert_job(conn, _record(11, array_job_id=10, array_task_id=0, state="RUNNING"),
                     alloc=json.dumps({"job_id": 11, "nodes": [NODE.to_json()]}))
    store.insert_job(conn, _record(12, state="COMPLETED", backend="mithril"),
                     alloc=json.dumps({"job_id": 12, "nodes": [NODE.to_json()]}))  # finished: holds nothing
    store.save_request(conn, 10, '{"array": "request"}')
    store.save_request(conn, 12, '{"own": "request"}')
    store.save_step(conn, StepRecord(11, "batch", "batch", "RUNNING"))
    store.save_step(conn, StepRecord(12, "0", "hostname", "COMPLETED"))
    conn.execute("COMMIT")
    conn.close()
    return str(tmp_path)


def test_jobs_by_array_state_and_backend(home):
    reader = Reader(home)
    assert [j.job_id for j in reader.jobs()] == [10, 11, 12]
    assert [j.job_id for j in reader.jobs(ids=[10])] == [10, 11]  # an array's id names its tasks
    assert [j.job_id for j in reader.jobs(states=["RUNNING"])] == [11]
    assert [j.job_id for j in reader.jobs(backend="mithril")] == [12]


def test_one_job_by_its_own_id(home):
    reader = Reader(home)
    assert reader.job(11).array_task_id == 0
    assert reader.job(99) is None


def test_steps(home):
    assert [(s.job_id, s.step_id) for s in Reader(home).steps()] == [(11, "batch"), (12, "0")]
    assert [s.step_id for s in Reader(home).steps([12])] == ["0"]


def test_pending_indices_of_an_array_and_of_anything_else(home):
    reader = Reader(home)
    assert list(reader.pending_indices(10)) == [1, 2, 3]
    assert reader.pending_indices(11) == IndexSet() and reader.pending_indices(99) == IndexSet()


def test_allocated_nodes_are_the_running_jobs(home):
    assert Reader(home).allocated_nodes() == [NODE]


def test_an_array_task_has_its_arrays_request(home):
    reader = Reader(home)
    assert reader.request_json(11) == '{"array": "request"}'
    assert reader.request_json(12) == '{"own": "request"}'
    assert reader.request_json(99) is None


def test_no_store_yet_reads_as_nothing(tmp_path):
    reader = Reader(str(tmp_path))
    assert (reader.jobs(), reader.job(1), reader.steps(), reader.allocated_nodes()) == ([], None, [], [])
    assert reader.pending_indices(1) == IndexSet() and reader.request_json(1) is None


def test_a_store_older_than_the_controller_columns_reads_as_empty(home):
    # An upgrade while the old controller runs: its store may lack the columns squeue -r and sinfo read.
    conn = sqlite3.connect(os.path.join(home, "sflow.db"), isolation_level=None)
    conn.execute("ALTER TABLE jobs DROP COLUMN pending_indices")
    conn.execute("ALTER TABLE jobs DROP COLUMN alloc")
    conn.close()
    reader = Reader(home)
    assert reader.pending_indices(10) == IndexSet() and reader.allocated_nodes() == []
    assert [j.job_id for j in reader.jobs()] == [10, 11, 12]


def test_a_with_block_reads_through_one_connection(home, monkeypatch):
    opened = []
    real = store.reader
    monkeypatch.setattr(store, "reader", lambda path: opened.append(path) or real(path))
    reader = Reader(home)
    with reader:
        reader.jobs()
        for job_id in (10, 11, 12):
            reader.pending_indices(job_id)
        with reader:
            reader.steps()
    assert opened == [home]
    reader.jobs()
    reader.jobs()
    assert opened == [home] * 3  # outside a block each answer opens (and closes) its own


def test_a_block_that_reads_nothing_opens_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "reader", lambda path: pytest.fail("opened"))
    with Reader(str(tmp_path)):
        pass


def test_a_damaged_store_is_named(home):
    with open(os.path.join(home, "sflow.db"), "r+b") as handle:
        handle.write(b"not a database, not at all" * 10)
    for path in os.listdir(home):
        if path.startswith("sflow.db-"):
            os.unlink(os.path.join(home, path))
    os.makedirs(os.path.join(home, "jobs", "10"))  # jobs were queued here
    with pytest.raises(health.StoreDamaged):
        Reader(home).jobs()


def test_jobs_ended_since_leaves_out_only_the_jobs_that_ended_before(home):
    conn = store.open_db(home)
    conn.execute("BEGIN")
    store.insert_job(conn, _record(13, state="COMPLETED", end_time=500.0))
    store.insert_job(conn, _record(14, state="COMPLETED", end_time=1500.0))
    conn.execute("COMMIT")
    conn.close()
    assert [j.job_id for j in Reader(home).jobs(ended_since=1000.0)] == [10, 11, 12, 14]
    assert Reader(home).job_rows(ended_since=1000.0) == [job_row(j) for j in Reader(home).jobs(ended_since=1000.0)]
    assert Reader(home).job_rows(ids=[10]) == [job_row(j) for j in Reader(home).jobs(ids=[10])]


def test_steps_without_usage_keep_who_cancelled_them(home):
    conn = store.open_db(home)
    conn.execute("BEGIN")
    store.save_step(conn, StepRecord(12, "batch", "batch", "CANCELLED", extra={"cancelled_by": 7, "usage": {"max_rss": 1}}))
    conn.execute("COMMIT")
    conn.close()
    steps = {s.step_id: s for s in Reader(home).steps([12], usage=False)}
    assert steps["batch"].extra == {"cancelled_by": 7} and steps["0"].extra == {}
    assert {s.step_id: s for s in Reader(home).steps([12])}["batch"].extra["usage"] == {"max_rss": 1}


def test_steps_of_many_jobs_are_only_theirs(home):
    many = [11] + list(range(1000, 1000 + store.IDS_AS_RANGE))  # read as a range, then picked
    assert [(s.job_id, s.step_id) for s in Reader(home).steps(many)] == [(11, "batch")]
    assert [(s.job_id, s.step_id) for s in Reader(home).steps([11, 13])] == [(11, "batch")]
