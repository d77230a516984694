"""Counts read as sbatch reads them, and no count too big for the store reaching it."""

from __future__ import annotations

import pytest

from sflow.errors import SlurmError
from sflow.queue.lookup import JobLookup
from sflow.slurm import values
from sflow.slurm.options import table
from sflow.slurm.request import convert


def _option(long: str):
    return next(o for o in table("sbatch").options if o.long == long)


@pytest.mark.parametrize("text, expected", [
    ("2", (2, 2)), ("0", (0, None)), ("2-0", (2, None)), ("-3", (1, 3)), (" 2- 4", (2, 4)),
    ("4294967298-4294967300", (2, 4)), ("1-4294967296", (1, None)), ("18446744073709551616-1", (1, 1)),
])
def test_node_ranges_wrap_at_32_bits(text, expected):
    assert values.parse_node_range(text) == expected


@pytest.mark.parametrize("text, message", [
    ("5-2", "Maximum node count 2 is less than minimum node count 5"),
    ("2-", "Maximum node count -1 is less than minimum node count 2"),
    ("3-3abc", '"3abc" is not a valid node count'),
    ("4294967295", '"4294967295" is not a valid node count'),
    ("18446744073709551616", '"18446744073709551616" is not a valid node count'),
])
def test_node_ranges_refused_in_slurms_words(text, message):
    with pytest.raises(SlurmError) as caught:
        convert(_option("nodes"), text)
    assert caught.value.args[0] == message if caught.value.args else str(caught.value) == message


@pytest.mark.parametrize("long, text, message", [
    ("ntasks", "18446744073709551616", "Numeric argument (9223372036854775807) to big for --ntasks."),
    ("ntasks", "2147483648", "invalid number of tasks (-n -2147483648)"),
    ("cpus-per-task", "4294967296", "invalid number of cpus per task (-c 0)"),
    ("ntasks-per-socket", "3 ", 'Invalid numeric value "3 " for --ntasks-per-socket.'),
])
def test_counts_refused_in_slurms_words(long, text, message):
    with pytest.raises(SlurmError) as caught:
        convert(_option(long), text)
    assert message in str(caught.value)


def test_counts_wrap_at_32_bits():
    assert convert(_option("ntasks"), "4294967298") == 2
    assert convert(_option("ntasks"), " +3") == 3


def test_memory_wraps_below_sqlites_range():
    assert values.parse_memory_mb("9223372036854775807T") < 1 << 63
    assert values.parse_memory_mb("9007199254740992T") == 0
    with pytest.raises(values.InvalidValue):
        values.parse_memory_mb("9223372036854775808")


def test_dependency_ids_wrap_at_32_bits():
    dep = values.parse_dependency("afterok:4294967298:18446744073709551616:1_4294967299")
    assert [item.job_id for item in dep.items] == ["2", "4294967295", "1_3"]
    with pytest.raises(values.InvalidValue):
        values.parse_dependency("afterok:4294967296")


def test_lookup_of_an_id_past_the_store_finds_nothing():
    class Controller:
        jobs: dict = {}

        class conn:
            @staticmethod
            def execute(*args):
                raise AssertionError("no query for an id SQLite cannot hold")

    lookup = JobLookup(Controller())
    assert lookup.job(1 << 64) is None
    assert lookup.array(1 << 64) is None


@pytest.mark.parametrize("nodes", ["0", "4294967296"])
def test_zero_nodes_are_taken_held_and_refused_to_run(cluster, nodes):
    # SLURM's controller keeps a held job of no nodes (NumNodes=0) but will not queue one to run.
    refused = cluster.run("sbatch", "-N", nodes, "--wrap", "true")
    assert (refused.returncode, refused.stderr) == (
        1, "sbatch: error: Batch job submission failed: Node count specification invalid\n")
    held = cluster.run("sbatch", "--parsable", "-H", "-N", nodes, "--wrap", "true")
    assert held.returncode == 0, held.stderr
    shown = cluster.run("scontrol", "show", "job", held.stdout.strip()).stdout
    assert "NumNodes=0 " in shown, shown
