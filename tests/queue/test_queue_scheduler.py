"""The scheduling pass on its own: order, backfill, placement and SLURM's pending reasons.

Pure: jobs are built from real sbatch command lines, the cluster from
slurm.conf text; nothing runs.
"""

from __future__ import annotations

import math
import time

import pytest

from sflow.backends.local import LocalBackend, Need
from sflow.conf import load_file
from sflow.queue import deps
from sflow.queue.jobs import Job, base_priority
from sflow.queue.scheduler import Scheduler
from sflow.records import INFINITE, JobRecord
from sflow.slurm.request import parse_sbatch

NOW = float(int(time.time()))
CONF = """\
ClusterName=unit
NodeName=n[1-4] CPUs=2 RealMemory=4000 Gres=gpu:8
NodeName=big CPUs=8 RealMemory=16000 Features=fat
PartitionName=debug Nodes=n[1-4] Default=YES MaxTime=120
PartitionName=fat Nodes=big MaxTime=INFINITE
PartitionName=down Nodes=n1 State=DOWN
"""


class NoJobs(deps.Lookup):
    def __init__(self, targets=None, arrays=None):
        self.targets = targets or {}
        self.arrays = arrays or {}

    def job(self, job_id):
        return self.targets.get(job_id)

    def array(self, array_job_id):
        return self.arrays.get(array_job_id)

    def task(self, array_job_id, index):
        tasks = self.arrays.get(array_job_id)
        return tasks[index] if tasks and index < len(tasks) else None

    def singleton_blocked(self, name, user, job_id, seq):
        return False


