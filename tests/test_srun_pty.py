"""srun --pty on a terminal, against real SLURM 22.05's recorded answers (compat/golden/pty.json):
a shell with job control, the terminal's size and its changes, Ctrl-C and Ctrl-Z reaching the
shell's foreground command, srun's exit code and message, the job's end, inside salloc too;
and srun's own terminal given back as it was on every way out."""

from __future__ import annotations

import json
import os
import sys

import pexpect
import pytest

from conftest import BIN, ROOT, job_allocation
from sflow.records import AllocatedNode

sys.path.insert(0, os.path.join(ROOT, "compat"))
from record_pty import CASES, FOREGROUND, SHELL, clean, play  # noqa: E402

with open(os.path.join(ROOT, "compat", "golden", "pty.json")) as _handle:
    GOLDEN = {case["name"]: case for case in json.load(_handle)}
SFLOW = {name: os.path.join(BIN, name) for name in ("srun", "salloc", "sacct", "squeue")}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_pty_matches_real_slurm(cluster, case):
    played = play(case, SFLOW, {**cluster.env, "TERM": "xterm-256color"}, cluster.work)
    assert played == GOLDEN[case["name"]]


def _outer_shell(env: dict, cwd: str) -> pexpect.spawn:
    child = pexpect.spawn(SHELL[0], SHELL[1:], env={**env, "PS1": "O> "}, cwd=cwd, encoding="utf-8",
                          dimensions=(24, 80), timeout=60)
    child.expect_exact("O> ")
    return child


def _run(child: pexpect.spawn, line: str, prompt: str = "O> ") -> str:
    child.sendline(line)
    child.expect_exact(line + "\r\n")
    child.expect_exact(prompt)
    return clean(child.before)


@pytest.mark.parametrize("how", ["exit 3", "a signal to srun", "no such program"])
def test_terminal_given_back(cluster, how):
    """srun's terminal leaves raw mode however the step ends."""
    child = _outer_shell(cluster.env, cluster.work)
    try:
        before = _run(child, "stty -g")
        if how == "exit 3":
            _run(child, "srun -t1 --pty bash -c 'exit 3'; echo srun=$?")
        elif how == "no such program":
            assert "srun=2" in _run(child, "srun -t1 --pty no-such-program-here; echo srun=$?")
        else:  # the shell on the step's terminal asks srun's SIGHUP on itself, as a closed window would
            _run(child, "PS1='I> ' srun -t1 --pty bash --norc --noprofile", prompt="I> ")
            child.sendline("kill -HUP $PPID")
            child.expect_exact("O> ")
        assert _run(child, "stty -g") == before
        assert "icanon" in _run(child, "stty -a").split()  # cooked, not raw
    finally:
        child.close(force=True)


def test_ctrl_c_is_the_shells_not_sruns(cluster):
    """Ctrl-C in the step's shell leaves srun and the shell running: only the foreground command ends."""
    child = _outer_shell(cluster.env, cluster.work)
    try:
        _run(child, "PS1='I> ' srun -t1 --pty bash --norc --noprofile", prompt="I> ")
        for _ in range(3):
            child.sendline(FOREGROUND)
            child.expect_exact("started")  # printed from the foreground, where Ctrl-C's SIGINT goes
            child.sendcontrol("c")
            child.expect_exact("I> ")
        assert _run(child, "echo still here", prompt="I> ") == "still here\n"
        child.sendline("exit")
        child.expect_exact("O> ")
        assert _run(child, "echo srun=$?") == "srun=0\n"
    finally:
        child.close(force=True)


def test_pty_refused_on_a_node_over_ssh(tmp_path):
    """Mithril instances are reached over SSH: --pty there is refused with SLURM's kind of error."""
    env, _ = job_allocation(tmp_path, 77, nodes=[AllocatedNode("node1", 2, address="10.9.8.7")], tasks_per_node=[1],
                             ntasks=1)
    child = pexpect.spawn(sys.executable, ["-c", "from sflow.cli.shims import srun; srun()", "--pty", "true"],
                          env=env, cwd=str(tmp_path), encoding="utf-8", timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    assert "srun: error: --pty is not supported on a node reached over SSH" in child.before
    assert "Traceback" not in child.before
    assert child.exitstatus == 1


# srun whose relay thread is the only one that can take SIGHUP, as the kernel may choose it
# (busy copying the shell's echo) when the shell on the step's terminal sends srun a SIGHUP.
_SIGNAL_TO_THE_RELAY = """
import signal
from sflow.exec import terminal
start = terminal.Relay.start
def start_and_leave_sighup_to_the_relay(relay):
    start(relay)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
terminal.Relay.start = start_and_leave_sighup_to_the_relay
from sflow.cli.shims import srun
srun()
"""


def test_a_signal_taken_by_another_thread_still_ends_the_step(cluster):
    """Python runs handlers in the main thread only: srun waiting for its tasks still wakes for a
    SIGHUP another of its threads received, and passes it on."""
    child = pexpect.spawn(sys.executable, ["-c", _SIGNAL_TO_THE_RELAY, "-t1", "--pty", "bash", "--norc",
                                           "--noprofile"], env={**cluster.env, "PS1": "I> "}, cwd=cluster.work,
                          encoding="utf-8", dimensions=(24, 80), timeout=60)
    try:
        child.expect_exact("I> ")
        child.sendline("kill -HUP $PPID")
        child.expect(pexpect.EOF)
        child.close()
        assert "Traceback" not in child.before
        assert child.exitstatus == 129  # the shell ended by the SIGHUP srun passed on
    finally:
        child.close(force=True)
