"""scontrol show step and the GPU requests (Tres*) scontrol shows for jobs and steps."""

from __future__ import annotations

from sflow.exec import steplog
from sflow.records import JobRecord, StepRecord
from sflow.views.job_show import show_job, show_steps


def _job(**kw) -> JobRecord:
    base = dict(job_id=7, name="j", user="root", uid=0, gid=0, partition="debug", state="PENDING",
                reason="JobHeldUser", submit_time=0.0, work_dir="/tmp", command="(null)")
    return JobRecord(**{**base, **kw})


def test_job_shows_tres_requests_after_power_and_tmp_disk():
    job = _job(num_nodes=2, num_cpus=4, num_tasks=4, tres_gpus=4, min_tmp_disk_mb=100,
               tres_per="CpusPerTres=gres:gpu:1\nMemPerTres=gres:gpu:10\nTresPerJob=gres:gpu:4")
    lines = show_job([job], now=0).splitlines()
    assert "   TRES=cpu=4,mem=40M,node=2,billing=4,gres/gpu=4" in lines
    assert "MinTmpDiskNode=100M" in " ".join(lines)
    power = lines.index("   Power=")
    assert lines[power + 1:power + 4] == ["   CpusPerTres=gres:gpu:1", "   MemPerTres=gres:gpu:10",
                                          "   TresPerJob=gres:gpu:4"]


def test_job_details_show_job_gres_while_running():
    job = _job(state="RUNNING", reason="None", start_time=1.0, nodelist="node[1-2]", num_nodes=2, tres_gpus=4)
    text = show_job([job], now=2, details=True, node_details={7: ("gpu:4", ["Nodes=node[1-2] CPU_IDs=0-1 Mem=0 GRES=gpu:2(IDX:0-1)"])})
    assert "   JOB_GRES=gpu:4\n     Nodes=node[1-2] CPU_IDs=0-1 Mem=0 GRES=gpu:2(IDX:0-1)\n   MinCPUsNode=" in text


def test_step_tres_from_srun_options():
    given = {"cpus-per-gpu": "1", "mem-per-gpu": "10", "gpu-bind": "closest", "gpu-freq": "medium",
             "gpus": "4", "gpus-per-node": "2", "gpus-per-task": "1"}
    assert steplog.step_tres(given, tasks=4, cpus_per_task=1, nodes=2) == {
        "tres_per": {"CpusPerTres": "gres:gpu:1", "MemPerTres": "gres:gpu:10", "TresBind": "gpu:closest",
                     "TresFreq": "gpu:medium", "TresPerStep": "cpu:4,gres:gpu:4", "TresPerNode": "gres:gpu:2",
                     "TresPerTask": "gres:gpu:1"},
        "gpus": 4}
    assert steplog.step_tres({}, tasks=1, cpus_per_task=1, nodes=1) == {}


def test_show_step_as_scontrol_prints_it():
    """Recorded from SLURM 22.05 (scontrol show step of a running srun step and the batch step)."""
    job = _job(state="RUNNING", reason="None")
    step = StepRecord(job_id=7, step_id="0", name="sleep", state="RUNNING", start_time=None,
                      nodelist="node[1-2]", num_nodes=2, num_tasks=2, num_cpus=4,
                      extra={"srun_host": "node1", "srun_pid": 20767, "gpus": 4,
                             "tres_per": {"CpusPerTres": "gres:gpu:1", "TresPerTask": "gres:gpu:1"}})
    batch = StepRecord(job_id=7, step_id="batch", name="batch", state="RUNNING", nodelist="node1")
    assert show_steps([batch, step], {7: job}) == (
        "StepId=7.batch UserId=0 StartTime=Unknown TimeLimit=UNLIMITED\n"
        "   State=RUNNING Partition=debug NodeList=node1\n"
        "   Nodes=1 CPUs=0 Tasks=1 Name=batch Network=(null)\n"
        "   TRES=(null)\n"
        "   ResvPorts=(null)\n"
        "   CPUFreqReq=Default\n"
        "   SrunHost:Pid=(null):0\n"
        "\n"
        "StepId=7.0 UserId=0 StartTime=Unknown TimeLimit=UNLIMITED\n"
        "   State=RUNNING Partition=debug NodeList=node[1-2]\n"
        "   Nodes=2 CPUs=4 Tasks=2 Name=sleep Network=(null)\n"
        "   TRES=cpu=4,gres/gpu=4,mem=0,node=2\n"
        "   ResvPorts=(null)\n"
        "   CPUFreqReq=Default Dist=Cyclic\n"
        "   SrunHost:Pid=node1:20767\n"
        "   CpusPerTres=gres:gpu:1\n"
        "   TresPerTask=gres:gpu:1\n"
        "\n")
    one = show_steps([step], {7: job}, one_liner=True)
    assert one.startswith("StepId=7.0 UserId=0 ") and one.endswith("TresPerTask=gres:gpu:1\n") and one.count("\n") == 1
