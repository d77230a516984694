"""scontrol ping: what every SLURM test and health check asks first."""

from __future__ import annotations


def test_ping_says_the_controller_is_up(cluster):
    done = cluster.run("scontrol", "ping")
    assert done.returncode == 0, done.stderr
    # The reference slurm.conf names its controller host "vm" (SlurmctldHost=vm(127.0.0.1)).
    assert done.stdout == "Slurmctld(primary) at vm is UP\n"
