"""The ``cloud_slurm`` fixture: a factory of private SLURM clusters with CLOUD nodes, stopped after the test."""

from __future__ import annotations

import pytest

from .cloud_slurm import CloudSlurm, missing


@pytest.fixture
def cloud_slurm(tmp_path):
    """``cloud_slurm(**kwargs)`` starts a CloudSlurm in the test's tmp dir (kwargs as CloudSlurm's);
    skips when SLURM, munge or root are missing."""
    why = missing()
    if why:
        pytest.skip(why)
    started = []

    def start(**kwargs) -> CloudSlurm:
        slurm = CloudSlurm(str(tmp_path / "slurm"), **kwargs)
        started.append(slurm)
        slurm.start()
        return slurm

    yield start
    for slurm in started:
        slurm.stop()
