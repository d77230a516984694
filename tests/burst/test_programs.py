"""slurmctld's power-saving programs: one request row each, the service started, a one-line error otherwise."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

import pytest

from .burst_harness import settings_toml, wait_for
from sflow.burst import store
from sflow.burst.programs import lock_path, service_running

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAINS = {"sflow-burst-resume": "resume_main", "sflow-burst-suspend": "suspend_main",
         "sflow-burst-resume-fail": "resume_fail_main"}


def program(name: str, *args: str, env: dict, **options) -> subprocess.CompletedProcess:
    """The console script's entry point, as pip installs it."""
    code = f"import sys; sys.argv[0] = {name!r}; from sflow.burst.programs import {MAINS[name]}; {MAINS[name]}()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=60, **options)


@pytest.fixture
def site(tmp_path):
    state = str(tmp_path / "state")
    config = tmp_path / "burst.toml"
    config.write_text(settings_toml(state, "http://127.0.0.1:9"))
    env = {**os.environ, "SFLOW_BURST_CONFIG": str(config), "PYTHONPATH": ROOT}
    env.pop("SLURM_RESUME_FILE", None)
    return state, config, env


@pytest.fixture
def held(site):
    """The service's lock held here, as a running service holds it: the programs start none."""
    state = site[0]
    os.makedirs(state, mode=0o700, exist_ok=True)
    fd = os.open(lock_path(state), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield site
    os.close(fd)


def requests(state: str) -> list[store.Request]:
    conn = store.open_store(state)
    try:
        return [store.Request(*r[:3], json.loads(r[3]) if r[3] else None, *r[4:])
                for r in conn.execute("SELECT seq, kind, hostlist, payload, received, taken FROM requests")]
    finally:
        conn.close()


def test_resume_records_the_nodes_and_the_jobs_that_got_them(held, tmp_path):
    state, _, env = held
    resume_file = tmp_path / "resume.json"
    payload = {"jobs": [{"job_id": 12, "nodes": "mithril-gpu-[1-2]"}], "all_nodes": "mithril-gpu-[1-3]"}
    resume_file.write_text(json.dumps(payload))
    done = program("sflow-burst-resume", "mithril-gpu-[1-3]", env={**env, "SLURM_RESUME_FILE": str(resume_file)})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    done = program("sflow-burst-suspend", "mithril-gpu-3", env=env)
    assert done.returncode == 0 and done.stderr == ""
    done = program("sflow-burst-resume-fail", "mithril-gpu-[1-2]", env=env)
    assert done.returncode == 0 and done.stderr == ""
    rows = requests(state)
    assert [(r.kind, r.hostlist, r.payload) for r in rows] == [
        ("resume", "mithril-gpu-[1-3]", payload), ("suspend", "mithril-gpu-3", None),
        ("resume_fail", "mithril-gpu-[1-2]", None)]
    assert os.stat(state).st_mode & 0o777 == 0o700
    assert os.stat(store.db_path(state)).st_mode & 0o777 == 0o600


def test_bad_input_is_one_line_and_status_1(site, tmp_path):
    state, config, env = site
    done = program("sflow-burst-resume", env=env)
    assert (done.returncode, done.stderr) == (
        1, "sflow-burst-resume: error: expected one argument: the nodes, as a hostlist\n")
    done = program("sflow-burst-suspend", "n1", env={**env, "SFLOW_BURST_CONFIG": str(tmp_path / "none.toml")})
    assert done.returncode == 1
    assert re.fullmatch(r"sflow-burst-suspend: error: cannot read \S+none.toml: No such file or directory\n",
                        done.stderr), done.stderr
    config.write_text("[burst\n")
    done = program("sflow-burst-resume-fail", "n1", env=env)
    assert done.returncode == 1 and done.stderr.startswith("sflow-burst-resume-fail: error: ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    config.write_text(settings_toml(state, "http://127.0.0.1:9"))
    done = program("sflow-burst-resume", "n1", env={**env, "SLURM_RESUME_FILE": str(tmp_path / "gone.json")})
    assert done.returncode == 1 and done.stderr.startswith("sflow-burst-resume: error: cannot read SLURM_RESUME_FILE")
    assert not os.path.exists(store.db_path(state)), "nothing is recorded from a request that could not be read"


def test_a_program_starts_the_service_when_none_runs(site):
    state, _, env = site
    done = program("sflow-burst-suspend", "mithril-gpu-1", env=env)
    assert done.returncode == 0, done.stderr
    try:
        assert wait_for(lambda: service_running(state), timeout=60)
        assert wait_for(lambda: all(r.taken is not None for r in requests(state)), timeout=60)
    finally:
        with open(os.path.join(state, "service.log")) as handle:
            log = handle.read()
        pids = re.findall(r"started \(pid (\d+)\)", log)
        assert pids, log
        os.kill(int(pids[-1]), signal.SIGTERM)
    assert wait_for(lambda: not service_running(state), timeout=30)


def test_resume_is_fast(held, capsys):
    state, _, env = held
    times = []
    for i in range(9):
        started = time.monotonic()
        done = program("sflow-burst-resume", f"mithril-gpu-{i % 4 + 1}", env=env)
        times.append(time.monotonic() - started)
        assert done.returncode == 0, done.stderr
    assert len(requests(state)) == 9
    with capsys.disabled():
        print(f"\nsflow-burst-resume: median {statistics.median(times) * 1000:.0f} ms over {len(times)} calls")
