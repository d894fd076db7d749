"""GroupedBatchSampler inside PyTorch Lightning 2.x: DDP with two CPU processes (gloo) in the
documented setups, and the loud error for the setup that cannot work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from uncollapse.samplers import GroupedBatchSampler

WORKER = Path(__file__).with_name("integration_lightning_worker.py")
GROUP_IDS = np.repeat(np.arange(160), 5)


def run_under_torchrun(worker: Path, out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(worker), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def assert_every_row_once_per_epoch_and_a_new_plan_each_epoch(ranks, key, epochs=2):
    for epoch in range(epochs):
        batches = ranks[0][key][epoch] + ranks[1][key][epoch]
        assert len(ranks[0][key][epoch]) == len(ranks[1][key][epoch]) == 10
        rows = np.concatenate(batches)
        assert np.array_equal(np.sort(rows), np.arange(len(GROUP_IDS)))  # each row once
        for batch in batches:
            assert np.unique(GROUP_IDS[batch], return_counts=True)[1].tolist() == [5] * 8
    assert ranks[0][key][0] != ranks[0][key][1]
    assert ranks[1][key][0] != ranks[1][key][1]


def test_lightning_ddp_trains_on_every_row_once_per_epoch_with_a_new_plan_each_epoch(tmp_path):
    ranks = run_under_torchrun(WORKER, tmp_path)
    assert [r["rank"] for r in ranks] == [0, 1]
    # default settings: Lightning re-created the sampler with its DistributedSampler's rank
    assert [r["hook_sampler"] for r in ranks] == [[0, 2], [1, 2]]
    assert_every_row_once_per_epoch_and_a_new_plan_each_epoch(ranks, "hook")
    # use_distributed_sampler=False: a sampler built before fit() reads the rank when used
    assert_every_row_once_per_epoch_and_a_new_plan_each_epoch(ranks, "outside")


def grouped_loader(**kwargs):
    sampler = GroupedBatchSampler(GROUP_IDS, batch_size=40, per_group=5, seed=3, **kwargs)
    return DataLoader(range(len(GROUP_IDS)), batch_sampler=sampler)


def test_lightning_re_creating_a_loader_built_outside_a_hook_says_what_to_do():
    loader = grouped_loader()
    injected = DistributedSampler(loader.dataset, num_replicas=2, rank=1)
    with pytest.raises(TypeError, match=r"build the DataLoader inside train_dataloader\(\).*"
                                        r"use_distributed_sampler=False"):
        _update_dataloader(loader, injected)


def test_lightning_hook_re_creation_passes_the_rank_through_sampler():
    from lightning.fabric.utilities.data import _replace_dunder_methods

    with _replace_dunder_methods(BatchSampler):  # what Lightning does around train_dataloader()
        loader = grouped_loader()
    rebuilt = _update_dataloader(loader, DistributedSampler(loader.dataset, num_replicas=2,
                                                            rank=1))
    sampler = rebuilt.batch_sampler
    assert (sampler.rank, sampler.world_size) == (1, 2)
    expected = GroupedBatchSampler(GROUP_IDS, batch_size=40, per_group=5, seed=3, rank=1,
                                   world_size=2)
    assert list(sampler) == list(expected)


def test_lightnings_set_epoch_reaches_the_sampler_and_selects_the_plan():
    from lightning.fabric.utilities.data import _set_sampler_epoch

    loader = grouped_loader()
    sampler = loader.batch_sampler
    _set_sampler_epoch(loader, 4)  # what Lightning calls at the start of every epoch
    assert sampler.epoch == 4
    assert list(sampler) == sampler.plan(4).rows.reshape(-1, 40).tolist()


def test_a_sampler_that_disagrees_with_the_injected_one_is_refused():
    with pytest.raises(ValueError, match="rank=0 disagrees with the sampler's 1"):
        GroupedBatchSampler(GROUP_IDS, 40, 5, rank=0, world_size=2,
                            sampler=DistributedSampler(range(10), num_replicas=2, rank=1))
