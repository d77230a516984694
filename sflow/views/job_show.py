"""``scontrol show job``: SLURM's keys, order and line breaks, one job or all."""

from __future__ import annotations

import time

from sflow.records import INFINITE, JobRecord
from sflow.slurm.display import format_memory_mb
from sflow.slurm.values import expand_hostlist, format_timelimit_scontrol
from sflow.views.fmt import array_text, group_name, iso_time

# Keys per printed line, as scontrol 22.05 groups them.
LINES = [
    ["JobId", "JobName"],
    ["UserId", "GroupId", "MCS_label"],
    ["Priority", "Nice", "Account", "QOS"],
    ["JobState", "Reason", "Dependency"],
    ["Requeue", "Restarts", "BatchFlag", "Reboot", "ExitCode"],
    ["RunTime", "TimeLimit", "TimeMin"],
    ["SubmitTime", "EligibleTime"],
    ["AccrueTime"],
    ["StartTime", "EndTime", "Deadline"],
    ["SuspendTime", "SecsPreSuspend", "LastSchedEval", "Scheduler"],
    ["Partition", "AllocNode:Sid"],
    ["ReqNodeList", "ExcNodeList"],
    ["NodeList"],
    ["BatchHost"],
    ["NumNodes", "NumCPUs", "NumTasks", "CPUs/Task", "ReqB:S:C:T"],
    ["TRES"],
    ["Socks/Node", "NtasksPerN:B:S:C", "CoreSpec"],
    ["MinCPUsNode", "MinMemoryNode", "MinTmpDiskNode"],
    ["Features", "DelayBoot"],
    ["OverSubscribe", "Contiguous", "Licenses", "Network"],
    ["Command"],
    ["WorkDir"],
    ["Comment"],
    ["StdErr"],
    ["StdIn"],
    ["StdOut"],
    ["Power"],
]


def _tres(job: JobRecord, node_memory_mb: int | None) -> str:
    """The job's trackable resources; a pending job's count the memory it would get per node
    (a requeued one still shows what its last run was given), or per GPU with --mem-per-gpu."""
    mem = ""
    if job.state == "PENDING" and not job.restart_count:
        per_gpu = _tres_per(job).get("MemPerTres", "").rpartition(":")[2]
        if per_gpu.isdecimal() and job.tres_gpus:
            mem = f"mem={format_memory_mb(int(per_gpu) * job.tres_gpus)},"
        else:
            per_node = job.min_memory_mb or node_memory_mb
            if per_node:
                mem = f"mem={format_memory_mb(per_node * job.num_nodes)},"
    gpus = f",gres/gpu={job.tres_gpus}" if job.tres_gpus else ""
    return f"cpu={job.num_cpus},{mem}node={job.num_nodes},billing={job.num_cpus}{gpus}"


def _tres_per(job: JobRecord) -> dict[str, str]:
    """CpusPerTres=... TresPerTask=... as the job was submitted (TresPerNode alone for older records)."""
    if job.tres_per:
        return dict(line.split("=", 1) for line in job.tres_per.split("\n"))
    return {"TresPerNode": job.gres} if job.gres else {}


def job_fields(job: JobRecord, now: float, host: str = "localhost",
               node_memory_mb: int | None = None) -> dict[str, str]:
    running = job.state not in ("PENDING",)
    used = int(((job.end_time or now) - job.start_time)) if running and job.start_time else 0
    days, rest = divmod(used, 86400)
    hours, rest = divmod(rest, 3600)
    run_time = (f"{days}-" if days else "") + f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    end = job.end_time
    if end is None and job.start_time and job.time_limit not in (None, INFINITE):
        end = job.start_time + job.time_limit * 60
    fields = {
        "JobId": str(job.job_id),
        "ArrayJobId": str(job.array_job_id) if job.array_job_id is not None else None,
        "ArrayTaskId": (str(job.array_task_id) if job.array_task_id is not None else array_text(job.array_task_str))
        if job.array_job_id is not None else None,
        "ArrayTaskThrottle": str(job.array_max_tasks) if job.array_max_tasks else None,
        "JobName": job.name,
        "UserId": f"{job.user}({job.uid})",
        "GroupId": f"{group_name(job.gid)}({job.gid})",
        "MCS_label": "N/A",
        "Priority": str(job.priority),
        "Nice": "0",
        "Account": job.account,
        "QOS": job.qos,
        "JobState": job.state,
        "Reason": job.reason,
        "Dependency": job.dependency or "(null)",
        "Requeue": "1" if job.requeue else "0",
        "Restarts": str(job.restart_count),
        "BatchFlag": "1",
        "Reboot": "0",
        "ExitCode": f"{job.exit_code}:{job.exit_signal}",
        "RunTime": run_time,
        "TimeLimit": format_timelimit_scontrol(job.time_limit),
        "TimeMin": format_timelimit_scontrol(job.time_min) if job.time_min else "N/A",
        "SubmitTime": iso_time(job.submit_time),
        "EligibleTime": iso_time(job.eligible_time),
        "AccrueTime": iso_time(job.eligible_time),
        # A pending job waiting for its begin time is expected to start then.
        "StartTime": iso_time(job.start_time if running else
                          job.eligible_time if job.eligible_time and job.eligible_time > now else None),
        "EndTime": iso_time(end if running else None),
        "Deadline": iso_time(job.deadline, "N/A"),
        "SuspendTime": "None",
        "SecsPreSuspend": "0",
        "LastSchedEval": iso_time(job.start_time or job.submit_time),
        "Scheduler": "Main",
        "Partition": job.partition,
        "AllocNode:Sid": f"{host}:0",
        "ReqNodeList": "(null)",
        "ExcNodeList": "(null)",
        "NodeList": job.nodelist if running else "",
        "BatchHost": expand_hostlist(job.nodelist)[0] if running and job.nodelist else None,
        "NumNodes": str(job.num_nodes),
        "NumCPUs": str(job.num_cpus),
        "NumTasks": str(job.num_tasks),
        "CPUs/Task": str(job.cpus_per_task),
        "ReqB:S:C:T": "0:0:*:*",
        "TRES": _tres(job, node_memory_mb),
        "Socks/Node": "*",
        "NtasksPerN:B:S:C": "0:0:*:*",
        "CoreSpec": "*",
        "MinCPUsNode": str(job.cpus_per_task),
        "MinMemoryNode": f"{job.min_memory_mb}M" if job.min_memory_mb else "0",
        "MinTmpDiskNode": format_memory_mb(job.min_tmp_disk_mb) if job.min_tmp_disk_mb else "0",
        "Features": "(null)",
        "DelayBoot": "00:00:00",
        "OverSubscribe": "OK",
        "Contiguous": "0",
        "Licenses": "(null)",
        "Network": "(null)",
        "Command": job.command,
        "WorkDir": job.work_dir,
        "Comment": job.comment or None,
        "StdErr": job.stderr,
        "StdIn": job.stdin,
        "StdOut": job.stdout,
        "Power": "",
    }
    return fields


