"""A state directory this user cannot use stops every command with an error, as real SLURM's
commands stop when they cannot read their configuration (compat/golden/unreadable_state.json).

Root reads anything, so as root the commands run without the capabilities that bypass file
permissions (``setpriv``): the kernel then refuses as it would for any other user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

GOLDEN = json.load(open(os.path.join(ROOT, "compat", "golden", "unreadable_state.json")))
NO_BYPASS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"] if os.getuid() == 0 else []

if NO_BYPASS and not shutil.which("setpriv"):
    pytest.skip("as root, needs setpriv to give up reading everything", allow_module_level=True)


@pytest.fixture
def locked_home(cluster):
    submitted = cluster.run("sbatch", "--hold", "--wrap", "true")  # a store with a job in it
    assert submitted.returncode == 0, submitted.stderr
    os.chmod(cluster.home, 0)
    yield cluster
    os.chmod(cluster.home, 0o700)


@pytest.mark.parametrize("record", GOLDEN, ids=[" ".join(r["argv"]) for r in GOLDEN])
def test_unusable_home_is_an_error_for_every_command(locked_home, record):
    argv = record["argv"]
    done = locked_home.run(*NO_BYPASS, *argv, timeout=60)
    assert done.returncode == record["exit_code"], done.stderr
    assert done.stdout == record["stdout"] == ""  # no empty queue as if nothing were there
    assert done.stderr == (f"{argv[0]}: error: Unable to use the sflow state directory {locked_home.home} "
                           "(SFLOW_HOME): Permission denied\n")
    assert all(line.startswith(f"{argv[0]}: ") for line in record["stderr"].splitlines())


def test_a_file_for_a_home_is_named(cluster, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {**cluster.env, "SFLOW_HOME": str(blocker)}
    done = subprocess.run(["squeue"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"squeue: error: Unable to use the sflow state directory {blocker} (SFLOW_HOME): Not a directory\n"
