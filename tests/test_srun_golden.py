"""srun against real SLURM 22.05's recorded answers (compat/golden/srun.json, compat/help.toml)
and the behaviours SLURM's own srun tests check: -O, -v, -W, -I, --test-only, -m, -E,
--multi-prog, --exclusive, --gpu-bind, SLURM_TASK_PID."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import job_allocation, run_srun as srun
from sflow.exec.layout import ranks_by_node
from sflow.exec.multiprog import argv_for, read_config
from sflow.exec.verbose import check_distribution
from sflow.slurm.display import defined_options
from sflow.records import AllocatedNode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "compat", "golden", "srun.json")) as _handle:
    GOLDEN = json.load(_handle)
JOB_ID = 88

# Cases whose whole stderr does not name nodes or depend on when tasks end.
EXACT = [name for name in GOLDEN if name.startswith(("distribution-", "gpu-bind-", "immediate-", "test-only-"))
         or name == "verbose-and-quiet"]
# Cases where only what the tasks print, and srun's exit code, are compared.
STDOUT_ONLY = ["overcommit-tasks-per-node", "exclusive-tasks-from-cpus"]


def scrub(text: str) -> str:
    text = re.sub(r"\b\d{5,}\b", "<jobid>", text)
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "<time>", text)


@pytest.mark.parametrize("name", EXACT + STDOUT_ONLY)
def test_srun_matches_real_slurm(cluster, name):
    case = GOLDEN[name]
    done = cluster.run("srun", *case["argv"])
    assert done.returncode == case["exit_code"], done.stderr
    assert done.stdout == case["stdout"]
    if name in EXACT:
        assert scrub(done.stderr) == case["stderr"]


def test_wait_ends_the_step_as_real_srun_does(cluster):
    case = GOLDEN["wait-runs-out"]
    done = cluster.run("srun", *case["argv"])
    assert done.returncode == case["exit_code"]
    ours = [re.sub(r"node\d", "<node>", line) for line in scrub(done.stderr).splitlines()]
    theirs = [re.sub(r"node\d", "<node>", line) for line in case["stderr"].splitlines()]
    assert [line.split(" ago")[0][:-2] if "First task" in line else line for line in ours] == \
           [line.split(" ago")[0][:-2] if "First task" in line else line for line in theirs]


@pytest.mark.parametrize("name", [n for n in GOLDEN if n.startswith("kill-on-bad-exit-")])
def test_kill_on_bad_exit_ends_the_step_as_real_srun_does(cluster, name):
    case = GOLDEN[name]
    done = cluster.run("srun", *case["argv"])
    assert done.returncode == case["exit_code"], done.stderr
    assert done.stdout == case["stdout"]
    assert re.sub(r"node\d", "<node>", scrub(done.stderr)) == re.sub(r"node\d", "<node>", case["stderr"])


@pytest.mark.parametrize("name", [n for n in GOLDEN if n.startswith("gpus-bind-verbose-")])
def test_gpu_bind_verbose_tells_each_tasks_gpus(cluster, name):
    case = GOLDEN[name]
    done = cluster.run("srun", *case["argv"])
    assert done.returncode == case["exit_code"], done.stderr
    # Tasks write in whichever order they run.
    assert sorted(done.stdout.splitlines()) == sorted(case["stdout"].splitlines())
    assert sorted(done.stderr.splitlines()) == sorted(case["stderr"].splitlines())


def test_overcommit_runs_more_tasks_than_cpus_and_says_so_verbosely(cluster):
    done = cluster.run("srun", "-N1", "-n10", "-O", "-v", "-l", "-t1", "printenv", "SLURM_PROCID")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 10
    assert re.search(r"^srun: jobid \d+: nodes\(1\):`node\d', cpu counts: 1\(x1\)$", done.stderr, re.M)
    assert re.search(r"^srun: launching StepId=\d+\.0 on host node\d, 10 tasks: \[0-9\]$", done.stderr, re.M)
    assert "srun: overcommit          : set\n" in done.stderr


def test_slurm_debug_and_environment_options_apply_outside_a_job(cluster):
    env = {**cluster.env, "SLURM_DEBUG": "1", "SLURM_NPROCS": "3", "SLURM_NNODES": "1", "SLURM_OVERCOMMIT": "1"}
    done = subprocess.run(["srun", "-t1", "printenv", "SLURM_PROCID"], env=env, cwd=cluster.work,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["0", "1", "2"]
    assert re.search(r"^srun: jobid \d+:", done.stderr, re.M)


def test_help_and_usage_are_sruns_own():
    with open(os.path.join(ROOT, "compat", "help.toml"), "rb") as handle:
        import tomllib

        recorded = tomllib.load(handle)["srun"]
    for flag in ("help", "usage"):
        done = subprocess.run([sys.executable, "-c", "from sflow.cli.shims import srun; srun()", f"--{flag}"],
                              capture_output=True, text=True, timeout=60)
        assert done.stdout == recorded[flag]
    assert "Constraint options:" in recorded["help"]


@pytest.fixture
def job_env(tmp_path):
    env, _ = job_allocation(tmp_path, JOB_ID, nodes=[AllocatedNode("node1", 2), AllocatedNode("node2", 2)],
                            tasks_per_node=[3, 3], ntasks=6, ntasks_given=True, overcommit=True)
    return {**env, "SLURM_NNODES": "2", "SLURM_NTASKS": "6"}, tmp_path


def test_preserve_env_keeps_the_jobs_geometry(job_env):
    env, cwd = job_env
    kept = srun(env, cwd, "-E", "-n1", "-N1", "printenv", "SLURM_NNODES", "SLURM_NTASKS", "SLURM_OVERCOMMIT")
    assert kept.stdout.split() == ["2", "6", "1"]
    plain = srun(env, cwd, "-n1", "-N1", "printenv", "SLURM_NNODES", "SLURM_NTASKS")
    assert plain.stdout.split() == ["1", "1"]


def test_inherited_overcommitted_layout_runs_every_task(job_env):
    env, cwd = job_env
    done = srun(env, cwd, "printenv", "SLURM_PROCID")
    assert sorted(done.stdout.split()) == [str(i) for i in range(6)]


def test_each_task_knows_its_own_pid(job_env):
    env, cwd = job_env
    done = srun(env, cwd, "-n2", "-l", "bash", "-c", 'echo "$SLURM_TASK_PID $$"')
    for line in done.stdout.splitlines():
        pid, own = line.split(": ")[1].split()
        assert pid == own


def test_label_in_per_node_output_files(job_env):
    env, cwd = job_env
    done = srun(env, cwd, "-l", "-n4", "--output=n.%n.out", "echo", "hello")
    assert done.returncode == 0, done.stderr
    assert sorted((cwd / "n.0.out").read_text().splitlines()) == ["0: hello", "1: hello"]
    assert sorted((cwd / "n.1.out").read_text().splitlines()) == ["2: hello", "3: hello"]


def test_numbered_input_and_output_name_one_task(job_env):
    env, cwd = job_env
    done = srun(env, cwd, "-n4", "--input=2", "bash", "-c", "read line && echo $SLURM_PROCID $line", stdin="hi\n")
    assert done.stdout == "2 hi\n"
    only = srun(env, cwd, "-n4", "--output=1", "printenv", "SLURM_PROCID")
    assert only.stdout == "1\n"


def test_multi_prog_config(tmp_path, job_env):
    env, cwd = job_env
    conf = tmp_path / "mp.conf"
    conf.write_text("# comment\n1-2 echo task:%t:offset:%o\n0,3   echo aaaa  task:%t:\\\noffset:%o \\\nbbbb\n")
    programs = read_config(str(conf))
    assert argv_for(programs, 3, []) == ["echo", "aaaa", "task:3:offset:1", "bbbb"]
    assert argv_for(programs, 2, ["x"]) == ["echo", "task:2:offset:1", "x"]
    done = srun(env, cwd, "-n4", "-l", "--multi-prog", str(conf))
    assert sorted(done.stdout.splitlines()) == ["0: aaaa task:0:offset:0 bbbb", "1: task:1:offset:0",
                                                "2: task:2:offset:1", "3: aaaa task:3:offset:1 bbbb"]
    short = srun(env, cwd, "-n5", "-O", "--multi-prog", str(conf))
    assert short.returncode == 1
    assert f"srun: error: Configuration file {conf} invalid, no record for task id 4\n" in short.stderr


def test_distribution_orders_ranks_and_is_shown():
    assert ranks_by_node([2, 2], "cyclic") == [[0, 2], [1, 3]]
    assert ranks_by_node([3, 2], "plane", 2) == [[0, 1, 4], [2, 3]]
    assert ranks_by_node([2, 2], "block:cyclic") == [[0, 1], [2, 3]]
    assert check_distribution("*:block:*") == ("block:block:block", None)
    assert check_distribution("plane", "4") == ("plane", 4)


def test_cyclic_step_in_a_job(job_env):
    env, cwd = job_env
    done = srun(env, cwd, "-n4", "-m", "cyclic", "-l", "printenv", "SLURM_NODEID", "SLURM_DISTRIBUTION")
    lines = sorted(done.stdout.splitlines())
    assert lines == ["0: 0", "0: cyclic", "1: 1", "1: cyclic", "2: 0", "2: cyclic", "3: 1", "3: cyclic"]


def test_verbose_listing_shows_values_as_srun_does():
    text = defined_options([("time", "1:30"), ("gres", "gpu:1"), ("input", "none"), ("label", None),
                            ("exclusive", None), ("verbose", None)], 1)
    assert text.splitlines()[2:8] == ["srun: exclusive           : exclusive", "srun: gres                : gres:gpu:1",
                                      "srun: input               : /dev/null", "srun: label               : set",
                                      "srun: time                : 00:02:00", "srun: verbose             : 1"]


def test_gres_beyond_a_nodes_gpus_is_refused_with_gpus_per_node(cluster):
    done = cluster.run("sbatch", "--gpus-per-node=8", "--gres=gpu:9", "-N1", "-o", "/dev/null", "--wrap", "true")
    assert done.returncode == 1
    assert "Requested node configuration is not available" in done.stderr


def test_exclusive_job_holds_all_of_its_nodes_gpus(cluster):
    done = cluster.run("sbatch", "--wait", "-N1", "--exclusive", "--gres=gpu:1", "-t1", "-o", "gpus.out",
                       "--wrap", "printenv CUDA_VISIBLE_DEVICES")
    assert done.returncode == 0, done.stderr
    with open(os.path.join(cluster.work, "gpus.out")) as handle:
        assert handle.read() == "0,1,2,3,4,5,6,7\n"


def test_debugger_test_lists_the_stopped_tasks_and_a_signal_ends_them(job_env):
    env, cwd = job_env
    (cwd / "mp.conf").write_text("0 /bin/date\n1 /bin/hostname\n")
    proc = subprocess.Popen([sys.executable, "-c", "from sflow.cli.shims import srun; srun()", "-n2", "-N1",
                             "--multi-prog", "--debugger-test", "mp.conf"], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listed = [proc.stderr.readline() for _ in range(2)]
    assert [re.sub(r"pid:\d+", "pid:P", line) for line in listed] == [
        "srun: task:0, host:node1, pid:P, executable:/bin/date\n",
        "srun: task:1, host:node1, pid:P, executable:/bin/hostname\n"]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 137
    assert out == ""  # the programs never ran
    assert err.startswith("srun: forcing job termination\n")
    assert err.endswith("srun: error: node1: tasks 0-1: Killed\n")


@pytest.mark.parametrize("name", [n for n in GOLDEN if n.startswith("stdin-")])
def test_stdin_reaches_the_tasks_real_srun_gives_it_to(cluster, name):
    case = GOLDEN[name]
    done = cluster.run("srun", *case["argv"], input=case["stdin"])
    assert done.returncode == case["exit_code"], done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(case["stdout"].splitlines())  # tasks end in any order
    for line in case["stderr"].splitlines():
        assert line in done.stderr.splitlines()


def test_stdin_reaches_every_task_inside_an_allocation(cluster):
    script = "srun -n3 bash -c 'echo $SLURM_PROCID $(wc -l)' <<'END'\na\nb\nc\nEND\n"
    done = cluster.run("salloc", "-n3", "bash", "-c", script)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["0 3", "1 3", "2 3"]
