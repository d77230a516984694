"""The ``cloud_slurm`` fixture: a factory of private SLURM clusters with CLOUD nodes, stopped after the test."""

from __future__ import annotations

import pytest

from .cloud_slurm import CloudSlurm, missing


@pytest.fixture
def cloud_slurm(tmp_path):
    """``cloud_slurm(**kwargs)`` starts a CloudSlurm (kwargs as CloudSlurm's) in directory
    ``cloud_slurm.root`` of the test's tmp dir; skips when SLURM, munge, MariaDB or root are missing."""
    started = []
    root = str(tmp_path / "slurm")

    def start(**kwargs) -> CloudSlurm:
        why = missing(kwargs.get("with_dbd", True))
        if why:
            pytest.skip(why)
        slurm = CloudSlurm(root, **kwargs)
        started.append(slurm)
        slurm.start()
        return slurm

    start.root = root  # where write_program puts the power-saving programs before the cluster starts
    yield start
    for slurm in started:
        slurm.stop()
