"""``TargetCombinationSampler`` (exported by ``uncollapse.samplers``): each epoch's batches hold
``per_group`` rows of each of ``batch_size // per_group`` target combinations of that epoch,
the plan is a pure function of (seed, epoch), and a checkpoint of other data is refused."""

from __future__ import annotations

import numpy as np
import pytest

from uncollapse.samplers import AttributeFlipDataset, TargetCombinationSampler


def _dataset(seed: int = 0) -> AttributeFlipDataset:
    rng = np.random.default_rng(seed)
    return AttributeFlipDataset(rng.normal(size=(400, 4)).astype(np.float32),
                                rng.integers(0, 2, (400, 3)), min_flips=1, max_flips=2, seed=seed)


def test_every_batch_holds_per_group_rows_of_each_of_its_target_combinations():
    dataset = _dataset()
    sampler = TargetCombinationSampler(dataset, batch_size=32, per_group=8, seed=1)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        combinations = dataset.target_combination_ids(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) > 0
        for batch in batches:
            _, counts = np.unique(combinations[batch], return_counts=True)
            assert counts.tolist() == [8, 8, 8, 8]
        rows = np.concatenate(batches)
        assert len(np.unique(rows)) == len(rows)  # no row twice in an epoch


def test_the_plan_is_a_function_of_seed_and_epoch():
    a = TargetCombinationSampler(_dataset(), batch_size=32, per_group=8, seed=1)
    b = TargetCombinationSampler(_dataset(), batch_size=32, per_group=8, seed=1)
    np.testing.assert_array_equal(a.plan(3).rows, b.plan(3).rows)
    assert not np.array_equal(a.plan(3).rows, a.plan(4).rows)


def test_state_round_trips_and_other_data_is_refused():
    sampler = TargetCombinationSampler(_dataset(), batch_size=32, per_group=8, seed=1)
    sampler.set_epoch(2)
    state = sampler.state_dict(batches_done=3)
    again = TargetCombinationSampler(_dataset(), batch_size=32, per_group=8, seed=1)
    again.load_state_dict(state)
    assert again.epoch == 2
    other = TargetCombinationSampler(_dataset(seed=5), batch_size=32, per_group=8, seed=1)
    with pytest.raises(ValueError, match="other data, seed or flip settings"):
        other.load_state_dict(state)
