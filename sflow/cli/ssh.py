"""``flow ssh JOB [--node N] [-- COMMAND...]``: a shell (or a command) on a running job's node.

On Mithril the system ``ssh`` logs in as ``ubuntu`` with sflow's key and
trusts exactly one host key: the one pinned for that instance when the job's
agent first reached it (``$SFLOW_HOME/known_hosts``). The pin is copied into a
file of its own, named by the instance id (``HostKeyAlias``), and host key
checking is strict: a changed key is refused, never learned.

A local job's nodes are this machine: the command (or your shell) runs here,
in the node's working root.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

from sflow.cli.common import home, reader
from sflow.errors import SflowError
from sflow.exec.srun import load_context
from sflow.remote.keys import key_path
from sflow.remote.knownhosts import KnownHosts
from sflow.remote.ssh import DEFAULT_USER, split_address


class SshRefused(SflowError):
    """The job has no node to log in to (unknown, not running, no such node)."""


def _say(text: str) -> None:
    print(f"flow: {text}", file=sys.stderr, flush=True)


def running_job(job_id: int):
    """The job's record and context; refused unless it runs now."""
    job = reader().job(job_id)
    if job is None:
        raise SshRefused(f"no job {job_id}")
    if job.state == "PENDING":
        raise SshRefused(f"job {job_id} is pending ({job.reason}); it has no nodes yet")
    if job.state not in ("RUNNING", "COMPLETING", "SUSPENDED"):
        raise SshRefused(f"job {job_id} is {job.state}; its nodes are gone")
    context = load_context(home(), job_id)
    if context is None or not context.nodes:
        raise SshRefused(f"job {job_id} is starting; try again in a moment")
    return job, context


def pick_node(context, index: int):
    count = len(context.nodes)
    if not 0 <= index < count:
        nodes = "node 0" if count == 1 else f"nodes 0-{count - 1}"
        raise SshRefused(f"job {context.job_id} has {count} node{'s' if count != 1 else ''} ({nodes}); "
                         f"there is no node {index}")
    return context.nodes[index]


def remote_command(words: list[str]) -> str | None:
    """One word is shell text (``'nvidia-smi | head'``); several are quoted each, as given."""
    if not words:
        return None
    return words[0] if len(words) == 1 else shlex.join(words)


def pin_file(node, directory: str) -> str:
    """A known-hosts file holding only the node's pinned key, under its instance id."""
    host, port = split_address(node.address)
    known = KnownHosts()
    keys = known.pinned(node.instance, host, port)
    if not keys:
        raise SshRefused(f"no host key is pinned for {node.name} ({node.instance or node.address}) in "
                         f"{known.path}; the job's agent pins it when it first connects")
    path = os.path.join(directory, "known_hosts")
    alias = node.instance or node.address
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.writelines(f"{alias} {key.export_public_key('openssh').decode().strip()}\n" for key in keys)
    return path


def ssh_argv(node, known_hosts: str, key_path: str, command: str | None, tty: bool) -> list[str]:
    host, port = split_address(node.address)
    argv = ["ssh", "-i", key_path, "-p", str(port),
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", f"HostKeyAlias={node.instance or node.address}",
            "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no",
            "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey", "-o", "BatchMode=yes"]
    if tty and command is None:
        argv.append("-t")
    # "--" before the destination: nothing after it is read as an option.
    argv += ["--", f"{DEFAULT_USER}@{host}"]
    if command is not None:
        argv.append(command)
    return argv


def _call(argv: list[str], **kwargs) -> int:
    """Run a child in the foreground: Ctrl-C is the child's to handle, not ours."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.call(argv, **kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)


def ssh_to_mithril(job, node, command: str | None) -> int:
    if shutil.which("ssh") is None:
        raise SshRefused("no ssh command on PATH (install openssh-client)")
    key = key_path(home())
    if not os.path.exists(key):
        raise SshRefused(f"sflow's SSH key {key} is missing")
    with tempfile.TemporaryDirectory(prefix="flow-ssh-") as directory:
        argv = ssh_argv(node, pin_file(node, directory), key, command, sys.stdin.isatty())
        code = _call(argv)
    if code == 255:
        _say(f"ssh exited with 255: the connection to {node.name} ({node.address}) failed, or its host key is "
             f"not the one pinned in {os.path.join(home(), 'known_hosts')}")
    return code


def run_on_local_node(job, node, command: str | None) -> int:
    """A local job's node is this machine: run in its working root."""
    root = node.root_dir or job.work_dir
    _say(f"job {job.job_id} runs on the local backend: node {node.name} is this machine; "
         f"running in its working root {root}")
    argv = ["/bin/sh", "-c", command] if command is not None else [os.environ.get("SHELL") or "/bin/sh"]
    env = {**os.environ, "SLURM_JOB_ID": str(job.job_id), "SLURMD_NODENAME": node.name}
    return _call(argv, cwd=root if os.path.isdir(root) else None, env=env)


def main(job_id: int, index: int, words: list[str]) -> int:
    job, context = running_job(job_id)
    node = pick_node(context, index)
    command = remote_command(words)
    if job.backend == "mithril" or node.address:
        return ssh_to_mithril(job, node, command)
    return run_on_local_node(job, node, command)


__all__ = ["SshRefused", "main", "pick_node", "pin_file", "remote_command", "running_job", "ssh_argv"]
