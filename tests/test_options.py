"""The option table covers SLURM's man pages, and getopt_long behaves as SLURM's does."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from sflow.errors import SflowError, SlurmError, UsageError, render
from sflow.slurm.getopt import getopt
from sflow.slurm.options import all_options, table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAN = json.load(open(os.path.join(ROOT, "compat", "golden", "man_options.json")))
# Every long spelling real sbatch/srun/salloc accept, and getopt's answer for each prefix of them.
SPELLINGS = json.load(open(os.path.join(ROOT, "compat", "golden", "option_spellings.json")))


@pytest.mark.parametrize("command", sorted(MAN))
def test_every_man_page_option_is_in_the_table(command):
    known = table(command)
    for long, spec in MAN[command].items():
        option = known.by_long(long)
        assert option is not None, f"{command} --{long} missing from compat/options.toml"
        # Where the command's own getopt disagrees with its man page (srun --overlap takes an
        # optional value), the recorded behaviour wins.
        arg = SPELLINGS.get(command, {}).get("names", {}).get(long, spec["arg"])
        assert option.arg == arg, f"{command} --{long}"
        if spec["short"]:
            assert known.by_short(spec["short"]) is option, f"{command} -{spec['short']}"


@pytest.mark.parametrize("command", sorted(SPELLINGS))
def test_exactly_slurms_long_spellings_are_accepted(command):
    known = table(command)
    recorded = SPELLINGS[command]["names"]
    ours = {name: known.by_long(name).arg for option in known for name in (option.long, *option.aliases)}
    assert ours == recorded


@pytest.mark.parametrize("command", sorted(SPELLINGS))
def test_prefixes_resolve_as_slurms_getopt(command):
    known = table(command)
    for prefix, answer in SPELLINGS[command]["prefixes"].items():
        matches = known.match_long_prefix(prefix)
        if answer["outcome"] == "ambiguous":
            assert [name for name, _ in matches] == answer["possibilities"], prefix
        else:
            assert len(matches) == 1, (prefix, matches)
            name, option = matches[0]
            assert option.arg == answer["arg"], prefix
            if answer["name"]:
                assert name == answer["name"], prefix


@pytest.mark.parametrize("command", sorted(SPELLINGS))
def test_exactly_slurms_short_options_are_accepted(command):
    known = table(command)
    ours = {o.short: "required" if o.arg == "required" else "none" for o in known if o.short}
    assert ours == SPELLINGS[command]["short"]


def test_an_alias_is_the_option_it_stands_for():
    assert _parse("sbatch", ["--tasks-per-node=4", "--tasks=2"])[0] == [("ntasks-per-node", "4"), ("ntasks-per-node", "2")]
    assert _parse("srun", ["--cpu_bind=none"])[0] == [("cpu-bind", "none")]
    with pytest.raises(UsageError) as caught:
        getopt("sbatch", ["--tasks-per-node"])
    assert caught.value.lines[0] == "sbatch: option '--tasks-per-node' requires an argument"


def test_every_entry_says_what_happens():
    for option in all_options():
        assert option.status in ("supported", "ignored", "rejected")
        if option.status == "supported":
            assert option.field, option.long
        else:
            assert option.note.startswith(f"--{option.long}"), option.long


def test_sbatch_input_environment_variables():
    env = table("sbatch").env_map()
    assert env["SBATCH_TIMELIMIT"].long == "time"
    assert env["SBATCH_ARRAY_INX"].long == "array"
    assert env["SBATCH_MEM_PER_NODE"].long == "mem"
    assert table("sflow").env_map()["SFLOW_LIMIT_PRICE"].long == "limit-price"


def _parse(command, argv):
    parsed = getopt(command, argv)
    return [(o.long, v) for o, v in parsed.options], parsed.positionals


def test_getopt_forms():
    assert _parse("sbatch", ["-N2", "-N", "3", "--nodes=4", "--nodes", "5"])[0] == [("nodes", n) for n in "2345"]
    assert _parse("sbatch", ["-HQ"])[0] == [("hold", None), ("quiet", None)]
    assert _parse("sbatch", ["-Ht5"])[0] == [("hold", None), ("time", "5")]
    assert _parse("sbatch", ["--job-n=x"])[0] == [("job_name" if False else "job-name", "x")]
    assert _parse("sbatch", ["--exclusive", "--exclusive=user"])[0] == [("exclusive", None), ("exclusive", "user")]
    assert _parse("sbatch", ["--", "-N2"]) == ([], ["-N2"])


def test_sbatch_stops_at_the_script_and_squeue_permutes():
    assert _parse("sbatch", ["-N2", "job.sh", "-N", "3"]) == ([("nodes", "2")], ["job.sh", "-N", "3"])
    assert _parse("scancel", ["123", "-s", "KILL", "456"]) == ([("signal", "KILL")], ["123", "456"])
    assert _parse("squeue", ["-u", "me", "-h"])[0] == [("user", "me"), ("noheader", None)]


@pytest.mark.parametrize("command, argv, lines, code", [
    ("sbatch", ["--foo"], ["sbatch: unrecognized option '--foo'", 'Try "sbatch --help" for more information'], 255),
    ("sbatch", ["--foo=1"], ["sbatch: unrecognized option '--foo=1'", 'Try "sbatch --help" for more information'], 255),
    ("sbatch", ["-y"], ["sbatch: invalid option -- 'y'", 'Try "sbatch --help" for more information'], 255),
    ("sbatch", ["--time"], ["sbatch: option '--time' requires an argument", 'Try "sbatch --help" for more information'], 255),
    ("sbatch", ["-t"], ["sbatch: option requires an argument -- 't'", 'Try "sbatch --help" for more information'], 255),
    ("sbatch", ["--hold=yes"], ["sbatch: option '--hold' doesn't allow an argument", 'Try "sbatch --help" for more information'], 255),
    ("sbatch", ["--nod=2"], ["sbatch: option '--nod=2' is ambiguous; possibilities: '--nodefile' '--nodelist' '--nodes'",
                             'Try "sbatch --help" for more information'], 255),
    ("squeue", ["--foo"], ["squeue: unrecognized option '--foo'", 'Try "squeue --help" for more information'], 1),
    ("scancel", ["--foo"], ["scancel: unrecognized option '--foo'", 'Try "scancel --help" for more information'], 1),
    ("sacct", ["--foo"], ["sacct: unrecognized option '--foo'"], 1),
    ("srun", ["--foo"], ["srun: unrecognized option '--foo'", 'Try "srun --help" for more information'], 255),
])
def test_getopt_errors_are_slurms(command, argv, lines, code):
    with pytest.raises(UsageError) as caught:
        getopt(command, argv)
    assert caught.value.lines == lines and caught.value.exit_code == code
    assert render(command, caught.value) == "\n".join(lines)


def test_rejected_options_say_why():
    with pytest.raises(SlurmError) as caught:
        getopt("sbatch", ["--bb=x"])
    assert "burst buffers" in caught.value.message


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["sbatch", "srun", "squeue", "scancel", "sacct", "sinfo", "scontrol", "salloc"]),
       st.lists(st.one_of(st.sampled_from(["-N", "-n2", "--time", "--", "--nod", "-HQ", "--wrap", "x", "-", "--=", "--time=5"]),
                          st.text(max_size=8)), max_size=8))
def test_getopt_fails_only_with_clean_errors(command, argv):
    try:
        getopt(command, argv)
    except SflowError:
        pass


def test_options_page_is_generated_from_the_table():
    from sflow.slurm.options_doc import render

    page = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "options.md")
    with open(page, encoding="utf-8") as handle:
        assert handle.read() == render(), "docs/options.md is stale: python3 -m sflow.slurm.options_doc > docs/options.md"


@pytest.mark.parametrize("command", ["sbatch", "salloc"])
def test_help_uses_slurms_headings(command):
    from sflow.slurm.help import render_help

    text = render_help(command)
    headings = [line for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(
        (":", "enabled)")) and not line.startswith("Usage")]
    assert headings[:2] == ["Parallel run options:", "Constraint options:"]
    assert "GPU scheduling options:" in headings and headings[-2:] == ["Help options:", "Other options:"]
    constraint = text.split("Constraint options:")[1].split("\n\n")[0]
    assert "--nodelist=" in constraint and "--exclude=" in constraint