@pytest.fixture
def world(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text(CONF)
    cluster = load_file(str(conf))
    backend = LocalBackend(cluster, str(tmp_path))
    return cluster, backend, Scheduler(cluster, backend)


def make(cluster, job_id: int, *argv: str, state: str = "PENDING", start: float | None = None) -> Job:
    sub = parse_sbatch([*argv, "--wrap", "true"], env={}, cwd="/tmp", user="u", uid=1, gid=1, host="h",
                       cluster=cluster)
    request = sub.request
    partition = cluster.partition(request.partition)
    limit = request.time_limit or partition.default_time or partition.max_time or INFINITE
    rec = JobRecord(job_id=job_id, name="j", user="u", uid=1, gid=1, partition=partition.name, state=state,
                    reason="None", submit_time=NOW, work_dir="/tmp", command="(null)", time_limit=limit,
                    priority=0 if request.hold else base_priority(job_id, request.nice), held=request.hold,
                    start_time=start)
    job = Job(rec=rec, seq=job_id, request=request, need=Need.of(request), begin_time=request.begin)
    if request.array is not None:
        rec.array_job_id = job_id
        rec.array_max_tasks = request.array.throttle
        job.pending_indices = list(request.array.indices)
    return job


def running(backend, job: Job, start: float) -> Job:
    job.rec.state, job.rec.start_time = "RUNNING", start
    partition_name = job.rec.partition
    job.alloc = backend.place(job.job_id, job.need, backend.cluster.partition(partition_name), backend.usage)
    assert job.alloc is not None
    backend.restore(job.alloc)
    return job


def started(plan) -> list[int]:
    return [job.job_id for job, _, _ in plan.starts]


def test_fifo_first_blocked_waits_for_resources_the_rest_for_priority(world):
    cluster, backend, scheduler = world
    big = running(backend, make(cluster, 1, "-n", "8", "-t", "10"), NOW - 60)
    pending = [make(cluster, i, "-n", "1", "-t", "60") for i in (2, 3, 4)]
    plan = scheduler.plan(NOW, pending, [big], NoJobs())
    assert started(plan) == []
    assert [plan.reasons[i] for i in (2, 3, 4)] == ["Resources", "Priority", "Priority"]
    assert plan.expected[2] == NOW - 60 + 600  # when the running job's limit frees its CPUs


def test_backfill_starts_a_short_job_that_does_not_delay_the_first(world):
    cluster, backend, scheduler = world
    half = running(backend, make(cluster, 1, "-n", "6", "-t", "30"), NOW)  # 2 CPUs left free
    wide = make(cluster, 2, "-n", "8", "-t", "10")  # needs everything, in 30 minutes
    short = make(cluster, 3, "-n", "2", "-t", "20")  # ends before that: may go now
    long = make(cluster, 4, "-n", "2", "-t", "40")  # would delay job 2: must wait
    plan = scheduler.plan(NOW, [wide, short, long], [half], NoJobs())
    assert started(plan) == [3]
    assert plan.reasons == {2: "Resources", 4: "Priority"}
    assert plan.expected[2] == NOW + 30 * 60


def test_nice_and_priority_order_the_queue(world):
    cluster, backend, scheduler = world
    hog = running(backend, make(cluster, 1, "-n", "7", "-t", "10"), NOW)
    first = make(cluster, 2, "-t", "60", "--nice=100")
    second = make(cluster, 3, "-t", "60")
    assert first.rec.priority < second.rec.priority
    plan = scheduler.plan(NOW, [first, second], [hog], NoJobs())
    assert started(plan) == [3]  # one CPU free: the nicer job yields it


def test_placement_packs_nodes_in_order_and_follows_nodelist_exclude(world):
    cluster, backend, scheduler = world
    jobs = [make(cluster, 1), make(cluster, 2), make(cluster, 3), make(cluster, 4, "-w", "n4"),
            make(cluster, 5, "-x", "n2,n3", "-n", "2"), make(cluster, 6, "--exclusive")]
    plan = scheduler.plan(NOW, jobs, [], NoJobs())
    where = {job.job_id: alloc.nodelist for job, _, alloc in plan.starts}
    assert where == {1: "n1", 2: "n1", 3: "n2", 4: "n4", 6: "n3"}
    assert plan.reasons[5] == "Resources"  # n1 full, n4 has one CPU left
    cpus = {job.job_id: alloc.num_cpus for job, _, alloc in plan.starts}
    assert cpus[6] == 2  # --exclusive takes the whole node


def test_tasks_spread_by_slurm_block_rules(world):
    cluster, backend, _ = world
    partition = cluster.partition("debug")
    usage = backend.usage.copy()
    alloc = backend.place(1, make(cluster, 1, "-N", "2", "-n", "3").need, partition, usage)
    assert (alloc.nodelist, alloc.tasks_per_node, alloc.num_cpus) == ("n[1-2]", [2, 1], 3)
    alloc = backend.place(2, make(cluster, 2, "-n", "2", "-c", "2").need, partition, usage)
    assert (alloc.nodelist, alloc.tasks_per_node, alloc.num_cpus) == ("n[1-2]", [1, 1], 4)
    alloc = backend.place(3, make(cluster, 3, "--ntasks-per-node=1", "-n", "3").need, partition, usage)
    assert (alloc.nodelist, alloc.tasks_per_node) == ("n[1-3]", [1, 1, 1])


def test_gpus_are_counted_per_node_and_indices_handed_out(world):
    cluster, backend, scheduler = world
    one = make(cluster, 1, "--gpus-per-node=3")
    two = make(cluster, 2, "--gres=gpu:6")
    three = make(cluster, 3, "--gpus=9")
    plan = scheduler.plan(NOW, [one, two, three], [], NoJobs())
    gpus = {job.job_id: [(n.name, n.gpu_indices) for n in alloc.nodes] for job, _, alloc in plan.starts}
    assert gpus[1] == [("n1", (0, 1, 2))]
    assert gpus[2] == [("n2", (0, 1, 2, 3, 4, 5))]
    assert gpus[3] == [("n1", (3, 4, 5, 6, 7)), ("n2", (6, 7)), ("n3", (0, 1))]


def test_memory_counts_only_when_asked_for(world):
    cluster, backend, scheduler = world
    jobs = [make(cluster, 1, "--mem=3000", "-w", "n1"), make(cluster, 2, "--mem=2000", "-w", "n1"),
            make(cluster, 3, "-w", "n1")]
    plan = scheduler.plan(NOW, jobs, [], NoJobs())
    assert started(plan) == [1, 3]
    assert plan.reasons[2] == "Resources"


def test_every_gate_reason(world):
    cluster, backend, scheduler = world
    never = make(cluster, 9, "-t", "5")
    never.rec.state, never.rec.end_time = "FAILED", NOW
    lookup = NoJobs({9: deps.Target("FAILED", exit_code=1, end_time=NOW),
                     8: deps.Target("RUNNING", start_time=NOW)})
    jobs = {
        "JobHeldUser": make(cluster, 1, "--hold"),
        "Dependency": make(cluster, 2, "-d", "afterok:8"),
        "DependencyNeverSatisfied": make(cluster, 3, "-d", "afterok:9"),
        "BeginTime": make(cluster, 4, "--begin=now+3600"),
        "PartitionTimeLimit": make(cluster, 5, "-t", "500"),
        "PartitionDown": make(cluster, 6, "-p", "down"),
        "JobArrayTaskLimit": make(cluster, 7, "--array=0-5%1"),
    }
    throttled = jobs["JobArrayTaskLimit"]
    task = make(cluster, 70, state="RUNNING")
    task.rec.array_job_id = 7
    task.alloc = None
    plan = scheduler.plan(NOW, list(jobs.values()), [task], lookup)
    assert {reason: plan.reasons.get(job.job_id) for reason, job in jobs.items()} == {r: r for r in jobs}
    assert plan.dependency_text[2] == "afterok:8(unfulfilled)"
    assert plan.dependency_text[3] == "afterok:9(failed)"
    assert plan.wake_at == pytest.approx(jobs["BeginTime"].begin_time)
    assert throttled.rec.job_id not in started(plan)


def test_kill_on_invalid_dependency_cancels(world):
    cluster, _, scheduler = world
    lookup = NoJobs({9: deps.Target("COMPLETED", end_time=NOW)})
    doomed = make(cluster, 1, "-d", "afternotok:9", "--kill-on-invalid-dep=yes")
    patient = make(cluster, 2, "-d", "afternotok:9")
    plan = scheduler.plan(NOW, [doomed, patient], [], lookup)
    assert [j.job_id for j in plan.cancels] == [1]
    assert plan.reasons[2] == "DependencyNeverSatisfied"


def test_array_tasks_start_in_index_order_up_to_the_throttle(world):
    cluster, _, scheduler = world
    array = make(cluster, 1, "--array=3,5,7-9%3")
    plan = scheduler.plan(NOW, [array], [], NoJobs())
    assert [index for _, index, _ in plan.starts] == [3, 5, 7]
    assert plan.reasons[1] == "JobArrayTaskLimit"


def test_unlimited_jobs_cannot_be_planned_around(world):
    cluster, backend, scheduler = world
    forever = running(backend, make(cluster, 1, "-n", "7", "-p", "debug"), NOW)
    forever.rec.time_limit = INFINITE
    wide = make(cluster, 2, "-n", "8")
    small = make(cluster, 3, "-n", "1")
    plan = scheduler.plan(NOW, [wide, small], [forever], NoJobs())
    # No end in sight for the running job: no reservation, so the small job may go (as SLURM's backfill).
    assert started(plan) == [3]
    assert plan.reasons[2] == "Resources" and 2 not in plan.expected
    assert math.isinf(scheduler.plan(NOW, [], [forever], NoJobs()).wake_at)


def _listed(job: Job) -> Job:
    job.rec.partition = job.request.partition  # kept as given while it waits, as submit stores it
    return job


def test_several_partitions_start_in_the_first_that_can_run_the_job(world):
    cluster, backend, scheduler = world
    fits_first = _listed(make(cluster, 1, "-p", "fat,debug", "-n", "4", "-t", "10"))
    only_second = _listed(make(cluster, 2, "-p", "debug,fat", "-n", "8", "-N", "1", "-t", "10"))
    plan = scheduler.plan(NOW, [fits_first, only_second], [], NoJobs())
    assert started(plan) == [1]  # the fat node is taken: job 2 fits nowhere else
    assert plan.partitions == {(1, None): "fat"}
    held_down = _listed(make(cluster, 3, "-p", "down,debug", "-t", "10"))
    plan = scheduler.plan(NOW, [held_down], [], NoJobs())
    assert plan.partitions == {(3, None): "debug"}  # a down partition of its list is passed over
    only_down = _listed(make(cluster, 4, "-p", "down"))
    assert scheduler.plan(NOW, [only_down], [], NoJobs()).reasons == {4: "PartitionDown"}


def test_several_partitions_are_tried_by_priority_tier_then_as_given(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text(CONF + "PartitionName=urgent Nodes=n4 PriorityTier=5\n")
    cluster = load_file(str(conf))
    scheduler = Scheduler(cluster, LocalBackend(cluster, str(tmp_path)))
    assert [p.name for p in cluster.partitions_for("debug,fat,urgent")] == ["urgent", "debug", "fat"]
    job = _listed(make(cluster, 1, "-p", "debug,urgent", "-t", "10"))
    plan = scheduler.plan(NOW, [job], [], NoJobs())
    assert plan.partitions == {(1, None): "urgent"}
    assert plan.starts[0][2].nodelist == "n4"
