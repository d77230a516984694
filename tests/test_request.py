"""The request builder: precedence, derived values, secrets, and no tracebacks on any input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sflow.errors import SflowError, SlurmError
from sflow.slurm.request import parse_sbatch

IDENT = dict(user="alice", uid=1000, gid=1000, host="login1")


def parse(tmp_path, argv, script=None, env=None):
    if script is not None:
        argv = [*argv, "job.sh"]
    return parse_sbatch(argv, env=env or {}, cwd=str(tmp_path), script_text=script, **IDENT)


def test_precedence_cli_over_env_over_directive(tmp_path):
    script = "#!/bin/sh\n#SBATCH -t 5 -J fromscript -p debug\ntrue\n"
    req = parse(tmp_path, [], script).request
    assert (req.time_limit, req.job_name) == (5, "fromscript")
    req = parse(tmp_path, [], script, env={"SBATCH_TIMELIMIT": "7", "SBATCH_JOB_NAME": "fromenv"}).request
    assert (req.time_limit, req.job_name) == (7, "fromenv")
    req = parse(tmp_path, ["-t", "9"], script, env={"SBATCH_TIMELIMIT": "7"}).request
    assert req.time_limit == 9


def test_sflow_directives_and_variables(tmp_path):
    script = "#!/bin/sh\n#SFLOW --limit-price=$16.00 --instance-type=8xh100\n#SFLOW --reserved\ntrue\n"
    cloud = parse(tmp_path, [], script).request.cloud
    assert (cloud.limit_price, cloud.instance_type, cloud.capacity) == ("$16.00", "8xh100", "reserved")
    cloud = parse(tmp_path, [], script, env={"SFLOW_LIMIT_PRICE": "$9"}).request.cloud
    assert cloud.limit_price == "$9"


def test_derived_task_counts(tmp_path):
    script = "#!/bin/sh\ntrue\n"
    assert parse(tmp_path, ["-N2"], script).request.ntasks == 2
    assert parse(tmp_path, ["-N2", "--ntasks-per-node=3"], script).request.ntasks == 6
    assert parse(tmp_path, ["-N2", "-n3"], script).request.ntasks == 3
    assert parse(tmp_path, ["--nodelist=n[1-3]"], script).request.min_nodes == 3


def test_directive_errors_name_their_line(tmp_path):
    with pytest.raises(SlurmError) as caught:
        parse(tmp_path, [], "#!/bin/sh\n\n#SBATCH --time=never\ntrue\n")
    assert caught.value.line == 3 and caught.value.source == "job.sh"


def test_api_keys_never_travel_into_the_job(tmp_path):
    req = parse(tmp_path, [], "#!/bin/sh\ntrue\n", env={"MITHRIL_API_KEY": "fkey_secret", "KEEP": "1"}).request
    assert "MITHRIL_API_KEY" not in req.environment and req.environment["KEEP"] == "1"


def test_export_none_keeps_only_assignments(tmp_path):
    req = parse(tmp_path, ["--export=NONE,FOO=bar"], "#!/bin/sh\ntrue\n", env={"HOME": "/h"}).request
    assert req.environment == {"FOO": "bar"}


DIRECTIVE_WORDS = st.sampled_from(["-N", "2", "--time=5", "-t", "abc", "--array=1-3%1", "--dependency=afterok:1",
                                   "'quoted", '"x y"', "#", "--mem=4G", "--gpus=h100:8", "-J", "--wrap=x", "-o", "%j%"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(
    st.lists(DIRECTIVE_WORDS, max_size=4).map(lambda words: "#SBATCH " + " ".join(words)),
    st.text(max_size=30)), max_size=6),
    argv=st.lists(DIRECTIVE_WORDS, max_size=4),
    shebang=st.booleans())
def test_random_scripts_give_clean_errors(tmp_path, lines, argv, shebang):
    script = ("#!/bin/sh\n" if shebang else "") + "\n".join(lines) + "\n"
    try:
        parse(tmp_path, argv, script)
    except SflowError:
        pass


@pytest.mark.parametrize("value, priority", [("abc", None), ("0", None), ("", None), ("2abc", 2), (" +7", 7),
                                             ("TOP", 4294967293), ("top", 4294967293), ("4294967293", 4294967293)])
def test_priority_read_as_sbatch_reads_it(tmp_path, value, priority):
    """What sbatch cannot read as a number is 0, and 0 is no --priority at all (the job gets the usual one)."""
    assert parse(tmp_path, [f"--priority={value}", "--wrap", "true"]).request.priority == priority


@pytest.mark.parametrize("value, message", [("-1", "Priority must be >= 0"),
                                            ("99999999999", "Priority must be < 4294967294")])
def test_priority_out_of_range(tmp_path, value, message):
    with pytest.raises(SlurmError) as caught:
        parse(tmp_path, [f"--priority={value}", "--wrap", "true"])
    assert (caught.value.message, caught.value.exit_code) == (message, 255)


def test_nice_without_adjustment_is_100(tmp_path):
    assert parse(tmp_path, ["--nice", "--wrap", "true"]).request.nice == 100
    assert parse(tmp_path, ["--nice=abc", "--wrap", "true"]).request.nice == 0


def test_slurm_export_env_repeats_export_as_written():
    from sflow.exec.context import export_text

    sub = parse_sbatch(["--export=TEST_ENV_17.14=123", "--wrap", "true"], env={"TEST_ENV_17.14": "123"},
                       cwd="/tmp", user="u", uid=1, gid=1, host="h")
    assert export_text(sub.request) == "TEST_ENV_17.14=123"
    assert sub.request.environment["TEST_ENV_17.14"] == "123"


def test_the_parser_opens_no_file_it_reads_the_text_it_is_given(tmp_path):
    # The path names a file that does not exist: the submitting side read the text already.
    text = "#!/bin/sh\n#SBATCH -J given\ntrue\n"
    req = parse_sbatch(["nowhere/job.sh", "a1"], env={}, cwd=str(tmp_path), script_text=text, **IDENT).request
    assert (req.script, req.job_name, req.script_args) == (text, "given", ["a1"])
    assert req.script_path == str(tmp_path / "nowhere" / "job.sh")
    with pytest.raises(SlurmError, match="^Unable to open file job.sh$"):  # nothing could be read
        parse_sbatch(["job.sh"], env={}, cwd=str(tmp_path), **IDENT)
