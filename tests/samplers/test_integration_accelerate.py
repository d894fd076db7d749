"""GroupedBatchSampler and DiverseBatchSampler inside Hugging Face accelerate 1.x: two CPU
processes (gloo) in the documented setups, and the loud errors for setups that would drop or
repeat rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard

from tests.samplers.test_integration_lightning import (
    GROUP_IDS,
    assert_every_row_once_per_epoch_and_a_new_plan_each_epoch,
    run_under_torchrun,
)
from uncollapse.samplers import DiverseBatchSampler, GroupedBatchSampler

WORKER = Path(__file__).with_name("integration_accelerate_worker.py")


def test_accelerate_trains_on_every_row_once_per_epoch_and_refuses_double_sharding(tmp_path):
    ranks = run_under_torchrun(WORKER, tmp_path)
    assert [r["rank"] for r in ranks] == [0, 1]
    # accelerator.prepare(loader) dealing the batches of a world_size=1 sampler
    assert_every_row_once_per_epoch_and_a_new_plan_each_epoch(ranks, "prepared")
    # a loader accelerate does not prepare: the sampler splits the batches itself
    assert_every_row_once_per_epoch_and_a_new_plan_each_epoch(ranks, "not_prepared")
    # the same batches either way
    assert ranks[0]["prepared"] == ranks[0]["not_prepared"]
    for rank in ranks:
        assert "already gives rank" in rank["double_sharding"]
        assert "world_size=1" in rank["double_sharding"]


def grouped(**kwargs):
    return GroupedBatchSampler(GROUP_IDS, batch_size=40, per_group=5, seed=3, **kwargs)


@pytest.mark.parametrize("process_index", [0, 1])
def test_accelerate_dealing_a_world_size_1_sampler_gives_each_process_its_own_rank_batches(
        process_index):
    shard = BatchSamplerShard(grouped(rank=0, world_size=1), num_processes=2,
                              process_index=process_index)
    assert len(shard) == 10
    assert list(shard) == list(grouped(rank=process_index, world_size=2))


def test_accelerate_sharding_a_rank_aware_sampler_again_is_refused():
    shard = BatchSamplerShard(grouped(rank=1, world_size=2), num_processes=2, process_index=1)
    with pytest.raises(RuntimeError, match="only 1/2 of them"):
        list(shard)


def test_accelerate_padding_a_smaller_last_batch_is_refused():
    sampler = DiverseBatchSampler(np.arange(101) // 3, batch_size=10, max_per_doc=1,
                                  rank=0, world_size=1, drop_last=False)
    with pytest.raises(RuntimeError, match="use drop_last=True"):
        list(BatchSamplerShard(sampler, num_processes=2, process_index=0))


def test_accelerate_split_batches_must_keep_groups_whole():
    shard = BatchSamplerShard(grouped(rank=0, world_size=1), num_processes=4, process_index=0,
                              split_batches=True)  # pieces of 10 rows: groups of 5 stay whole
    assert [len(b) for b in shard] == [10] * 20
    cut = BatchSamplerShard(grouped(rank=0, world_size=1), num_processes=8, process_index=0,
                            split_batches=True)  # pieces of 5 rows: still whole
    assert len(list(cut)) == 20
    # pieces of 6 rows (accelerate accepts 30 / 5) would cut groups of 5 in two
    odd = GroupedBatchSampler(GROUP_IDS, batch_size=30, per_group=5, rank=0, world_size=1)
    with pytest.raises(RuntimeError, match="splits groups of 5 across processes"):
        list(BatchSamplerShard(odd, num_processes=5, process_index=0, split_batches=True))
