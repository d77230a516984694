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