def show_job(jobs: list[JobRecord], *, one_liner: bool = False, now: float | None = None,
             node_memory_mb: dict[str, int] | None = None, details: bool = False,
             node_details: dict[int, tuple[str | None, list[str]]] | None = None) -> str:
    """``node_memory_mb``: partition -> the memory of its nodes, what a job that asks none gets.
    ``details`` (``-d``) adds the DerivedExitCode line (the highest exit code of the job's steps)
    and, for a job holding nodes, JOB_GRES and its nodes' lines: ``node_details`` maps a job id to
    (the GRES it holds, ``gpu:8``, and its ``Nodes=...`` lines)."""
    now = time.time() if now is None else now
    blocks = []
    for job in jobs:
        # A job waiting on several partitions counts the memory of the first it names.
        memory = (node_memory_mb or {}).get(job.partition.split(",")[0])
        fields = job_fields(job, now, node_memory_mb=memory)
        lines = []
        for keys in LINES:
            if keys == ["JobId", "JobName"] and fields.get("ArrayJobId"):
                keys = ["JobId", "ArrayJobId", "ArrayTaskId"] + (["ArrayTaskThrottle"] if fields.get("ArrayTaskThrottle") else []) + ["JobName"]
            if details and keys[0] == "MinCPUsNode" and job.state in ("RUNNING", "COMPLETING", "SUSPENDED"):
                held_gres, node_lines = (node_details or {}).get(job.job_id, (None, []))
                lines.append(f"JOB_GRES={held_gres or _job_gres(job)}")
                lines += [f"  {line}" for line in node_lines]
            items = [f"{key}={fields[key]}" for key in keys if fields.get(key) is not None]
            if items:
                lines.append(" ".join(items))
            if details and keys[0] == "Requeue":
                lines.append(f"DerivedExitCode={job.derived_exit_code}:0")
        lines += [f"{key}={value}" for key, value in _tres_per(job).items()]
        if one_liner:
            blocks.append(" ".join(line.strip() for line in lines) + " \n")
        else:
            blocks.append(lines[0] + "\n" + "".join(f"   {line}\n" for line in lines[1:]) + "   \n\n")
    return "".join(blocks)


def _job_gres(job: JobRecord) -> str:
    """``gpu:4``: the GPUs the job holds, ``(null)`` for none."""
    return f"gpu:{job.tres_gpus}" if job.tres_gpus else "(null)"


def show_steps(steps: list, jobs: dict[int, JobRecord], *, one_liner: bool = False) -> str:
    """``scontrol show step``: running steps, the batch step's few fields and srun's."""
    blocks = []
    for step in steps:
        job = jobs.get(step.job_id)
        extra = step.extra or {}
        batch = step.step_id == "batch"
        gpus = extra.get("gpus")
        tres = "(null)" if batch else (f"cpu={step.num_cpus}" + (f",gres/gpu={gpus}" if gpus else "")
                                       + f",mem=0,node={step.num_nodes}")
        dist = extra.get("dist")
        lines = [
            f"StepId={step.job_id}.{step.step_id} UserId={job.uid if job else 0} "
            f"StartTime={iso_time(step.start_time)} TimeLimit=UNLIMITED",
            f"State={step.state} Partition={job.partition if job else ''} NodeList={step.nodelist}",
            f"Nodes={step.num_nodes} CPUs={0 if batch else step.num_cpus} Tasks={step.num_tasks} "
            f"Name={step.name} Network=(null)",
            f"TRES={tres}",
            "ResvPorts=(null)",
            # srun's default layout is reported as cyclic, whatever places the tasks.
            "CPUFreqReq=Default" + ("" if batch else f" Dist={(dist or 'cyclic').split(':')[0].capitalize()}"),
            "SrunHost:Pid=(null):0" if batch else f"SrunHost:Pid={extra.get('srun_host')}:{extra.get('srun_pid')}",
        ]
        lines += [f"{key}={value}" for key, value in (extra.get("tres_per") or {}).items()]
        if one_liner:
            blocks.append(" ".join(lines) + "\n")
        else:
            blocks.append(lines[0] + "\n" + "".join(f"   {line}\n" for line in lines[1:]) + "\n")
    return "".join(blocks)
