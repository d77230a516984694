"""IndexSet: the same answers as a Python set, without one int per index."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings, strategies as st

from sflow.slurm.indexset import IndexSet

runs = st.lists(st.tuples(st.integers(0, 120), st.integers(0, 140), st.integers(1, 6)), max_size=5)


def _expand(spec) -> set[int]:
    return {i for first, last, step in spec for i in range(first, last + 1, step)}


@settings(max_examples=300, deadline=None)
@given(runs, runs)
def test_behaves_as_a_set(left, right):
    a, b = IndexSet.from_runs(left), IndexSet.from_runs(right)
    ref_a, ref_b = _expand(left), _expand(right)
    assert list(a) == sorted(ref_a) and len(a) == len(ref_a)
    assert all((i in a) == (i in ref_a) for i in range(-1, 150))
    assert set(a.without(b)) == ref_a - ref_b
    assert set(a.intersection(b)) == ref_a & ref_b
    assert IndexSet.from_json(a.to_json()) == a == IndexSet.of(ref_a)
    assert a.slurm_text() == IndexSet.of(ref_a).slurm_text()
    if ref_a:
        assert (a.min(), a.max()) == (min(ref_a), max(ref_a))


def test_reads_the_older_stored_list():
    assert list(IndexSet.from_json([0, 1, 2, 7])) == [0, 1, 2, 7]


def test_millions_of_indices_cost_a_few_runs():
    tracemalloc.start()
    every = IndexSet.from_runs([(0, 3_999_999, 1)])
    even = IndexSet.from_runs([(0, 3_999_998, 2)])
    rest = every.without(IndexSet.from_runs([(5, 5, 1), (70_000, 135_535, 1)]))
    both = even.intersection(IndexSet.from_runs([(0, 99_999_999, 1)]))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20
    assert len(rest) == 4_000_000 - 1 - 65_536 and rest.slurm_text() == "0-4,6-69999,135536-3999999"
    assert len(both) == 2_000_000 and both.slurm_text() == "0-3999998:2"


def test_text_cut_as_slurm_bitstr_len():
    mixed = IndexSet.from_runs([(0, 3, 1), (10, 400, 2)])
    # Recorded from SLURM 22.05 with SLURM_BITSTR_LEN=20 and its default of 64.
    assert mixed.slurm_text(20) == "0-3,10,12,14,16,..."
    assert mixed.slurm_text(64) == "0-3,10,12,14,16,18,20,22,24,26,28,30,32,34,36,38,40,42,44,46..."


def test_srun_ranks_never_use_the_stride_form():
    assert IndexSet.of(range(0, 14, 2)).ranges_text() == "0,2,4,6,8,10,12"
