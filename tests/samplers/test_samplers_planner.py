"""The epoch planner on its own: arrays in, arrays out."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from uncollapse.samplers.planner import (
    Plan,
    diverse_layout,
    grouped_layout,
    link_groups,
    max_full_batches,
    plan_epoch,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=30), st.integers(1, 10),
       st.integers(1, 4))
def test_max_full_batches_is_the_largest_feasible_count(units, per_batch, cap):
    units = np.asarray(units)
    got = max_full_batches(units, per_batch, cap)
    assert np.minimum(units, got * cap).sum() >= got * per_batch
    for b in range(got + 1, int(units.sum()) // per_batch + 2):
        assert np.minimum(units, b * cap).sum() < b * per_batch


def test_link_groups_joins_groups_through_shared_keys_transitively():
    member = np.array([0, 0, 1, 1, 2, 2, 3, 4])
    keys = np.array(["a", "b", "b", "c", "c", "d", "e", "a"])
    component = link_groups(member, keys, 5)
    assert component[0] == component[1] == component[2] == component[4]
    assert component[3] != component[0]
    assert len(np.unique(component)) == 2


def test_plan_take_and_for_rank_split_one_plan_into_equal_disjoint_parts():
    plan = Plan(np.arange(12), np.array([0, 3, 5, 9, 10, 12]))
    assert plan.take(np.array([2, 0])).rows.tolist() == [5, 6, 7, 8, 0, 1, 2]
    rank0, rank1 = plan.for_rank(0, 2), plan.for_rank(1, 2)
    assert [rank0.batch(i).tolist() for i in range(len(rank0))] == [[0, 1, 2], [5, 6, 7, 8]]
    assert [rank1.batch(i).tolist() for i in range(len(rank1))] == [[3, 4], [9]]
    assert plan.batch_ids().tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4]


def test_grouped_plan_deals_whole_groups_and_drops_the_rest_of_each_group():
    group_ids = np.repeat(np.arange(9), [7, 5, 5, 5, 5, 5, 5, 5, 3])
    layout = grouped_layout(group_ids, batch_size=6, per_group=2)
    plan = plan_epoch(layout, seed=0, epoch=0)
    # slots of 2 rows: 3 + 7 * 2 + 1 = 18, three groups per batch -> 6 batches
    assert layout.stats["small_groups"] == 0
    assert layout.full_batches == max_full_batches(layout.member_units, 3, 1) == 6
    batches = plan.rows.reshape(-1, 3, 2)
    assert (group_ids[batches] == group_ids[batches][:, :, :1]).all()
    assert all(len(set(group_ids[b[:, 0]])) == 3 for b in batches)
    assert plan_epoch(layout, 0, 0).rows.tolist() == plan.rows.tolist()


def test_diverse_plan_caps_a_large_document_per_batch():
    doc_ids = np.repeat([5, 6, 7], [100, 4, 4])
    layout = diverse_layout(doc_ids, batch_size=4, max_per_doc=2)
    plan = plan_epoch(layout, seed=1, epoch=3)
    assert len(plan) == layout.full_batches == 4
    assert ((doc_ids[plan.rows.reshape(-1, 4)] == 5).sum(1) == 2).all()


def test_groups_with_several_slots_do_not_meet_the_same_groups_again_and_again():
    # 1,000 groups of 5 rows, one row per group in a batch of 50: every group is in 5 batches.
    # Dealing each group's slots to consecutive batches would make most pairs of groups that
    # meet once meet in several batches; random batches repeat only about 1 pair in 10.
    group_ids = np.repeat(np.arange(1000), 5)
    plan = plan_epoch(grouped_layout(group_ids, batch_size=50, per_group=1), seed=0, epoch=0)
    batches = group_ids[plan.rows.reshape(-1, 50)]
    first, second = np.triu_indices(50, 1)
    a, b = batches[:, first], batches[:, second]
    pairs = np.minimum(a, b) * 1000 + np.maximum(a, b)
    _, meetings = np.unique(pairs, return_counts=True)
    assert (meetings > 1).mean() < 0.15
