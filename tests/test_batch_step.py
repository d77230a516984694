"""The batch step's process tree: the wrapper, the script as its only child, the status it leaves,
and nothing of the job left once the step is over."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import REF_CONF
from polling import wait_for
from sflow.conf import load_file
from sflow.exec import node_names
from sflow.exec.batch import launch_batch, read_status
from sflow.exec.env import JobContext
from sflow.queue.paths import hosts_path
from sflow.records import AllocatedNode


def _context(tmp_path) -> JobContext:
    return JobContext(job_id=7, job_name="t", user="u", uid=os.getuid(), gid=os.getgid(), partition="debug",
                      account="u", qos="normal", cluster_name="c", submit_dir=str(tmp_path), submit_host="h",
                      work_dir=str(tmp_path), nodes=[AllocatedNode("node1", 1)], tasks_per_node=[1], ntasks=1)


def test_the_script_is_the_wrappers_child_and_its_status_needs_no_other_program(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()  # a PATH with no programs at all: the wrapper uses only its shell's builtins
    script = '#!/bin/sh\necho "$SLURM_TASK_PID $$ $PPID"\nexit 3\n'
    step = launch_batch(_context(tmp_path), script, [], {"PATH": str(empty)}, home=str(tmp_path / "home"),
                        stdout_pattern=str(tmp_path / "out"))
    assert step.popen.wait(timeout=60) == 3
    task_pid, shell_pid, parent = (tmp_path / "out").read_text().split()
    assert task_pid == shell_pid and int(parent) == step.pid
    assert read_status(step.status_path) == (3, 0)
    assert sorted(os.listdir(step.job_dir)) == ["context.json", "pid", "slurm_script", "status", "status.times"]


def test_a_controller_starts_a_nodes_processes_from_the_nodes_thread(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("a threaded process cannot enter a user namespace: an ordinary user's way is the pre-exec one")
    hosts = hosts_path(str(tmp_path))
    names = node_names.prepare(load_file(REF_CONF), hosts)
    if names.problem:
        pytest.skip(f"this kernel refuses the namespaces: {names.problem}")
    pre_exec = []
    real = subprocess.Popen

    def recording(*args, **kwargs):
        pre_exec.append(kwargs.get("preexec_fn"))
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording)
    started = [node_names.popen_on_node(["/bin/sh", "-c", "hostname; grep -w node2 /etc/hosts"], "node2", hosts,
                                        threaded=True, stdout=subprocess.PIPE) for _ in range(2)]
    outputs = [process.communicate(timeout=60)[0].decode() for process in started]
    assert outputs == ["node2\n127.100.0.2\tnode2\n"] * 2
    assert pre_exec == [None, None]  # no code between fork and exec: Python may vfork


def test_nothing_a_batch_step_left_behind_outlives_it(cluster):
    # Three tasks that end together, each leaving a process behind in its session.
    done = cluster.run("sbatch", "--wait", "--array=1-3", "-o", "/dev/null",
                       "--wrap", 'sleep 300 & echo $! > "left-$SLURM_ARRAY_TASK_ID"', timeout=120)
    assert done.returncode == 0, done.stderr
    left = [int(open(os.path.join(cluster.work, f"left-{i}")).read()) for i in (1, 2, 3)]

    def gone(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    assert wait_for(lambda: all(gone(pid) for pid in left))


def test_a_file_system_mounted_after_a_node_started_processes_is_seen_by_its_next_ones(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    hosts = hosts_path(str(tmp_path))
    names = node_names.prepare(load_file(REF_CONF), hosts)
    if names.problem:
        pytest.skip(f"this kernel refuses the namespaces: {names.problem}")

    def run_on_node3(*argv: str) -> bytes:
        process = node_names.popen_on_node(list(argv), "node3", hosts, threaded=True, stdout=subprocess.PIPE)
        return process.communicate(timeout=60)[0]

    assert run_on_node3("hostname") == b"node3\n"  # the node's thread exists from here on
    target = tmp_path / "mounted"
    target.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (target / "file").write_text("on the new file system\n")
        assert run_on_node3("cat", str(target / "file")) == b"on the new file system\n"
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)
