"""Turning a won instance into a SLURM node: slurmd started on it with the node's name.

``NodeBooter`` is the seam: the service hands each node of an allocation to one,
off its loop (a boot takes an SSH connection and seconds). ``SshBooter`` is the
real one; tests record the calls.
"""

from __future__ import annotations

import os
from typing import Protocol

from sflow.burst.settings import DEFAULT_BOOT_COMMAND, boot_command

BOOT_TIMEOUT = 300.0


class BootFailed(Exception):
    pass


class NodeBooter(Protocol):
    def boot(self, node_name: str, ssh_destination: str, conf_server: str, instance: str | None = None) -> None:
        """Start slurmd as ``node_name`` on the instance at ``ssh_destination`` (``host[:port]``),
        fetching its configuration from ``conf_server`` (``host[:port]``); raises ``BootFailed``."""


class SshBooter:
    """burst.toml's ``boot_command`` (by default slurmd itself) over SSH with sflow's own key, the
    instance's host key pinned on first contact (sflow.remote); the key and the pins live in the
    state directory."""

    def __init__(self, state_dir: str, command: str = DEFAULT_BOOT_COMMAND):
        self.state_dir = state_dir
        self.command = command
        self._client = None

    def client(self):
        if self._client is None:
            # Deferred: the service loads asyncssh only once it boots a node.
            from sflow.remote.client import SshClient
            from sflow.remote.keys import client_key
            from sflow.remote.knownhosts import KnownHosts

            self._client = SshClient(key=client_key(self.state_dir),
                                     known_hosts=KnownHosts(os.path.join(self.state_dir, "known_hosts")))
        return self._client

    def boot(self, node_name: str, ssh_destination: str, conf_server: str, instance: str | None = None) -> None:
        from sflow.remote.ssh import Target

        user, at, address = ssh_destination.rpartition("@")
        target = Target(address, pin=instance, **({"user": user} if at and user else {}))
        try:
            result = self.client().run(target, boot_command(self.command, node_name, conf_server),
                                       timeout=BOOT_TIMEOUT)
        except Exception as err:  # unreachable, host key changed...: the node is down with why
            raise BootFailed(f"{node_name}: {err}") from None
        if not result.ok:
            raise BootFailed(f"{node_name}: the boot command exited with status {result.returncode}")


__all__ = ["BootFailed", "NodeBooter", "SshBooter"]
