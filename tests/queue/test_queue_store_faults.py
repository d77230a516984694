"""A full disk and a damaged store: clear SLURM-style errors, a controller that stays up, a way back."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import BIN, REF_CONF

SUBMIT_FAILED = "sbatch: error: Batch job submission failed: I/O error writing script/environment to file\n"


def _env(home: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env.update(SFLOW_HOME=home, SFLOW_CONF=REF_CONF, PATH=BIN + os.pathsep + env.get("PATH", ""),
               SFLOW_CONTROLLER_IDLE="30")
    return env


def _run(env: dict, cwd: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def _shutdown(home: str) -> None:
    from sflow.queue import client

    try:
        client.call(home, "shutdown", start=False)
    except Exception:
        pass
    # It takes its backup on the way out, which a loaded machine makes slow: the tests damage
    # the store only once no controller holds it (a full disk may leave its pid file behind).
    _wait(lambda: not _controller_alive(home), "the controller to stop")


def _controller_alive(home: str) -> bool:
    try:
        with open(os.path.join(home, "ctl.pid")) as handle:
            pid = int(handle.read().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _wait(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


@pytest.fixture
def small_disk(tmp_path):
    """An sflow home on a 2 MB tmpfs of its own."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    home = tmp_path / "disk"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(home)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield str(home)
    finally:
        try:
            _run(_env(str(home)), str(tmp_path), "scancel", "-u", "root")
            _shutdown(str(home))
        finally:  # whatever happened, the machine keeps no test's mount
            subprocess.run(["umount", "-l", str(home)], capture_output=True)


def test_full_disk_fails_submissions_at_once_and_keeps_the_controller(small_disk, tmp_path):
    env, work = _env(small_disk), str(tmp_path)
    go = tmp_path / "go"
    first = _run(env, work, "sbatch", "--parsable", "--wrap", f"while [ ! -e {go} ]; do sleep 0.1; done; exit 3")
    job_id = first.stdout.strip()
    assert first.returncode == 0 and job_id.isdigit(), first.stderr
    _wait(lambda: " R " in _run(env, work, "squeue", "-h", "-j", job_id).stdout, "the job to run")

    filler = os.path.join(small_disk, "fill")
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    started = time.monotonic()
    refused = _run(env, work, "sbatch", "--wrap", "true")
    took = time.monotonic() - started
    print(f"full disk: sbatch refused in {took:.2f} s")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.startswith(SUBMIT_FAILED), refused.stderr
    assert "No space left on device" in refused.stderr and "internal error" not in refused.stderr
    listed = _run(env, work, "squeue", "-h", "-o", "%i %T")
    assert (listed.returncode, listed.stdout) == (0, f"{job_id} RUNNING\n")

    # The job ends while the disk is still full: its wrapper cannot write its status file.
    go.touch()
    time.sleep(1.0)
    os.unlink(filler)
    _wait(lambda: _run(env, work, "sacct", "-n", "-X", "-j", job_id, "-o", "State,ExitCode").stdout.split()
          == ["FAILED", "3:0"], "the job's end to be recorded")
    again = _run(env, work, "sbatch", "--parsable", "--hold", "--wrap", "true")
    assert again.returncode == 0 and int(again.stdout) == int(job_id) + 1, again.stderr


def test_full_disk_at_controller_start_fails_at_once(small_disk, tmp_path):
    env, work = _env(small_disk), str(tmp_path)
    assert _run(env, work, "sbatch", "--hold", "--wrap", "true").returncode == 0
    _shutdown(small_disk)
    subprocess.run(["dd", "if=/dev/zero", f"of={os.path.join(small_disk, 'fill')}", "bs=64k"], capture_output=True)
    started = time.monotonic()
    refused = _run(env, work, "sbatch", "--wrap", "true")
    print(f"full disk, no controller: sbatch refused in {time.monotonic() - started:.2f} s")
    assert refused.returncode == 1
    assert refused.stderr.startswith(SUBMIT_FAILED), refused.stderr
    assert "did not start" not in refused.stderr


