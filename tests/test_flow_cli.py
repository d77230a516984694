"""``flow``: run (submit and follow), status, logs, cancel, dry runs; through the installed command."""

from __future__ import annotations

import json
import os
import re
import time

from conftest import copy_examples


def test_flow_run_streams_the_output_and_exits_with_the_jobs_code(cluster):
    copy_examples(cluster.work)
    done = cluster.run("flow", "run", "hello.slurm", timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"job \d+ \(hello\) on node1, 2 tasks", lines[0]), done.stdout
    assert sorted(lines[1:]) == ["hello from task 0 of 2 on node1", "hello from task 1 of 2 on node1"]
    job_id = re.search(r"job (\d+)", lines[0]).group(1)
    # What was streamed is what the job wrote to its output file.
    with open(os.path.join(cluster.work, f"hello-{job_id}.out")) as handle:
        assert handle.read() == done.stdout
    assert f"flow: submitted batch job {job_id}" in done.stderr


def test_flow_run_takes_sbatch_options_and_returns_a_failing_code(cluster):
    done = cluster.run("flow", "run", "-J", "bad", "--wrap", "echo before; exit 7", timeout=60)
    assert (done.returncode, done.stdout) == (7, "before\n"), done.stderr


def test_flow_run_bad_input_is_an_sbatch_error_not_a_traceback(cluster):
    done = cluster.run("flow", "run", "--nodes=abc", "--wrap", "true")
    assert (done.returncode, done.stderr) == (255, 'sbatch: error: "abc" is not a valid node count\n')


def test_flow_run_dry_run_prints_the_request(cluster):
    copy_examples(cluster.work)
    people = cluster.run("flow", "run", "--dry-run", "hello.slurm")
    assert people.returncode == 0, people.stderr
    described = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in people.stdout.splitlines())
    assert described["job name"] == "hello" and described["script"] == os.path.join(cluster.work, "hello.slurm")
    assert (described["nodes"], described["tasks"], described["time limit"]) == ("1", "2", "00:05:00")
    assert described["output"] == "hello-%j.out"
    programs = cluster.run("flow", "run", "--dry-run", "--json", "-N", "2", "hello.slurm")
    request = json.loads(programs.stdout)
    assert (request["job_name"], request["min_nodes"], request["time_limit"]) == ("hello", 2, 5)
    assert cluster.run("squeue", "-h").stdout == ""  # nothing was submitted


def test_flow_status_logs_and_cancel(cluster):
    job_id = cluster.run("sbatch", "--parsable", "-J", "long", "--wrap", "echo started; sleep 60").stdout.strip()
    deadline = time.time() + 30
    while time.time() < deadline and "started" not in cluster.run("flow", "logs", job_id).stdout:
        time.sleep(0.2)
    assert cluster.run("flow", "logs", job_id).stdout == "started\n"
    status = cluster.run("flow", "status", job_id)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1].split()[:5] == [job_id, "debug", "long", cluster.user, "R"], status.stdout
    assert cluster.run("flow", "cancel", job_id).returncode == 0
    deadline = time.time() + 30
    while time.time() < deadline and " CA " not in cluster.run("flow", "status", job_id).stdout:
        time.sleep(0.2)
    assert cluster.run("flow", "status", job_id).stdout.splitlines()[1].split()[4] == "CA"


def test_flow_init_saves_the_key_from_stdin_readable_by_the_owner_only(tmp_path):
    import stat
    import subprocess

    from sflow.mithril.emulator import start_emulator

    config = tmp_path / "conf" / "config.toml"
    env = {**os.environ, "SFLOW_CONFIG": str(config), "SFLOW_HOME": str(tmp_path / "home")}
    env.pop("MITHRIL_API_KEY", None)
    with start_emulator(api_key="fkey_right") as emulator:
        wrong = subprocess.run(["flow", "init", "--api-url", emulator.url], input="fkey_wrong\n", env=env,
                               capture_output=True, text=True)
        assert wrong.returncode == 1 and not config.exists()
        assert "fkey_wrong" not in wrong.stdout + wrong.stderr and "Traceback" not in wrong.stderr
        right = subprocess.run(["flow", "init", "--api-url", emulator.url], input="fkey_right\n", env=env,
                               capture_output=True, text=True)
    assert right.returncode == 0, right.stderr
    assert "fkey_right" not in right.stdout + right.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert 'api_key = "fkey_right"' in config.read_text()
