"""A started job's JobContext, from the queue's record, the request and the allocation."""

from __future__ import annotations

import time

from sflow.exec.env import JobContext


def export_text(request) -> str | None:
    """SLURM_EXPORT_ENV as sbatch sets it, or None when --export was left at its default."""
    export = request.export
    if export.text is not None:
        return export.text
    if export.mode == "ALL" and not export.names and not export.assignments:
        return None
    parts = [export.mode] if export.mode else []
    parts += list(export.names) + [f"{k}={v}" for k, v in export.assignments.items()]
    return ",".join(parts)


def job_context(job, request, alloc, cluster) -> JobContext:
    array = request.array
    indices = array.indices if array else None
    return JobContext(
        job_id=job.job_id, job_name=job.name, user=job.user, uid=job.uid, gid=job.gid,
        partition=job.partition, account=job.account or job.user, qos=job.qos or "normal",
        cluster_name=cluster.name, submit_dir=request.submit_dir, submit_host=request.submit_host,
        work_dir=request.work_dir,
        nodes=list(alloc.nodes), tasks_per_node=alloc.tasks_per_node,
        ntasks=request.ntasks, ntasks_given=request.ntasks_given, ntasks_per_node=request.ntasks_per_node,
        cpus_per_task=request.cpus_per_task, cpus_per_task_given=request.cpus_per_task_given,
        mem_per_node_mb=request.mem_per_node_mb, mem_per_cpu_mb=request.mem_per_cpu_mb,
        gpus=request.gpus, gpus_per_node=request.gpus_per_node, gpus_per_task=request.gpus_per_task,
        gpu_type=request.gpu_type, overcommit=request.overcommit,
        array_job_id=job.array_job_id, array_task_id=job.array_task_id,
        array_task_count=len(indices) if array else None,
        array_task_min=indices.min() if array else None,
        array_task_max=indices.max() if array else None,
        array_task_step=(indices.stride() or 1) if array else None,
        restart_count=job.restart_count, dependency=job.dependency if job.dependency != "(null)" else "",
        export=export_text(request), time_limit_minutes=job.time_limit, start_time=time.time(),
        conf_path=cluster.source or "", controller=controller_address(cluster),
        withheld_env=alloc.withheld_env,
    )


def controller_address(cluster) -> str:
    """``address:port`` of the cluster's first SlurmctldHost (its parenthesised address, else its
    name; this host when slurm.conf names none), as SLURM_WORKING_CLUSTER gives it."""
    host = cluster.controllers[0] if cluster.controllers else "127.0.0.1"
    name, _, address = host.partition("(")
    port = (cluster.config_value("SlurmctldPort") or "6817").split("-")[0]
    return f"{address.rstrip(')') or name}:{port}"
