"""Running jobs on remote machines over SSH: host-key pinning, the client key,
fan-out command execution, staging files in and following output back."""

from sflow.remote.client import SshClient, SyncProcess
from sflow.remote.keys import client_key, key_path, public_key
from sflow.remote.knownhosts import HostKeyChanged, KnownHosts
from sflow.remote.ssh import Connection, RemoteError, RemoteProcess, Result, Target, connect, run_all
from sflow.remote.stage import Follower, SyncFollower, stage

__all__ = ["Connection", "Follower", "HostKeyChanged", "KnownHosts", "RemoteError", "RemoteProcess", "Result",
           "SshClient", "SyncFollower", "SyncProcess", "Target", "client_key", "connect", "key_path", "public_key",
           "run_all", "stage"]