@pytest.fixture
def queued(tmp_path):
    """40 held jobs in a store whose controller has stopped (taking its backup on the way out)."""
    home = tmp_path / "home"
    home.mkdir()
    env, work = _env(str(home)), str(tmp_path)
    for _ in range(40):
        assert _run(env, work, "sbatch", "-Q", "--hold", "--wrap", "true").returncode == 0
    _shutdown(str(home))
    yield str(home), env, work
    _shutdown(str(home))


def _refused(result, command: str) -> None:
    assert result.returncode == 1, result
    assert "Submitted batch job" not in result.stdout
    assert "internal error" not in result.stderr
    assert result.stderr.startswith(f"{command}: error: sflow's job store "), result.stderr
    assert "flow doctor --repair" in result.stderr


def test_emptied_store_is_refused_and_repaired_from_the_backup(queued):
    home, env, work = queued
    db = os.path.join(home, "sflow.db")
    open(db, "w").close()
    _refused(_run(env, work, "sbatch", "--wrap", "true"), "sbatch")
    _refused(_run(env, work, "squeue"), "squeue")
    _refused(_run(env, work, "sacct"), "sacct")
    checked = _run(env, work, "flow", "doctor")
    assert checked.returncode == 1 and "is empty" in checked.stdout and "40 job(s)" in checked.stdout

    repaired = _run(env, work, "flow", "doctor", "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert len(_run(env, work, "squeue", "-h").stdout.splitlines()) == 40
    after = _run(env, work, "sbatch", "--parsable", "--hold", "--wrap", "true")
    assert after.returncode == 0 and int(after.stdout) == 100040  # no job directory's id is used again


def test_held_jobs_kept_scripts_alone_show_a_lost_store(queued):
    home, env, work = queued
    for name in ("sflow.db", "sflow.db-wal", "sflow.db-shm", "sflow.db.bak"):
        if os.path.exists(os.path.join(home, name)):
            os.unlink(os.path.join(home, name))
    assert sorted(os.listdir(os.path.join(home, "jobs")))[:2] == ["100000.script", "100001.script"]
    refused = _run(env, work, "squeue")
    _refused(refused, "squeue")
    assert "the files of 40 jobs in jobs/ (up to job 100039)" in refused.stderr
    assert _run(env, work, "flow", "doctor", "--repair").returncode == 0
    after = _run(env, work, "sbatch", "--parsable", "--hold", "--wrap", "true")
    assert after.returncode == 0 and int(after.stdout) == 100040  # no id of a kept script is used again


def test_a_first_submission_killed_before_its_commit_leaves_a_usable_store(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env, work = _env(str(home)), str(tmp_path)
    started = _run(env, work, sys.executable, "-c", "from sflow.queue import client; client.call(None, 'ping')")
    assert started.returncode == 0, started.stderr  # a controller made the store; no job in it
    _shutdown(str(home))
    # What a controller killed between writing the first job's script and its COMMIT leaves.
    os.makedirs(home / "jobs")
    (home / "jobs" / "100000.script").write_text("#!/bin/sh\ntrue\n")
    submitted = _run(env, work, "sbatch", "--parsable", "--hold", "--wrap", "true")
    assert submitted.returncode == 0, submitted.stderr
    assert _run(env, work, "squeue", "-h", "-o", "%i").stdout.split() == [submitted.stdout.strip()]


def test_damaged_header_is_refused_at_once_and_read_back(queued):
    home, env, work = queued
    with open(os.path.join(home, "sflow.db"), "r+b") as handle:
        handle.write(b"garbage!garbage!")
    _refused(_run(env, work, "sbatch", "--wrap", "true"), "sbatch")  # not the start timeout's "did not start"
    for command in ("squeue", "sacct"):
        _refused(_run(env, work, command), command)
    _refused(_run(env, work, "scontrol", "show", "job"), "scontrol")
    os.unlink(os.path.join(home, "sflow.db.bak"))  # only the damaged file to read from
    repaired = _run(env, work, "flow", "doctor", "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "row(s) read back" in repaired.stdout
    assert len(_run(env, work, "squeue", "-h").stdout.splitlines()) == 40


def test_doctor_on_a_healthy_store(queued):
    home, env, work = queued
    checked = _run(env, work, "flow", "doctor")
    assert checked.returncode == 0
    assert "ok, 40 job(s), 40 pending or running" in checked.stdout
