"""Property tests: the guarantees of GroupedBatchSampler and DiverseBatchSampler on any input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from uncollapse.samplers import DiverseBatchSampler, GroupedBatchSampler

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def oracle_full_batches(units: np.ndarray, per_batch: int, cap: int) -> int:
    """Most full batches under the cap, by trying every batch count (slow, obviously right)."""
    best = 0
    for b in range(1, int(units.sum()) // per_batch + 1):
        if np.minimum(units, b * cap).sum() >= b * per_batch:
            best = b
    return best


@st.composite
def grouped_case(draw):
    sizes = draw(st.lists(st.integers(1, 9), min_size=1, max_size=40))
    per_group = draw(st.integers(1, 4))
    groups_per_batch = draw(st.integers(1, 6))
    world_size = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31))
    drop_last = draw(st.booleans())
    shuffle_seed = draw(st.integers(0, 1000))
    with_keys = draw(st.booleans())
    group_ids = np.repeat(np.arange(len(sizes)) * 7 + 3, sizes)
    group_ids = np.random.default_rng(shuffle_seed).permutation(group_ids)
    keys = None
    if with_keys:
        keys = draw(st.lists(st.integers(0, 3 * len(group_ids)), min_size=len(group_ids),
                             max_size=len(group_ids)))
        keys = np.asarray(keys)
    return dict(group_ids=group_ids, sizes=np.asarray(sizes), per_group=per_group,
                batch_size=groups_per_batch * per_group, world_size=world_size, seed=seed,
                drop_last=drop_last, exclude_duplicates=keys)


def build_ranks(case):
    return [GroupedBatchSampler(case["group_ids"], case["batch_size"], case["per_group"],
                                seed=case["seed"], drop_last=case["drop_last"],
                                exclude_duplicates=case["exclude_duplicates"], rank=r,
                                world_size=case["world_size"])
            for r in range(case["world_size"])]


def linked_units(case) -> np.ndarray:
    """Units (per_group-row slots) of each set of groups linked by a shared key: the oracle."""
    sizes_by_id = dict(zip(*np.unique(case["group_ids"], return_counts=True), strict=True))
    eligible = [g for g, s in sizes_by_id.items() if s >= case["per_group"]]
    parent = {g: g for g in eligible}

    def find(g):
        while parent[g] != g:
            g = parent[g]
        return g

    if case["exclude_duplicates"] is not None:
        owner = {}
        for g, k in zip(case["group_ids"], case["exclude_duplicates"], strict=True):
            if g in parent:
                if k in owner:
                    parent[find(g)] = find(owner[k])
                else:
                    owner[k] = g
    units: dict = {}
    for g in eligible:
        units[find(g)] = units.get(find(g), 0) + sizes_by_id[g] // case["per_group"]
    return np.array(list(units.values()), dtype=np.int64)


@SETTINGS
@given(grouped_case())
def test_grouped_batches_hold_their_guarantee_on_every_rank(case):
    groups_per_batch = case["batch_size"] // case["per_group"]
    units = linked_units(case)
    full = oracle_full_batches(units, groups_per_batch, 1) if len(units) else 0
    total = full + int(not case["drop_last"] and full > 0 and units.sum() > full *
                       groups_per_batch)
    if len(units) < groups_per_batch or full == 0 or total < case["world_size"]:
        with pytest.raises(ValueError):
            build_ranks(case)
        return
    ranks = build_ranks(case)
    per_rank = total // case["world_size"]
    batches = [list(s) for s in ranks]
    assert [len(s) for s in build_ranks(case)] == [per_rank] * case["world_size"]
    assert [len(b) for b in batches] == [per_rank] * case["world_size"]

    group_ids, keys, k = case["group_ids"], case["exclude_duplicates"], case["per_group"]
    seen = np.concatenate([np.concatenate(b) for b in batches])
    assert len(np.unique(seen)) == len(seen)  # ranks disjoint, no row twice in an epoch
    for batch in (b for rank in batches for b in rank):
        rows = np.asarray(batch)
        groups, counts = np.unique(group_ids[rows], return_counts=True)
        assert (counts == k).all()
        assert len(groups) <= groups_per_batch
        # rows of one group sit next to each other
        assert (group_ids[rows].reshape(-1, k) == group_ids[rows].reshape(-1, k)[:, :1]).all()
        if keys is not None:
            pairs = np.unique(np.stack([keys[rows], group_ids[rows]]), axis=1)
            assert len(np.unique(pairs[0])) == pairs.shape[1]  # no key under two groups
    global_plan = ranks[0].global_plan(0)
    assert len(global_plan) == total
    assert (np.diff(global_plan.offsets) == case["batch_size"]).sum() == full
    placed = sum(len(b) for rank in batches for b in rank)
    assert ranks[0].rows_unplaced(0) == len(group_ids) - placed


@SETTINGS
@given(grouped_case(), st.integers(0, 3), st.data())
def test_grouped_plan_is_a_function_of_seed_and_epoch_and_resumes(case, epoch, data):
    try:
        first = build_ranks(case)
    except ValueError:
        assume(False)
    second = build_ranks(case)
    for a, b in zip(first, second, strict=True):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert list(a) == list(b)
    global_plans = {first[0].global_plan(e).rows.tobytes() for e in range(5)}
    if len(first[0].global_plan(0)) >= 4:  # 4! batch orders at least: epochs must differ
        assert len(global_plans) > 1
    sampler = build_ranks(case)[-1]
    sampler.set_epoch(epoch)
    expected = list(sampler)
    sampler.set_epoch(epoch)
    cut = data.draw(st.integers(0, len(expected)))
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(cut)]
    state = sampler.state_dict()
    resumed = build_ranks(case)[-1]
    resumed.load_state_dict(state)
    assert len(resumed) == len(expected)  # the whole epoch; the pass yields what is left
    rest = list(resumed)
    assert head + rest == expected
    assert len(rest) == len(expected) - cut


@st.composite
def diverse_case(draw):
    sizes = draw(st.lists(st.integers(1, 20), min_size=1, max_size=25))
    doc_ids = np.random.default_rng(draw(st.integers(0, 1000))).permutation(
        np.repeat(np.arange(len(sizes)), sizes))
    return dict(doc_ids=doc_ids, sizes=np.asarray(sizes), batch_size=draw(st.integers(1, 16)),
                max_per_doc=draw(st.integers(1, 4)), world_size=draw(st.integers(1, 3)),
                seed=draw(st.integers(0, 2**31)), drop_last=draw(st.booleans()))


def build_diverse(case):
    return [DiverseBatchSampler(case["doc_ids"], case["batch_size"], case["max_per_doc"],
                                seed=case["seed"], drop_last=case["drop_last"], rank=r,
                                world_size=case["world_size"])
            for r in range(case["world_size"])]


@SETTINGS
@given(diverse_case())
def test_diverse_batches_respect_the_cap_and_cover_all_they_can(case):
    full = oracle_full_batches(case["sizes"], case["batch_size"], case["max_per_doc"])
    total = full + int(not case["drop_last"] and full > 0 and
                       case["sizes"].sum() > full * case["batch_size"])
    if full == 0 or total < case["world_size"]:
        with pytest.raises(ValueError):
            build_diverse(case)
        return
    ranks = build_diverse(case)
    per_rank = total // case["world_size"]
    batches = [list(s) for s in ranks]
    assert [len(b) for b in batches] == [per_rank] * case["world_size"]
    assert all(len(s) == per_rank for s in build_diverse(case))
    seen = np.concatenate([np.concatenate(b) for b in batches])
    assert len(np.unique(seen)) == len(seen)
    for batch in (b for rank in batches for b in rank):
        _, counts = np.unique(case["doc_ids"][batch], return_counts=True)
        assert counts.max() <= case["max_per_doc"]
        assert 0 < len(batch) <= case["batch_size"]
    global_plan = ranks[0].global_plan(0)
    assert len(global_plan) == total
    assert (np.diff(global_plan.offsets) == case["batch_size"]).sum() == full
    assert ranks[0].rows_unplaced(0) == len(case["doc_ids"]) - len(seen)


@SETTINGS
@given(diverse_case(), st.integers(0, 3), st.data())
def test_diverse_plan_repeats_for_same_epoch_and_resumes(case, epoch, data):
    try:
        sampler = build_diverse(case)[0]
    except ValueError:
        assume(False)
    again = build_diverse(case)[0]
    if len(sampler.global_plan(0)) >= 4:  # 4! batch orders at least: epochs must differ
        assert len({sampler.global_plan(e).rows.tobytes() for e in range(5)}) > 1
    sampler.set_epoch(epoch)
    again.set_epoch(epoch)
    expected = list(sampler)
    assert list(again) == expected
    cut = data.draw(st.integers(0, len(expected)))
    sampler.set_epoch(epoch)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(cut)]
    resumed = build_diverse(case)[0]
    resumed.load_state_dict(sampler.state_dict())
    assert head + list(resumed) == expected
