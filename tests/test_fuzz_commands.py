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


# Values an option's parser may choke on: not numbers, numbers out of every range, ranges
# backwards or open, broken brackets and separators.
BAD_VALUES = ["abc", "-1", "0", "1.5", "2abc", "", " ", "%", "=", "99999999999", "4294967295", "4294967296",
              "18446744073709551616", "-99999999999999999999", "1-", "-", "5-2", "1-0", "0-4294967296", "[1-",
              "1_[5-2]", "1_[0-99999999999]", "node[3-1]", "node[1-", "1:2:3:4", "1,,2", "TOP", "+5", "0x10",
              "1e3", "/nonexistent/x", "%x%j%", "UNLIMITED", "-1:00", "1-25:00:00", "now+abc", "gpu:-1",
              "gpu:a:b:c", "afterok:abc", "SIGFOO@-1", "now+99999999999"]
VALUED_COMMANDS = ["sbatch", "srun", "squeue", "scancel", "sacct", "scontrol"]
SCONTROL_KEYS = ["TimeLimit", "Priority", "Nice", "NumNodes", "StartTime", "JobName", "Comment", "Dependency",
                 "ArrayTaskThrottle", "Partition"]


def _valued_options(command: str) -> list[str]:
    from sflow.slurm.options import table

    spelled = []
    for option in table(command).options:
        # --iterate with a value it takes repeats until killed, as SLURM's does: not for a fuzz run.
        if option.arg != "none" and option.long != "iterate":
            spelled.append(f"--{option.long}=")
            if option.short:
                spelled.append(f"-{option.short}")
    return sorted(spelled)


@st.composite
def _bad_command_line(draw):
    command = draw(st.sampled_from(VALUED_COMMANDS))
    value = st.one_of(st.sampled_from(BAD_VALUES), st.text(max_size=5))
    if command == "scontrol":
        key = draw(st.sampled_from(SCONTROL_KEYS))
        target = draw(st.sampled_from(["100000", "100001", "100001_2", *BAD_VALUES]))
        argv = draw(st.sampled_from([["update", f"JobId={target}", f"{key}={draw(value)}"],
                                     ["show", "job", target], ["hold", target], ["release", target],
                                     ["requeue", target], ["show", "hostnames", draw(value)]]))
        return command, argv
    argv: list[str] = []
    for spelled in draw(st.lists(st.sampled_from(_valued_options(command)), min_size=1, max_size=3)):
        argv += [spelled + draw(value)] if spelled.endswith("=") else [spelled, draw(value)]
    if command == "scancel":
        argv.append(draw(st.sampled_from(["100000", *BAD_VALUES])))
    return command, argv


def _run_main(command: str, argv: list[str]) -> tuple[int, str]:
    from importlib import import_module

    import sflow.exec.srun  # noqa: F401  (its defaults are the real streams: imported before redirecting)

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if command == "srun":  # the options only: running a step per example would take minutes
                from sflow.cli.cmd_srun import _request

                _request(argv, env={}, in_job=False)
                code = 0
            else:
                if command == "sbatch":  # held, so that nothing runs
                    argv = ["--hold", *argv, "--wrap", "true"]
                code = import_module(f"sflow.cli.cmd_{command}").main(argv)
            message = ""
        except SflowError as caught:
            code, message = caught.exit_code, str(caught)
        except SystemExit as caught:
            code, message = caught.code, ""
    return (0 if code is None else code), out.getvalue() + err.getvalue() + message


# A few hundred in CI; FUZZ_EXAMPLES=3000 for a search by hand.
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 300)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_bad_command_line())
def test_bad_values_for_every_option_give_slurm_errors(queue_home, command_line):
    """Every option that takes a value, given one it cannot take, fails as SLURM fails: a message
    and an exit code, never an internal error (sbatch's reach the controller and back)."""
    command, argv = command_line
    code, said = _run_main(command, argv)
    assert type(code) is int and 0 <= code <= 255, (command, argv, code)
    assert "internal error" not in said and "Traceback" not in said, (command, argv, said)
    assert code == 0 or said.strip(), (command, argv, code)


@pytest.mark.parametrize("key", SCONTROL_KEYS)
def test_scontrol_update_takes_no_value_badly(queue_home, key):
    """Every value, every key, on a held job: numbers too large for any field included."""
    for value in BAD_VALUES:
        code, said = _run_main("scontrol", ["update", "JobId=100000", f"{key}={value}"])
        assert "internal error" not in said and "Traceback" not in said, (key, value, said)
        assert 0 <= code <= 255 and (code == 0 or said.strip()), (key, value, code)


@pytest.mark.parametrize("command, argv", [("sbatch", ["--wrap", "true"]), ("squeue", []), ("scancel", ["1"]),
                                           ("sacct", []), ("scontrol", ["show", "job"]), ("srun", ["true"]),
                                           ("sinfo", [])])
def test_a_home_that_cannot_be_used_is_an_error(tmp_path, monkeypatch, command, argv):
    from importlib import import_module

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SFLOW_HOME", str(blocker / "state"))
    with pytest.raises(SflowError) as caught:
        import_module(f"sflow.cli.cmd_{command}").main(argv)
    assert caught.value.exit_code == 1
    assert "Unable to use the sflow state directory" in str(caught.value)
