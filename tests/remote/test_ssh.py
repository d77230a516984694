"""sflow's SSH client against emulated instances: fan-out, exit codes, stdin, quoting, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest

from remote_harness import NAMES, client, key, known, pid_alive, pool, targets, wait_for, wait_for_file  # noqa: F401
from sflow.remote import ssh
from sflow.remote.command import PGID_MARKER, SecretRefused, build_command
from sflow.remote.ssh import Result, Target, run_all, split_address

HOSTILE = {
    "SPACES": "two  words   apart",
    "SINGLE": "it's 'quoted'",
    "DOUBLE": 'say "hi" \\ there',
    "SUBST": "$(touch pwned-subst) `touch pwned-tick` ${HOME}",
    "NEWLINES": "line one\nline two\n\n; touch pwned-nl\n",
    "SEMICOLON": "a; touch pwned-semi; b && c || d | e & f",
    "GLOBS": "* ? [a-z] ~ ~root",
    "EMPTY": "",
    "DASH": "-n -e --",
    "UNICODE": "naïve → ☃",
}


def test_fan_out_runs_on_every_host_at_once(client, targets):
    start = time.monotonic()
    results = client.run_all(targets, "sleep 1; hostname")
    elapsed = time.monotonic() - start
    assert [r.error for r in results] == [None] * 4
    names = [r.stdout.decode().strip() for r in results]
    assert names == NAMES and len(set(names)) == 4  # in the targets' order, each its own host
    # One after another would take 4 s; a loaded machine may add a second, never two.
    assert elapsed < 3.0, f"4 x 1 s took {elapsed:.2f} s: not concurrent"


def test_async_fan_out_with_one_shot_connections(key, known, targets):
    seen = []
    results = asyncio.run(run_all(targets, "hostname", key=key, known_hosts=known,
                                  on_stdout=lambda target, data: seen.append((target.pin, data))))
    assert sorted(r.stdout.decode().strip() for r in results) == NAMES
    assert sorted(seen) == sorted((name, f"{name}\n".encode()) for name in NAMES)


def test_exit_codes_and_stderr(client, targets):
    results = client.run_all(targets, 'echo "to err" >&2; exit $((${#SFLOW_HOSTNAME} + 10))')
    assert [r.returncode for r in results] == [len(n) + 10 for n in NAMES]
    assert all(r.stderr == b"to err\n" and not r.ok for r in results)
    assert client.run(targets[0], "true").ok
    assert client.run(targets[0], "exit 255").returncode == 255
    # A missing command is the shell's 127, reported like any exit status.
    missing = client.run(targets[0], "no-such-command-here")
    assert missing.returncode == 127 and missing.error is None


def test_unreachable_host_is_a_result_not_an_exception(client, targets):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens once it is closed
    dead = Target(f"127.0.0.1:{port}", pin="gone")
    results = client.run_all([targets[0], dead], "hostname")
    assert results[0].ok
    assert results[1].returncode == 255 and "gone" in results[1].error and results[1].exit_status is None


def test_stdin_reaches_the_remote_command(client, targets):
    payload = bytes(range(256)) * 300 + b"end"
    result = client.run(targets[1], "cat; printf '|%s' done", stdin=payload)
    assert result.stdout == payload + b"|done"
    counted = client.run(targets[1], "wc -l", stdin=b"a\nb\nc\n")
    assert counted.stdout.strip() == b"3"


def test_stdin_can_be_streamed_while_output_streams_back(client, targets):
    chunks = []
    proc = client.start(targets[2], "while read -r line; do echo \"got $line\"; done",
                        keep_stdin_open=True, on_stdout=chunks.append)
    proc.write(b"first\n")
    assert wait_for(lambda: b"".join(chunks) == b"got first\n")  # arrived before stdin ended
    proc.write(b"second\n")
    proc.close_stdin()
    result = proc.wait(10)
    assert result.stdout == b"got first\ngot second\n" and result.exit_status == 0


def test_hostile_environment_values_arrive_verbatim(client, targets, pool):
    names = " ".join(f'"${name}"' for name in HOSTILE)
    result = client.run(targets[0], f"for v in {names}; do printf '%s\\0' \"$v\"; done", env=HOSTILE)
    assert result.exit_status == 0, result.stderr
    assert result.stdout.decode().split("\0")[:-1] == list(HOSTILE.values())
    assert not [f for f in os.listdir(pool.get(NAMES[0]).root) if f.startswith("pwned")]


def test_hostile_working_directory_and_unusable_names(client, targets, pool):
    weird = "dir with 'quote' $(touch pwned-cwd) ;x\n"
    os.makedirs(os.path.join(pool.get(NAMES[0]).root, weird))
    env = {"OK": "1", "BASH_FUNC_module%%": "() { echo hi; }", "1BAD": "x"}
    result = client.run(targets[0], 'pwd; printf "%s" "$OK"', env=env, cwd=weird)
    assert result.stdout.decode() == os.path.join(pool.get(NAMES[0]).root, weird) + "\n1"
    assert not [f for f in os.listdir(pool.get(NAMES[0]).root) if f.startswith("pwned")]
    missing = client.run(targets[0], "pwd", cwd="no such dir")
    assert missing.returncode == 1 and missing.stdout == b""


def test_every_value_in_the_command_line_is_quoted():
    line = build_command("echo hi", {"A": "x; rm -rf ~", "B": "$(id)"}, "/tmp/a b")
    # The user's values only ever occur inside single quotes (shlex.quote's form).
    assert "x; rm -rf ~" not in line.replace("'\"'\"'", "'").replace("'x; rm -rf ~'", "")
    assert line.startswith("exec /bin/sh -c '")


def test_secrets_never_reach_a_remote_host(client, targets, monkeypatch):
    monkeypatch.setenv("MITHRIL_API_KEY", "fkey_verysecret")
    result = client.run(targets[0], 'printf "[%s]" "${MITHRIL_API_KEY-unset}"',
                        env={"MITHRIL_API_KEY": "fkey_verysecret", "KEEP": "1"})
    assert result.stdout == b"[unset]"
    with pytest.raises(SecretRefused):
        client.run(targets[0], "echo fkey_verysecret")
    with pytest.raises(SecretRefused):
        client.run(targets[0], "true", env={"SNEAKY": "token=fkey_verysecret"})


def test_output_streams_while_the_command_runs(client, targets):
    arrivals = []
    proc = client.start(targets[3], "echo early; sleep 1; echo late",
                        on_stdout=lambda data: arrivals.append((time.monotonic(), data)))
    result = proc.wait(10)
    assert result.stdout == b"early\nlate\n"
    # "early" came on its own, a good while before "late" was even written.
    assert arrivals[0][1] == b"early\n" and arrivals[-1][0] - arrivals[0][0] > 0.5


def test_the_process_group_marker_is_not_output(client, targets):
    result = client.run(targets[0], "echo real error >&2")
    assert result.stderr == b"real error\n"
    proc = client.start(targets[0], "echo $$; exec sleep 5")
    assert wait_for(lambda: proc.pgid is not None)
    assert proc.signal(signal.SIGKILL)
    result = proc.wait(10)
    assert PGID_MARKER not in result.stderr and result.signal == signal.SIGKILL
    assert int(result.stdout) == proc.pgid


def test_signal_kills_the_remote_process_group(client, targets, pool):
    root = pool.get(NAMES[1]).root
    proc = client.start(targets[1], "sleep 60 & echo $! > child.pid; sleep 60; echo not reached")
    child = int(wait_for_file(os.path.join(root, "child.pid")))
    assert pid_alive(child)
    assert proc.signal(signal.SIGTERM)
    result = proc.wait(10)
    assert result.signal == signal.SIGTERM and result.returncode == -signal.SIGTERM
    assert b"not reached" not in result.stdout
    assert wait_for(lambda: not pid_alive(child))


def test_signal_reaches_the_group_where_sshd_ignores_channel_signals(client, targets, pool, monkeypatch):
    # OpenSSH delivers a channel signal to the session's own process only, if at all;
    # the group is reached by pid instead.
    from sflow.mithril.sshhost import _CommandChannel

    monkeypatch.setattr(_CommandChannel, "signal_received", lambda self, signal: None)
    root = pool.get(NAMES[3]).root
    proc = client.start(targets[3], "sleep 60 & echo $! > child2.pid; sleep 60")
    child = int(wait_for_file(os.path.join(root, "child2.pid")))
    assert proc.signal(signal.SIGTERM)
    assert proc.wait(10).signal == signal.SIGTERM
    assert wait_for(lambda: not pid_alive(child))


def test_sigkill_ends_what_ignores_sigterm(client, targets, pool):
    root = pool.get(NAMES[2]).root
    proc = client.start(targets[2], "trap '' TERM; echo ready > ready.txt; while :; do sleep 0.05; done")
    wait_for_file(os.path.join(root, "ready.txt"))
    assert proc.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert not proc.process.done
    assert proc.signal(signal.SIGKILL)
    assert proc.wait(10).signal == signal.SIGKILL
    assert not proc.signal(signal.SIGTERM)  # nothing left to signal


def test_split_address():
    assert split_address("10.0.0.5") == ("10.0.0.5", 22)
    assert split_address("127.0.0.1:2222") == ("127.0.0.1", 2222)
    assert split_address("[::1]:2200") == ("::1", 2200)
    assert split_address("host.example") == ("host.example", 22)
    assert Target("1.2.3.4:5").label == "1.2.3.4:5" and Target("1.2.3.4", pin="i-1").label == "i-1"


def test_returncode_follows_subprocess():
    t = Target("h")
    assert Result(t, exit_status=3).returncode == 3
    assert Result(t, signal=9).returncode == -9
    assert Result(t, error="down").returncode == 255


def test_connection_is_reused_between_calls(client, targets):
    first = client.connection(targets[0])
    client.run(targets[0], "true")
    assert client.connection(targets[0]) is first
    asyncio.run_coroutine_threadsafe(first.close(), client._loop.loop).result(5)
    assert client.run(targets[0], "hostname").stdout == b"gpu-a\n"  # reconnected
    assert client.connection(targets[0]) is not first
    assert isinstance(first, ssh.Connection)
