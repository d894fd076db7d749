"""The planner's pieces that make 100M-row epochs fit in time and memory: int32 indices, the
row layout sort, segment shuffles, column dealing with kept prefixes, and what one plan
allocates."""

from __future__ import annotations

import tracemalloc
from collections import Counter

import numpy as np
import pytest

from uncollapse.samplers import DiverseBatchSampler, GroupedBatchSampler
from uncollapse.samplers.planner import (
    _deal_columns,
    _ranges,
    _shuffle_segments,
    _size_classes,
    _sort_members,
    grouped_layout,
    index_dtype,
    plan_epoch,
)


def test_row_indices_are_int32_below_two_to_the_31_rows_and_int64_above():
    assert index_dtype(2**31 - 1) == np.int32
    assert index_dtype(2**31) == np.int64
    ids = np.repeat(np.arange(50), 4)
    layout = grouped_layout(ids, batch_size=8, per_group=4)
    plan = plan_epoch(layout, seed=0, epoch=0)
    assert layout.rows.dtype == layout.member_starts.dtype == plan.rows.dtype == np.int32
    sampler = DiverseBatchSampler(ids, batch_size=10, max_per_doc=2)
    assert sampler.plan(0).rows.dtype == np.int32
    assert all(type(i) is int for i in next(iter(sampler)))  # batches are lists of ints


@pytest.mark.parametrize("ids", [
    np.random.default_rng(0).integers(0, 30, 500),                       # dense, shuffled
    np.random.default_rng(1).integers(-10**12, 10**12, 500),             # far apart
    np.random.default_rng(2).integers(0, 2**64 - 1, 400, dtype=np.uint64),  # past int64
    np.random.default_rng(3).integers(-5, 3, 300).astype(np.int8),
    np.repeat(np.arange(40), 3),                                         # already in order
    np.random.default_rng(4).integers(0, 2, 100).astype(bool),
    np.array([f"img{i % 17:03d}.jpg" for i in range(200)])[::-1],        # strings
])
def test_rows_are_laid_out_by_member_then_row_for_every_kind_of_id(ids):
    rows, sizes = _sort_members(ids)
    expected = np.argsort(ids, kind="stable")
    assert rows.tolist() == expected.tolist()
    _, counts = np.unique(ids, return_counts=True)
    assert sizes.tolist() == counts.tolist()


def test_ranges_concatenates_stepped_ranges_and_skips_empty_ones():
    starts, lengths = np.array([10, 0, 7, 100]), np.array([3, 0, 1, 2])
    assert _ranges(starts, lengths, np.int32, step=5).tolist() == [10, 15, 20, 7, 100, 105]
    assert _ranges(starts, np.zeros(4, dtype=int), np.int32).tolist() == []


@pytest.mark.parametrize("sizes", [[3, 1, 3, 5], [70, 2, 200, 3, 129]])
def test_segment_shuffle_permutes_each_segment_within_itself(sizes):
    sizes = np.asarray(sizes)
    gaps = np.full(len(sizes), 2)  # rows between segments that must not move
    starts = np.cumsum(sizes + gaps) - sizes
    values = np.arange(int(starts[-1] + sizes[-1] + 2), dtype=np.int32)
    classes = _size_classes(starts, sizes)
    orders = set()
    for seed in range(20):
        shuffled = values.copy()
        _shuffle_segments(shuffled, classes, np.random.default_rng(seed))
        inside = np.zeros(len(values), dtype=bool)
        for start, size in zip(starts, sizes, strict=True):
            piece = shuffled[start:start + size]
            assert sorted(piece.tolist()) == list(range(start, start + size))
            inside[start:start + size] = True
        assert (shuffled[~inside] == values[~inside]).all()
        orders.add(shuffled.tobytes())
    assert len(orders) == 20


def test_segment_shuffle_gives_every_order_of_a_small_segment_equally_often():
    values = np.arange(3, dtype=np.int32)
    classes = _size_classes(np.array([0]), np.array([3]))
    counts = Counter()
    for seed in range(3000):
        shuffled = values.copy()
        _shuffle_segments(shuffled, classes, np.random.default_rng(seed))
        counts[tuple(shuffled)] += 1
    assert len(counts) == 6 and min(counts.values()) > 400  # 500 expected each


