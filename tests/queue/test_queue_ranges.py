"""Huge array and job-id ranges: checked against their bounds before anything is expanded.

Every command here runs under an address-space limit that the controller it starts
inherits, so a range that were materialised would fail the test instead of the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
LIMIT = 1 << 30  # 1 GiB of address space for each command and the controller it starts

BIG_CONF = """\
ClusterName=big
MaxArraySize=4000001
NodeName=n1 CPUs=2 RealMemory=1000
PartitionName=debug Nodes=n1 Default=YES
"""


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


@pytest.fixture
def run(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    conf = tmp_path / "slurm.conf"
    conf.write_text(BIG_CONF)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env.update(SFLOW_HOME=str(home), SFLOW_CONF=str(conf), PYTHONPATH=ROOT,
               PATH=BIN + os.pathsep + env.get("PATH", ""))

    def command(*argv: str):
        return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              preexec_fn=_limited)

    yield command
    from sflow.queue import client

    try:
        client.call(str(home), "shutdown", start=False)
    except Exception:
        pass


@pytest.mark.parametrize("spec", ["0-4294967295", "0-99999999999999999999", "1-5000000:1000000"])
def test_an_array_past_max_array_size_is_refused_at_once(run, spec):
    for argv in (("sbatch", "-H", f"--array={spec}", "--wrap", "true"),):
        done = run(*argv)
        assert done.returncode == 1
        assert done.stderr == "sbatch: error: Batch job submission failed: Invalid job array specification\n"
    with_directive = run("sbatch", "-H", "--wrap", "true")  # the controller is still there
    assert with_directive.returncode == 0


def test_an_array_as_large_as_slurm_allows_is_held_as_runs(run, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH --array=0-4000000\ntrue\n")
    assert run("sbatch", "-H", str(script)).stdout == "Submitted batch job 1\n"
    assert run("squeue", "-h", "-o", "%i %K").stdout.split() == ["1_[0-4000000]", "0-4000000"]
    # scancel reads a range with hostlist rules: 65,536 ids at most.
    refused = run("scancel", "1_[0-99999999]")
    assert refused.returncode == 1
    assert refused.stderr == ("scancel: error: _parse_single_range: Too many hosts in range `0-99999999'\n"
                              "scancel: error: Invalid job id 1_[0-99999999]\n")
    assert run("scancel", "1_[0-65535]").returncode == 0
    assert run("scancel", "1_[70000-70002,80000]").returncode == 0
    assert run("squeue", "-h", "-o", "%K").stdout == "65536-69999,70003-79999,80001-4000000\n"
    assert run("scontrol", "hold", "1_[90000-90001]").returncode == 0
    held = dict(line.split() for line in run("squeue", "-h", "-o", "%i %r").stdout.splitlines())
    # Each held task became a record of its own (root's hold is an administrator's).
    assert held["1_90000"].startswith("JobHeld") and held["1_90001"].startswith("JobHeld")


@pytest.mark.parametrize("argv, stderr, code", [
    (("scancel", "99999999999999999999"), "", 0),  # unknown to SLURM too: a quiet miss
    (("scancel", "1_[0-99999999999999999999]"), "scancel: error: No job identification provided\n", 1),
    (("squeue", "-j", "99999999999999999999"), "squeue: error: Invalid job id: 99999999999999999999\n", 1),
    (("squeue", "-j", "2147483648"), "squeue: error: Invalid job id: 2147483648\n", 1),
    (("squeue", "-j", "1_[0-99999999]"), "squeue: error: Invalid job id: 1_[0-99999999]\n", 1),
    (("scontrol", "hold", "99999999999999999999"), None, 1),
])
def test_ids_past_any_bound_get_slurms_answer(run, argv, stderr, code):
    assert run("sbatch", "-H", "--array=0-9", "--wrap", "true").returncode == 0
    done = run(*argv)
    assert done.returncode == code, done.stderr
    assert "internal error" not in done.stderr
    if stderr is not None:
        assert done.stderr == stderr
