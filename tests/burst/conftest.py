"""The ``cloud_slurm`` fixture: a factory of private SLURM clusters with CLOUD nodes, stopped after the test."""

from __future__ import annotations

import pytest

from .cloud_slurm import CloudSlurm, missing


@pytest.fixture
def cloud_slurm(tmp_path):
    """``cloud_slurm(**kwargs)`` starts a CloudSlurm in the test's tmp dir (kwargs as CloudSlurm's) in
    ``cloud_slurm.root``;
    skips when SLURM, munge or root are missing."""
    why = missing()
    if why:
        pytest.skip(why)
    started = []
    root = str(tmp_path / "slurm")

    def start(**kwargs) -> CloudSlurm:
        slurm = CloudSlurm(root, **kwargs)
        started.append(slurm)
        slurm.start()
        return slurm

    start.root = root  # where write_program puts the power-saving programs before the cluster starts
    yield start
    for slurm in started:
        slurm.stop()