def test_column_dealing_deals_each_prefix_in_place_and_the_rest_at_random():
    columns = np.arange(40, dtype=np.int32).reshape(4, 10)
    fixed = np.array([0, 3, 10, 1])
    batch_order = np.random.default_rng(9).permutation(10).astype(np.int32)
    batch_of = np.argsort(batch_order)  # the plan's batch that place x is dealt to
    free = np.flatnonzero(batch_order >= 3)  # row 1's batches that no kept entry takes
    seen_at = Counter()
    for seed in range(2000):
        dealt = columns.copy()
        _deal_columns(dealt, fixed, batch_order, np.random.default_rng(seed))
        for row in range(4):
            assert sorted(dealt[row].tolist()) == columns[row].tolist()
            kept = np.arange(fixed[row])
            assert (dealt[row, batch_of[kept]] == columns[row, kept]).all()
        seen_at.update((int(dealt[1, i]), int(i)) for i in free)
    # each of row 1's seven free values lands in each of its seven free batches ~2000/7 times
    assert len(seen_at) == 49
    assert 200 < min(seen_at.values()) and max(seen_at.values()) < 380


def test_every_group_one_slot_deals_a_random_order_of_groups_in_consecutive_batches():
    # groups of 5 to 9 rows with per_group 5: one slot each, rows of a slot change by epoch
    sizes = np.random.default_rng(0).integers(5, 10, 300)
    ids = np.random.default_rng(1).permutation(np.repeat(np.arange(300), sizes))
    layout = grouped_layout(ids, batch_size=50, per_group=5, drop_last=False)
    assert layout.single_units and len(layout.shuffled)
    plans = [plan_epoch(layout, 3, epoch) for epoch in range(2)]
    for plan in plans:
        assert len(plan) == 30 and len(plan.rows) == 1500  # 300 slots, 10 per batch
        groups = ids[plan.rows].reshape(-1, 5)
        assert (groups == groups[:, :1]).all()
        assert len(np.unique(groups[:, 0])) == 300
    big = np.flatnonzero(np.bincount(ids) > 5)[0]
    assert (set(plans[0].rows[ids[plans[0].rows] == big])
            != set(plans[1].rows[ids[plans[1].rows] == big]))


def test_a_document_larger_than_an_epoch_can_place_gives_other_rows_each_epoch():
    docs = np.concatenate([np.zeros(200, dtype=int), np.repeat(np.arange(1, 41), 3)])
    sampler = DiverseBatchSampler(docs, batch_size=8, max_per_doc=2)
    placed = [set(r for r in sampler.plan(e).rows.tolist() if docs[r] == 0) for e in range(6)]
    assert all(len(p) == 2 * len(sampler.plan(0)) for p in placed)
    assert len({frozenset(p) for p in placed}) == 6
    assert len(set().union(*placed)) > max(len(p) for p in placed)


@pytest.mark.parametrize("version", [1, 2])
def test_a_state_saved_by_a_previous_planner_is_refused(version):
    # version 1: int64 plans; version 2: columns dealt by a shuffle each, before they shared
    # rotated orders. Resuming either mid-epoch would skip and repeat rows.
    sampler = GroupedBatchSampler(np.repeat(np.arange(40), 5), 20, 5)
    assert sampler.state_dict()["version"] == 3
    with pytest.raises(ValueError,
                       match=f"version {version} is not 3; it was saved by another version"):
        sampler.load_state_dict({**sampler.state_dict(), "version": version})


@pytest.mark.parametrize("kind", ["grouped", "diverse"])
def test_one_plan_allocates_a_few_bytes_per_row(kind):
    # what keeps a 100M-row epoch under 3 GB: 4 bytes per row for the plan itself and one
    # int32 temporary of the same size at most (measured: 8.0 grouped, 8.2 diverse; int64
    # indices, or an index array as large as the plan, would take 16 or more)
    rng = np.random.default_rng(0)
    n = 1_000_000
    if kind == "grouped":
        ids = rng.permutation(np.repeat(np.arange(n // 5), 5))
        sampler = GroupedBatchSampler(ids, 1000, 5)
    else:
        ids = rng.permutation(np.repeat(np.arange(n // 50), 50))
        sampler = DiverseBatchSampler(ids, 1000, 4)
    sampler.plan(0)
    tracemalloc.start()
    try:
        sampler.plan(1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / n < 12
