import pytest

from sflow.errors import SlurmError
from sflow.slurm.script import check_script, directives, split_words, wrap_script

HEADER = """#!/bin/bash
#SBATCH -N 2 --job-name="my job" # trailing comment
##SBATCH -n 4
# SBATCH -n 5
#SBATCH\t-t 10

  #SBATCH --indented-is-a-comment
#SFLOW --limit-price=$3
hostname
#SBATCH -p after-first-command
"""


def test_header_directives_stop_at_first_command():
    found = directives(HEADER)
    assert [(d.line, d.prefix, d.words) for d in found] == [
        (2, "#SBATCH", ("-N", "2", "--job-name=my job")),
        (5, "#SBATCH", ("-t", "10")),
        (8, "#SFLOW", ("--limit-price=$3",)),
    ]


def test_only_sbatch_prefix_when_asked():
    assert [d.line for d in directives(HEADER, ("#SBATCH",))] == [2, 5]


@pytest.mark.parametrize(
    "text, words",
    [
        ("", ()),
        ("   ", ()),
        (" -N2", ("-N2",)),
        (" --job-name='a b' -n 4", ("--job-name=a b", "-n", "4")),
        (' -J "x y"z', ("-J", "x yz")),
        (" -o out#1.txt", ("-o", "out#1.txt")),
        (" -o out # comment 'unbalanced", ("-o", "out")),
        (" #only a comment", ()),
    ],
)
def test_split_words(text, words):
    assert split_words(text) == words


def test_unmatched_quote_is_a_clean_error():
    with pytest.raises(SlurmError) as err:
        split_words(' -J "open', line=7)
    assert err.value.line == 7


def test_wrap_script_is_sbatchs():
    assert wrap_script("echo hi") == "#!/bin/sh\n# This script was created by sbatch --wrap.\n\necho hi\n"


@pytest.mark.parametrize("text", ["", "echo hi\n", "#!/bin/sh\r\necho\r\n", "#!/bin/sh\n\0"])
def test_check_script_rejects(text):
    with pytest.raises(SlurmError):
        check_script(text)


def test_check_script_accepts_shebang():
    check_script("#!/usr/bin/env python3\nprint(1)\n")
