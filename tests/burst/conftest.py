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


@pytest.fixture
def burst_site(tmp_path):
    """``burst_site(**kwargs)`` starts a BurstSite (kwargs as BurstSite's: limit_price, resume_timeout...):
    real SLURM with cloud nodes, sflow's programs and service, the Mithril emulator with SSH instances;
    all stopped after the test. Skips where the private SLURM cannot run."""
    from .real_chain import BurstSite

    started = []

    def start(**kwargs) -> BurstSite:
        why = missing(True)
        if why:
            pytest.skip(why)
        site = BurstSite(str(tmp_path / "burst"), **kwargs)
        started.append(site)
        site.start()
        return site

    yield start
    for site in started:
        site.stop()
