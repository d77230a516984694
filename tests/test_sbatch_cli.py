"""sbatch's shim: what it prints, in SLURM's order."""

from __future__ import annotations

import subprocess


def test_verbose_listing_comes_before_the_job_id(cluster):
    done = subprocess.run(["sbatch", "-v", "--hold", "-J", "ordered", "--wrap", "true"], cwd=cluster.work,
                          env={**cluster.env, "SBATCH_DEBUG": "2", "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert lines[0] == "sbatch: defined options" and lines[-1].startswith("Submitted batch job ")
    # SBATCH_DEBUG sets the level over -v's count, as in SLURM.
    assert "sbatch: verbose             : 2" in lines


def test_sbatch_reads_the_script_as_the_submitting_user_before_submitting(tmp_path):
    from sflow.cli.submit_context import read_script
    from sflow.errors import SlurmError

    (tmp_path / "job.sh").write_bytes(b"#!/bin/sh\necho caf\xe9\n")
    (tmp_path / "dir").mkdir()
    piped = lambda: "#!/bin/sh\npiped\n"  # noqa: E731
    assert read_script(["-J", "x", "job.sh", "arg"], str(tmp_path), stdin=piped) == "#!/bin/sh\necho caf\udce9\n"
    assert read_script([str(tmp_path / "job.sh")], "/", stdin=piped).encode("utf-8", "surrogateescape") == \
        b"#!/bin/sh\necho caf\xe9\n"
    assert read_script(["dir"], str(tmp_path), stdin=piped) == ""  # sbatch then says the script is empty
    assert read_script(["-J", "x"], str(tmp_path), stdin=piped) == "#!/bin/sh\npiped\n"
    assert read_script(["--wrap", "true"], str(tmp_path), stdin=piped) is None
    assert read_script(["--wrap", "true", "missing.sh"], str(tmp_path), stdin=piped) is None  # refused after
    try:
        read_script(["missing.sh"], str(tmp_path), stdin=piped)
    except SlurmError as err:
        assert (err.message, err.exit_code) == ("Unable to open file missing.sh", 1)
    else:
        raise AssertionError("a missing script was read")
