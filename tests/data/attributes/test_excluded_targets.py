"""Target combinations left out of ``AttributeFlipDataset``'s draws: never drawn, every other
draw unchanged, flip counts in range, the same draws whoever asks, and a row with no allowed
target refused by its number."""

from __future__ import annotations

import numpy as np
import pytest

from uncollapse.data.attributes.contract import combination_ids
from uncollapse.data.attributes.dataset import AttributeFlipDataset, flip_masks


def dataset(excluded=None, *, rows=4000, attributes=5, max_flips=2, seed=0):
    source = (np.random.default_rng(seed).random((rows, attributes)) < 0.4).astype(np.int8)
    return AttributeFlipDataset(np.zeros((rows, 1)), source, max_flips=max_flips, seed=3,
                                excluded_targets=excluded)


def test_excluded_combinations_are_never_drawn_and_other_draws_are_unchanged():
    plain = dataset()
    excluded = np.array([0b11000, 0b10001, 0b00111, 0b11111])
    left_out = dataset(excluded)
    for epoch in range(3):
        before = plain.targets(np.arange(4000), epoch=epoch)
        after = left_out.targets(np.arange(4000), epoch=epoch)
        hit = np.isin(combination_ids(before), excluded)
        assert 100 < hit.sum() < 4000  # the plain draw does land there ...
        assert not np.isin(combination_ids(after), excluded).any()  # ... the other never
        assert np.array_equal(after[~hit], before[~hit])
        flips = (after != plain.source).sum(axis=1)
        assert flips.min() == 1 and flips.max() == 2
        # a redrawn row changes its draw from epoch to epoch
        assert len(np.unique(combination_ids(after[hit]))) > 10


def test_redraws_are_a_pure_function_of_the_row_and_epoch():
    data = dataset(np.array([0b00011, 0b01100]))
    whole = data.targets(np.arange(4000), epoch=5)
    rows = np.random.default_rng(1).permutation(4000)[:300]
    assert np.array_equal(data.targets(rows, epoch=5), whole[rows])
    assert np.array_equal(dataset(np.array([0b00011, 0b01100])).targets(rows, epoch=5),
                          whole[rows])


def test_a_row_with_no_allowed_target_is_refused_by_its_number():
    source = np.array([[0, 0], [1, 1], [0, 1]], dtype=np.int8)
    # one flip of (0, 0) leads to (1, 0) or (0, 1): both excluded
    with pytest.raises(ValueError, match="row 0 .*no target within 1..1 flips"):
        AttributeFlipDataset(np.zeros((3, 1)), source, max_flips=1,
                             excluded_targets=[0b01, 0b10])


def test_flip_masks_are_every_subset_of_the_flip_counts():
    masks = flip_masks(5, 1, 2)
    assert len(masks) == 5 + 10 and len(np.unique(masks)) == 15
    assert set(np.bitwise_count(masks.astype(np.uint64)).tolist()) == {1, 2}
    assert len(flip_masks(30, 1, 2)) == 30 + 435
    with pytest.raises(ValueError, match="flip fewer attributes"):
        flip_masks(40, 1, 5)
