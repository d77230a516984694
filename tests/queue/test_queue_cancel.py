"""scancel through the real command, controller and batch steps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from queue_harness import queue  # noqa: F401  (the fixture)

TRAP = """#!/bin/bash
trap 'echo TERM >> {out}; exit 3' TERM
trap 'echo USR1 >> {out}' USR1
echo started >> {out}
while true; do sleep 0.1; done
"""


def _trap_script(queue, name: str) -> tuple[str, str]:
    out = os.path.join(queue.work, f"{name}.log")
    path = os.path.join(queue.work, f"{name}.sh")
    with open(path, "w") as handle:
        handle.write(TRAP.format(out=out))
    return path, out


def _read(path: str) -> list[str]:
    try:
        with open(path) as handle:
            return handle.read().split()
    except FileNotFoundError:
        return []


def test_cancel_running_job_sends_term_and_records_cancelled(queue):
    job_id = queue.sbatch("--wrap", "sleep 30")
    queue.wait_state(job_id, "RUNNING")
    queue.wait_for(lambda: os.path.exists(os.path.join(queue.home, "jobs", str(job_id), "pid")), what="launch")
    done = queue.scancel(str(job_id))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    job = queue.wait_state(job_id, "CANCELLED")
    assert (job.exit_code, job.exit_signal, job.cancelled_by, job.reason) == (0, signal.SIGTERM, os.getuid(), "None")
    with open(job.stderr) as handle:
        assert f"slurmstepd-n1: error: *** JOB {job_id} ON n1 CANCELLED AT " in handle.read()


def test_a_trapping_script_exits_on_its_own_terms(queue):
    script, out = _trap_script(queue, "trap")
    job_id = queue.sbatch(script)
    queue.wait_for(lambda: "started" in _read(out), what="script start")
    assert queue.scancel(str(job_id)).returncode == 0
    job = queue.wait_state(job_id, "CANCELLED")
    assert (job.exit_code, job.exit_signal) == (3, 0)
    assert _read(out) == ["started", "TERM"]


def test_cancel_pending_and_held(queue):
    held = queue.sbatch("--hold", "--wrap", "true")
    blocked = queue.sbatch("-d", "afterok:99999", "--begin=now+600", "--wrap", "true")
    result = queue.scancel("-v", str(held), str(blocked))
    assert result.returncode == 0
    assert result.stderr == f"scancel: Terminating job {held}\nscancel: Terminating job {blocked}\n"
    job = queue.job(held)
    assert (job.state, job.reason, job.exit_code, job.exit_signal) == ("CANCELLED", "JobHeldUser", 0, 0)
    assert job.start_time == job.end_time
    assert queue.job(blocked).state == "CANCELLED"


def test_unknown_and_finished_ids_are_quiet_unless_verbose(queue):
    done = queue.sbatch("--wrap", "true")
    queue.wait_done(done)
    quiet = queue.scancel("99999999", str(done))
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    loud = queue.scancel("-v", "99999999", str(done))
    assert loud.returncode == 0
    assert loud.stderr == (
        "scancel: Terminating job 99999999\n"
        "scancel: error: Kill job error on job id 99999999: Invalid job id specified\n"
        f"scancel: Terminating job {done}\n"
        f"scancel: error: Kill job error on job id {done}: Job/step already completing or completed\n")
    signalled = queue.scancel("-s", "USR1", "99999999")
    assert (signalled.returncode, signalled.stderr) == (
        1, "scancel: error: Kill job error on job id 99999999: Invalid job id specified\n")
    step = queue.scancel("99999999.3")
    assert (step.returncode, step.stderr) == (
        1, "scancel: error: Kill job error on job step id 99999999.3: Invalid job id specified\n")


def test_command_line_errors(queue):
    cases = [
        (("abc",), 1, "scancel: error: Invalid job id abc\n"),
        (("12_abc",), 1, "scancel: error: Invalid job id 12_abc\n"),
        ((), 1, "scancel: error: No job identification provided\n"),
        (("-t", "BOGUS"), 1, "Invalid job state specified: BOGUS\nValid job states are PENDING, RUNNING, and SUSPENDED\n"),
        (("-s", "BOGUS", "5"), 1, "Unknown job signal: BOGUS\n"),
        (("-s", "0", "5"), 1, "Unknown job signal: 0\n"),
        (("-u", "no-such-user-here"), 1, "scancel: error: Invalid user name: no-such-user-here\n"),
        (("--bogus",), 1, "scancel: unrecognized option '--bogus'\nTry \"scancel --help\" for more information\n"),
    ]
    for argv, code, stderr in cases:
        result = queue.scancel(*argv)
        assert (result.returncode, result.stderr) == (code, stderr), argv


def test_signals_reach_steps_batch_shell_or_everything(queue):
    script, out = _trap_script(queue, "sig")
    job_id = queue.sbatch(script)
    queue.wait_for(lambda: "started" in _read(out), what="script start")
    steps_only = queue.scancel("-v", "-s", "USR1", str(job_id))
    assert (steps_only.returncode, steps_only.stderr) == (0, f"scancel: Signal 10 to job {job_id}\n")
    batch = queue.scancel("-v", "-b", "-s", "USR1", str(job_id))
    assert (batch.returncode, batch.stderr) == (0, f"scancel: Signal 10 to batch job {job_id}\n")
    queue.wait_for(lambda: _read(out).count("USR1") == 1, what="USR1 in the batch shell")
    assert queue.job(job_id).state == "RUNNING"  # a signal is not a cancel
    queue.scancel(str(job_id))
    queue.wait_state(job_id, "CANCELLED")
    assert _read(out).count("USR1") == 1  # the step-only signal never reached the shell


def test_signal_to_a_pending_job_is_refused(queue):
    job_id = queue.sbatch("--hold", "--wrap", "true")
    result = queue.scancel("-s", "USR1", str(job_id))
    assert result.returncode == 228
    assert result.stderr == (f"scancel: error: Kill job error on job id {job_id}: "
                             "Job can not be altered now, try again later\n")
    assert queue.job(job_id).state == "PENDING"


def test_filters_select_jobs(queue):
    keep = queue.sbatch("--hold", "-J", "keep", "--wrap", "true")
    drop1 = queue.sbatch("--hold", "-J", "drop", "--wrap", "true")
    drop2 = queue.sbatch("--hold", "-J", "drop", "-p", "off", "--wrap", "true")
    none = queue.scancel("-v", "-n", "nomatch")
    assert (none.returncode, none.stderr) == (
        0, "scancel: error: No active jobs match ALL job filters, including: job_name=nomatch \n")
    assert queue.scancel("-n", "drop", "-p", "debug").returncode == 0
    assert [queue.job(i).state for i in (keep, drop1, drop2)] == ["PENDING", "CANCELLED", "PENDING"]
    assert queue.scancel("-t", "PD", "--me").returncode == 0
    assert [queue.job(i).state for i in (keep, drop2)] == ["CANCELLED", "CANCELLED"]


def test_partition_filter_compares_a_pending_jobs_whole_partition_list(queue):
    # As SLURM 22.05's scancel -p: a job given "-p debug,off" is in neither "debug" nor "off".
    both = queue.sbatch("--hold", "-J", "both", "-p", "debug,off", "--wrap", "true")
    assert queue.scancel("-n", "both", "-p", "debug").returncode == 0
    assert queue.scancel("-n", "both", "-p", "off").returncode == 0
    assert queue.job(both).state == "PENDING"
    assert queue.scancel("-n", "both", "-p", "debug,off").returncode == 0
    assert queue.job(both).state == "CANCELLED"


def test_array_elements_ranges_and_whole_arrays(queue):
    array = queue.sbatch("--hold", "--array=0-5", "--wrap", "true")
    result = queue.scancel("-v", f"{array}_2", f"{array}_[4-5]")
    assert result.stderr == f"scancel: Terminating job {array}_2\nscancel: Terminating job {array}_[4-5]\n"
    # As in SLURM, a cancelled pending element leaves the array and keeps no record of its own.
    jobs = {(j.array_task_id, j.array_task_str): j for j in queue.jobs(array)}
    assert list(jobs) == [(None, "0-1,3")] and jobs[(None, "0-1,3")].state == "PENDING"
    queue.scancel(str(array))
    remainder = queue.job(array)
    assert (remainder.state, remainder.array_task_str) == ("CANCELLED", "0-1,3")


def test_interactive_asks_for_each_job(queue):
    yes = queue.sbatch("--hold", "-J", "yes", "--wrap", "true")
    no = queue.sbatch("--hold", "-J", "no", "--wrap", "true")
    result = queue.scancel("-i", str(yes), str(no), input="y\nn\n")
    assert result.returncode == 0
    assert result.stdout == (f"Cancel job_id={yes} name=yes partition=debug [y/n]? "
                             f"Cancel job_id={no} name=no partition=debug [y/n]? ")
    assert (queue.job(yes).state, queue.job(no).state) == ("CANCELLED", "PENDING")


def test_scancel_environment_variables(queue, monkeypatch):
    keep = queue.sbatch("--hold", "-J", "keep", "--wrap", "true")
    drop = queue.sbatch("--hold", "-J", "drop", "--wrap", "true")
    monkeypatch.setenv("SCANCEL_NAME", "drop")
    monkeypatch.setenv("SCANCEL_VERBOSE", "1")
    result = queue.scancel(str(keep), str(drop))
    assert (result.returncode, result.stderr) == (0, f"scancel: Terminating job {drop}\n")
    assert (queue.job(keep).state, queue.job(drop).state) == ("PENDING", "CANCELLED")
    none = queue.scancel(str(keep))
    assert none.stderr == "scancel: error: No active jobs match ALL job filters, including: job_name=drop \n"


def _pending_signals(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1], 16) for line in handle if line.startswith("ShdPnd:"))


def test_full_signal_reaches_a_step_task_once_not_again_through_its_srun(tmp_path):
    """scancel --full: srun passes USR1 on to its tasks, so it must not get one too (test6.15)."""
    from sflow.queue import launch

    ready = tmp_path / "ready"
    fake_srun = tmp_path / "srun"
    # Like sflow's srun, the fake starts its task as a process group of its own (in the job's session).
    fake_srun.write_text("import os, subprocess, sys\n"
                         "task = subprocess.Popen(['sleep', '300'], preexec_fn=os.setpgrp)\n"
                         f"open({str(ready)!r}, 'w').write(str(task.pid))\n"
                         "task.wait()\n")
    # USR1 stays blocked (inherited down the tree), so what each process was sent stays pending to be read.
    shell = subprocess.Popen(["/bin/sh", "-c", f'"{sys.executable}" "{fake_srun}" & wait'], start_new_session=True,
                             preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK,
                                                                       {signal.SIGUSR1, signal.SIGUSR2}))
    task = None
    try:
        while not ready.exists() or not ready.read_text():
            time.sleep(0.05)
        task = int(ready.read_text())
        with open(f"/proc/{task}/stat") as handle:
            srun = int(handle.read().rsplit(")", 1)[1].split()[1])
        assert launch.signal_job(shell.pid, signal.SIGUSR1, "full")
        bit = 1 << (signal.SIGUSR1 - 1)
        assert [bool(_pending_signals(pid) & bit) for pid in (shell.pid, srun, task)] == [True, False, True]
        # A signal to the whole job reaches the task's own group too, and so does the end of the job.
        assert launch.signal_job(shell.pid, signal.SIGUSR2, "all")
        bit = 1 << (signal.SIGUSR2 - 1)
        assert _pending_signals(task) & bit
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        if task is not None:
            os.kill(task, signal.SIGKILL)
        shell.wait()
