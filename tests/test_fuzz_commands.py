"""Random arguments to the query and control commands give SLURM-style errors, never a crash.

Each command's ``main`` runs in this process against a small queue (held jobs, an
array, a finished job); anything but a return code or an SflowError is a bug.
"""

from __future__ import annotations

import contextlib
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sflow.errors import SflowError

WORDS = ["-j", "-t", "all", "-o", "%i %T %.5j", "%", "%.-3", "-O", "JobID,State:5", "-u", "root", "-n", "x",
         "--me", "-h", "-r", "-l", "--start", "-X", "-P", "--parsable2", "-S", "2026-01-01", "-E", "now",
         "-s", "CD,R", "--name", "-p", "debug", "1", "100000", "100001_0", "100001_[0-1]", "999999999",
         "-1", "abc", "show", "job", "node", "partition", "config", "hostnames", "node[1-", "hold", "release",
         "update", "JobId=100000", "TimeLimit=5", "TimeLimit=abc", "requeue", "--signal=USR1", "-s", "KILL",
         "--batch", "-N", "--format=JobID%-5,State%5", "-a", "-e", "-i", "=", ""]
COMMANDS = ["squeue", "sacct", "sinfo", "scontrol", "scancel"]


@pytest.fixture(scope="module")
def queue_home(tmp_path_factory):
    from conftest import REF_CONF
    from sflow.queue import client

    home = str(tmp_path_factory.mktemp("fuzz-home"))
    saved = {k: os.environ.get(k) for k in ("SFLOW_HOME", "SFLOW_CONF")}
    os.environ.update(SFLOW_HOME=home, SFLOW_CONF=REF_CONF)
    from sflow.cli.submit_context import identity

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    for argv in (["-H", "--wrap", "true"], ["-H", "--array=0-3", "--wrap", "true"], ["--wrap", "true"]):
        reply = client.call(home, "submit", argv=argv, env=env, cwd=home, stdin=None, **identity())
        assert reply["ok"], reply
    yield home
    try:
        client.call(home, "scancel_all", start=False)
    except Exception:
        pass
    client.call(home, "shutdown", start=False)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(COMMANDS), st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), max_size=6))
def test_commands_fail_only_with_clean_errors(queue_home, command, argv):
    from importlib import import_module

    main = import_module(f"sflow.cli.cmd_{command}").main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
            message = ""
        except SflowError as caught:
            code, message = caught.exit_code, str(caught)
        except SystemExit as caught:  # --help and --usage paths
            code, message = caught.code, ""
    code = 0 if code is None else code
    assert type(code) is int and 0 <= code <= 255, (command, argv, code)
    # A failure says why: a non-zero code never comes without an error message.
    assert code == 0 or (err.getvalue() + message).strip(), (command, argv, code)
    assert "Traceback" not in err.getvalue()


# argv as Python hands it over: any bytes but NUL, decoded with surrogateescape.
RAW_WORDS = st.binary(min_size=1, max_size=6).filter(lambda b: b"\0" not in b).map(
    lambda b: b.decode("utf-8", "surrogateescape"))
RAW_PREFIXES = ["-n", "--name=", "-o", "-O", "-u", "-p", "-j", "JobName=", "Comment=", "update", "show"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(COMMANDS),
       st.lists(st.one_of(st.sampled_from(WORDS), RAW_WORDS,
                          st.tuples(st.sampled_from(RAW_PREFIXES), RAW_WORDS).map("".join)), max_size=6))
def test_commands_take_any_argv_bytes(queue_home, command, argv):
    """Through the shim's own entry point, writing to byte streams as a terminal would."""
    import sys

    from sflow.cli import shims

    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    saved = sys.argv
    sys.argv = [command, *argv]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                getattr(shims, command)()
                code = 0
            except SystemExit as caught:
                code = caught.code
    finally:
        sys.argv = saved
    code = 0 if code is None else code
    assert type(code) is int and 0 <= code <= 255, (command, argv, code)
    said = out.getvalue() + err.getvalue()
    assert b"internal error" not in said and b"Traceback" not in said, (command, argv, said)
