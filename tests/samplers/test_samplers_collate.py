"""The collate helper: group ids and the positive mask of a multi-positive InfoNCE."""

from __future__ import annotations

import pickle

import pytest
import torch

from uncollapse.samplers import GroupedCollate, positive_mask


def test_positive_mask_marks_other_rows_of_the_same_group():
    mask = positive_mask(torch.tensor([7, 7, 3, 7, 3]))
    assert mask.tolist() == [[False, True, False, True, False],
                             [True, False, False, True, False],
                             [False, False, False, False, True],
                             [True, True, False, False, False],
                             [False, False, True, False, False]]
    with pytest.raises(ValueError, match="1-d"):
        positive_mask(torch.zeros(2, 2))


def test_collate_of_mapping_samples_adds_group_ids_and_mask():
    samples = [{"x": torch.tensor([float(i)]), "match_id": g} for i, g in enumerate([4, 4, 9])]
    batch = GroupedCollate("match_id")(samples)
    assert batch["x"].shape == (3, 1)
    assert batch["group_ids"].tolist() == [4, 4, 9]
    assert batch["positive_mask"].sum(1).tolist() == [1, 1, 0]
    with pytest.raises(KeyError, match="no 'image'"):
        GroupedCollate("image")(samples)


def test_collate_of_tuple_samples_takes_the_last_element_as_group_id():
    samples = [(torch.tensor([1.0, 2.0]), 0), (torch.tensor([3.0, 4.0]), 0)]
    x, group_ids, mask = GroupedCollate()(samples)
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert group_ids.tolist() == [0, 0]
    assert mask.tolist() == [[False, True], [True, False]]


def test_collate_pickles_for_loader_workers():
    collate = pickle.loads(pickle.dumps(GroupedCollate("gid")))
    assert collate([{"gid": 1}, {"gid": 1}])["positive_mask"].tolist() == [[False, True],
                                                                          [True, False]]


def test_string_group_ids_give_the_same_mask_as_integer_ids():
    samples = [{"x": torch.tensor([float(i)]), "image_id": g}
               for i, g in enumerate(["b.jpg", "a.jpg", "b.jpg"])]
    batch = GroupedCollate("image_id")(samples)
    assert batch["image_id"] == ["b.jpg", "a.jpg", "b.jpg"]  # the ids themselves are kept
    assert batch["group_ids"].tolist() == [1, 0, 1]         # codes in sorted id order
    assert batch["positive_mask"].tolist() == [[False, False, True], [False, False, False],
                                               [True, False, False]]
    x, group_ids, mask = GroupedCollate()([(torch.zeros(1), "q"), (torch.ones(1), "q")])
    assert group_ids.tolist() == [0, 0] and mask.tolist() == [[False, True], [True, False]]
    assert positive_mask(["u", "v", "u"]).tolist() == [[False, False, True],
                                                      [False, False, False],
                                                      [True, False, False]]
