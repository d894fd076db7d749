"""AttributeFlipDataset batched by GroupedBatchSampler over target combination ids."""

from __future__ import annotations

import numpy as np
import torch
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.data.attributes.contract import combination_ids
from uncollapse.data.attributes.dataset import AttributeFlipDataset
from uncollapse.samplers.grouped import GroupedBatchSampler
from uncollapse.validators.attributes.flips import audit_flips


def flip_dataset(n=2000, seed=0) -> AttributeFlipDataset:
    rng = np.random.default_rng(1)
    return AttributeFlipDataset(rng.standard_normal((n, 8)).astype(np.float32),
                                rng.integers(0, 2, (n, 3)), min_flips=1, max_flips=2, seed=seed)


def test_every_batch_holds_whole_groups_of_one_target_combination():
    ds = flip_dataset()
    ds.set_epoch(2)
    sampler = GroupedBatchSampler(ds.target_combination_ids(), batch_size=64, per_group=8,
                                  seed=0, rank=0, world_size=1)
    sampler.set_epoch(2)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler)
    batches = list(loader)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        ids = batch["combination_id"].view(8, 8)
        # rows of a group sit together: each block of per_group rows shares one target
        assert (ids == ids[:, :1]).all()
        assert len(torch.unique(ids[:, 0])) == 8
        np.testing.assert_array_equal(combination_ids(batch["target_attributes"].numpy()),
                                      batch["combination_id"].numpy())
        assert (batch["flips"] >= 1).all()


def test_audit_of_grouped_batches_reports_combinations_per_batch():
    ds = flip_dataset()
    sampler = GroupedBatchSampler(ds.target_combination_ids(epoch=0), batch_size=64,
                                  per_group=8, seed=0, rank=0, world_size=1)
    report = audit_flips(ds, batches=sampler, epoch=0)
    assert report.ok and report.stats["share_with_flip"] == 1.0
    assert report.stats["combinations_per_batch"] == {"min": 8, "mean": 8.0, "max": 8}
    assert report.stats["samples"] == len(sampler) * 64


def test_validate_flips_with_per_group_replays_the_grouped_plan(tmp_path):
    import polars as pl

    rng = np.random.default_rng(0)
    pl.DataFrame({"image_id": [str(i) for i in range(1000)],
                  **{n: rng.integers(0, 2, 1000).astype(np.int8) for n in ("A", "B", "C")}}
                 ).write_parquet(tmp_path / "attrs.parquet")
    result = CliRunner().invoke(main, ["validate", "flips", "--table",
                                       str(tmp_path / "attrs.parquet"), "--batch-size", "32",
                                       "--per-group", "4", "--quiet", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"min": 8' in result.output and '"max": 8' in result.output
