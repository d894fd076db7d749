"""GroupedBatchSampler and DiverseBatchSampler: errors, policies, epochs, state and DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from uncollapse.samplers import DiverseBatchSampler, GroupedBatchSampler, GroupedCollate


def caption_ids(n_images=40, per_image=5):
    return np.repeat(np.arange(n_images, dtype=np.int64) * 11, per_image)


def test_batch_size_not_a_multiple_of_per_group_fails_with_the_reason():
    with pytest.raises(ValueError,
                       match="batch_size 12 is not a multiple of per_group 5.*such as 10"):
        GroupedBatchSampler(caption_ids(), batch_size=12, per_group=5)


def test_fewer_eligible_groups_than_a_batch_needs_fails_with_the_counts():
    ids = np.repeat(np.arange(4), [5, 5, 5, 2])
    with pytest.raises(ValueError, match="only 3 groups have at least 5 rows, but one batch of "
                                         "20 needs 4 distinct groups"):
        GroupedBatchSampler(ids, batch_size=20, per_group=5)


def test_more_ranks_than_batches_fails_at_construction():
    with pytest.raises(ValueError, match="only 4 batches, fewer than world_size 8"):
        GroupedBatchSampler(caption_ids(), batch_size=50, per_group=5, rank=0, world_size=8)


def test_bad_rank_fails():
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        GroupedBatchSampler(caption_ids(), batch_size=50, per_group=5, rank=2, world_size=2)


def test_small_groups_are_dropped_and_counted_never_padded():
    ids = np.concatenate([caption_ids(10, 5), np.array([900, 900, 901])])
    sampler = GroupedBatchSampler(ids, batch_size=10, per_group=5, drop_last=False)
    assert sampler.stats["small_groups"] == 2
    assert sampler.stats["rows_in_small_groups"] == 3
    rows = np.concatenate(list(sampler))
    assert not np.isin(rows, [50, 51, 52]).any()
    assert len(rows) == len(np.unique(rows)) == 50


def test_small_groups_error_policy_names_the_groups():
    ids = np.concatenate([caption_ids(10, 5), np.array([900, 900])])
    with pytest.raises(ValueError, match=r"1 groups have fewer than per_group=5 rows \(e.g. "
                                         r"\[900\]\)"):
        GroupedBatchSampler(ids, batch_size=10, per_group=5, small_groups="error")
    with pytest.raises(ValueError, match="small_groups must be one of"):
        GroupedBatchSampler(ids, batch_size=10, per_group=5, small_groups="pad")


def test_string_group_ids_work_like_integer_ids():
    ids = caption_ids(12, 4)
    as_text = np.array([f"img{i:04d}.jpg" for i in ids])
    a = GroupedBatchSampler(ids, batch_size=8, per_group=4, seed=3)
    b = GroupedBatchSampler(as_text, batch_size=8, per_group=4, seed=3)
    assert list(a) == list(b)


def test_large_group_gives_one_slot_per_batch_and_k_rows_without_replacement():
    # one image with 30 captions among 9 images of 2: it can fill at most one slot per batch
    ids = np.concatenate([np.zeros(30, dtype=int), np.repeat(np.arange(1, 10), 2)])
    sampler = GroupedBatchSampler(ids, batch_size=4, per_group=2, seed=1)
    batches = list(sampler)
    # 9 small groups + up to B slots of the big one, B*2 slots: B = 9
    assert len(batches) == 9
    assert all((ids[b] == 0).sum() == 2 for b in batches)
    rows = np.concatenate(batches)
    assert len(np.unique(rows)) == len(rows) == 36


def test_another_epoch_gives_another_plan_and_set_epoch_selects_it():
    sampler = GroupedBatchSampler(caption_ids(), batch_size=20, per_group=5, seed=7)
    plans = [tuple(map(tuple, sampler.plan(e).rows.reshape(-1, 20))) for e in range(4)]
    assert len(set(plans)) == 4
    sampler.set_epoch(2)
    assert tuple(map(tuple, list(sampler))) == plans[2]
    other_seed = GroupedBatchSampler(caption_ids(), batch_size=20, per_group=5, seed=8)
    assert tuple(map(tuple, other_seed.plan(2).rows.reshape(-1, 20))) != plans[2]


def test_a_new_pass_moves_to_the_next_epoch_unless_set_epoch_says_otherwise():
    sampler = GroupedBatchSampler(caption_ids(), batch_size=20, per_group=5, seed=7)
    first, second = list(sampler), list(sampler)
    assert sampler.epoch == 1
    assert first == sampler.plan(0).rows.reshape(-1, 20).tolist()
    assert second == sampler.plan(1).rows.reshape(-1, 20).tolist()
    sampler.set_epoch(0)
    assert list(sampler) == first


def plan_of(sampler, epoch):
    return sampler.plan(epoch).rows.reshape(-1, sampler.batch_size).tolist()


def test_a_loop_that_stops_after_len_batches_still_gets_a_new_plan_each_epoch():
    # Lightning, and a loop that breaks after len(loader) batches, never exhaust the iterator
    sampler = GroupedBatchSampler(caption_ids(), batch_size=20, per_group=5, seed=7)
    loader = DataLoader(range(200), batch_sampler=sampler)
    epochs = []
    for _ in range(3):
        batches = []
        for step, batch in enumerate(loader):
            batches.append(batch.tolist())
            if step + 1 == len(loader):
                break
        epochs.append(batches)
    assert epochs == [plan_of(sampler, e) for e in range(3)]
    assert len({str(e) for e in epochs}) == 3
    assert sampler.epoch == 2


def test_an_iterator_never_advanced_is_not_a_pass():
    # a DataLoader with workers calls iter() twice per pass and drops the first iterator
    sampler = GroupedBatchSampler(caption_ids(), batch_size=20, per_group=5, seed=7)
    unused = iter(sampler)
    assert list(sampler) == plan_of(sampler, 0)
    del unused
    iter(sampler)
    assert list(sampler) == plan_of(sampler, 1)
    loader = DataLoader(range(200), batch_sampler=sampler, num_workers=2)
    assert [b.tolist() for b in loader] == plan_of(sampler, 2)
    assert [b.tolist() for b in loader] == plan_of(sampler, 3)


def test_a_pass_abandoned_part_way_does_not_hold_back_the_next_epoch_or_its_state():
    sampler = GroupedBatchSampler(caption_ids(), batch_size=20, per_group=5, seed=7)
    abandoned = iter(sampler)
    next(abandoned), next(abandoned)
    current = iter(sampler)
    next(current)  # the new pass starts with its first batch
    next(abandoned)  # an old iterator does not move the new pass's count
    assert (sampler.epoch, sampler.state_dict()["batches_done"]) == (1, 1)


def test_resume_is_exact_and_the_pass_after_it_is_the_next_whole_epoch():
    ids = caption_ids()
    reference = GroupedBatchSampler(ids, batch_size=20, per_group=5, seed=7)
    sampler = GroupedBatchSampler(ids, batch_size=20, per_group=5, seed=7)
    list(sampler)
    iterator = iter(sampler)  # epoch 1, stopped after 3 batches
    head = [next(iterator) for _ in range(3)]
    resumed = GroupedBatchSampler(ids, batch_size=20, per_group=5, seed=7)
    resumed.load_state_dict(sampler.state_dict())
    assert len(resumed) == 10  # the whole epoch, as stateful loaders expect; 7 are left
    rest = list(resumed)
    assert head + rest == plan_of(reference, 1)
    assert len(resumed) == 10
    assert list(resumed) == plan_of(reference, 2)
    finished = GroupedBatchSampler(ids, batch_size=20, per_group=5, seed=7)
    finished.load_state_dict(resumed.state_dict())  # saved at the end of epoch 2
    assert list(finished) == [] and list(finished) == plan_of(reference, 3)


def test_state_dict_from_another_configuration_is_refused():
    a = GroupedBatchSampler(caption_ids(), batch_size=20, per_group=5, seed=7)
    b = GroupedBatchSampler(caption_ids(), batch_size=20, per_group=5, seed=8)
    with pytest.raises(ValueError, match="seed=7 but this sampler has 8"):
        b.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="kind"):
        DiverseBatchSampler(caption_ids(), 20, 5, seed=7).load_state_dict(a.state_dict())


def test_state_dict_takes_the_loops_own_count_when_the_loader_prefetches():
    sampler = GroupedBatchSampler(caption_ids(), batch_size=20, per_group=5, seed=7)
    expected = list(sampler)
    sampler.set_epoch(0)
    loader = iter(DataLoader(range(200), batch_sampler=sampler))
    next(loader)
    state = sampler.state_dict(batches_done=1)
    assert state["batches_done"] == 1 and state["epoch"] == 0
    resumed = GroupedBatchSampler(caption_ids(), batch_size=20, per_group=5, seed=7)
    resumed.load_state_dict(state)
    assert list(resumed) == expected[1:]


def test_rank_and_world_size_default_to_the_initialised_process_group(tmp_path):
    import torch.distributed as dist

    assert GroupedBatchSampler(caption_ids(), 20, 5).world_size == 1
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        sampler = GroupedBatchSampler(caption_ids(), 20, 5)
        assert (sampler.rank, sampler.world_size) == (0, 1)
        assert len(sampler) == 10
    finally:
        dist.destroy_process_group()


def test_exclude_duplicates_keeps_groups_sharing_a_key_apart():
    ids = caption_ids(20, 2)
    keys = np.arange(len(ids))
    keys[[0, 2, 4]] = -1  # images 0, 1 and 2 share one caption
    sampler = GroupedBatchSampler(ids, batch_size=8, per_group=2, exclude_duplicates=keys)
    assert sampler.stats["linked_group_sets"] == 1
    for epoch in range(5):
        for batch in sampler.plan(epoch).rows.reshape(-1, 8):
            assert np.isin(ids[batch], [0, 11, 22]).sum() <= 2
    with pytest.raises(ValueError, match="pass one key per row"):
        GroupedBatchSampler(ids, 8, 2, exclude_duplicates=keys[:-1])


class CaptionRows(Dataset):
    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"row": i, "match_id": int(self.ids[i]), "x": torch.full((3,), float(i))}


def test_dataloader_with_workers_yields_the_plan_with_positive_masks():
    ids = caption_ids(30, 5)
    sampler = GroupedBatchSampler(ids, batch_size=25, per_group=5, seed=4)
    loader = DataLoader(CaptionRows(ids), batch_sampler=sampler, num_workers=2,
                        collate_fn=GroupedCollate("match_id"))
    batches = list(loader)
    assert len(batches) == len(sampler.plan(0)) == 6
    for batch, planned in zip(batches, sampler.plan(0).rows.reshape(-1, 25), strict=True):
        assert batch["row"].tolist() == planned.tolist()
        assert batch["positive_mask"].sum(1).tolist() == [4] * 25
        assert batch["x"].shape == (25, 3)


def test_diverse_sampler_reports_rows_it_could_not_place():
    docs = np.repeat(np.arange(6), [40, 3, 3, 3, 3, 3])
    sampler = DiverseBatchSampler(docs, batch_size=6, max_per_doc=2, seed=0)
    # each batch: at most 2 of doc 0 and 4 of the 15 others -> 3 batches (12 others), B=3
    assert len(sampler) == 3
    for batch in sampler:
        assert (docs[batch] == 0).sum() <= 2
    assert sampler.rows_unplaced() == len(docs) - 18
    with pytest.raises(ValueError, match="cannot be filled with at most 2 rows per document"):
        DiverseBatchSampler(np.zeros(10, dtype=int), batch_size=4, max_per_doc=2)


def test_set_epoch_to_another_epoch_forgets_the_resume_point_of_the_old_one():
    ids = caption_ids()
    sampler = GroupedBatchSampler(ids, batch_size=20, per_group=5, seed=7)
    epoch_one = GroupedBatchSampler(ids, batch_size=20, per_group=5, seed=7).plan(1)
    epoch_one = epoch_one.rows.reshape(-1, 20).tolist()
    iterator = iter(sampler)
    next(iterator), next(iterator), next(iterator)  # a pass left after 3 batches
    sampler.set_epoch(1)
    state = sampler.state_dict()
    assert (state["epoch"], state["batches_done"]) == (1, 0)
    fresh = GroupedBatchSampler(ids, batch_size=20, per_group=5, seed=7)
    fresh.load_state_dict(state)
    assert list(fresh) == epoch_one

    resumed = GroupedBatchSampler(ids, batch_size=20, per_group=5, seed=7)
    resumed.load_state_dict({**state, "epoch": 0, "batches_done": 2})
    resumed.set_epoch(0)  # the loop re-selecting the saved epoch keeps the resume point
    assert len(resumed) == len(epoch_one)  # len() is the whole epoch; the pass skips 2
    assert resumed.state_dict()["batches_done"] == 2
    resumed.set_epoch(1)  # another epoch starts from its first batch
    assert len(resumed) == len(epoch_one)
    assert list(resumed) == epoch_one


def test_state_dict_from_other_data_of_the_same_size_is_refused():
    ids = caption_ids()
    saved = GroupedBatchSampler(ids, batch_size=20, per_group=5, seed=7).state_dict()
    relabelled = np.roll(ids, 5)  # same group sizes and batch count, other rows per group
    other = GroupedBatchSampler(relabelled, batch_size=20, per_group=5, seed=7)
    assert len(other) == GroupedBatchSampler(ids, batch_size=20, per_group=5, seed=7).__len__()
    with pytest.raises(ValueError, match="data"):
        other.load_state_dict(saved)
    same = GroupedBatchSampler(ids.copy(), batch_size=20, per_group=5, seed=7)
    same.load_state_dict(saved)  # the same ids in a new array resume fine
