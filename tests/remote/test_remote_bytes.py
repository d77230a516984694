"""Values of any bytes reach a remote host as those bytes, though SSH carries the command as UTF-8."""

from __future__ import annotations

import os
import subprocess

from remote_harness import NAMES, client, key, known, pool, targets  # noqa: F401
from sflow.remote.command import build_command

VALUES = {"LATIN": "caf\udce9\udcff", "MIXED": "\udce9 'q' \\n \\c $(id) na\u00efve", "PLAIN": "x\\0101"}


def test_the_command_line_is_utf8_and_the_shell_restores_the_bytes():
    line = build_command('printf "%s|%s|%s|%s\\n" "$LATIN" "$MIXED" "$PLAIN" "$1"', VALUES, "/tmp",
                         report_pgid=False)
    line.encode("utf-8")  # what SSH will carry
    for shell in ("/bin/sh", "/bin/bash"):
        done = subprocess.run([shell, "-c", line], capture_output=True, timeout=30)
        assert done.stdout == "caf\udce9\udcff|\udce9 'q' \\n \\c $(id) na\u00efve|x\\0101|\n".encode(
            "utf-8", "surrogateescape"), (shell, done)


def test_any_bytes_in_environment_directory_and_command(client, targets, pool):
    root = os.fsencode(pool.get(NAMES[0]).root)
    os.makedirs(os.path.join(root, b"d\xe9"))
    result = client.run(targets[0], "printf '%s|%s|' \"$LATIN\" \xe9\udce9\udcfe; pwd", env=VALUES,
                        cwd=os.fsdecode(os.path.join(root, b"d\xe9")))
    assert result.exit_status == 0, result.stderr
    assert result.stdout == b"caf\xe9\xff|\xc3\xa9\xe9\xfe|" + os.path.join(root, b"d\xe9") + b"\n"
