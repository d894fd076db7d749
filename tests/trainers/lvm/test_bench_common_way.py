"""benchmarks/bench_trainers.py's common way: the per-item LVM dataset in spawned DataLoader
workers gives, batch for batch, the samples the dataset gives in this process."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from uncollapse.trainers.lvm.config import LVMConfig
from uncollapse.trainers.lvm.recipe import LVMRecipe

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_trainers  # noqa: E402


def test_spawned_workers_give_the_per_item_samples_of_each_planned_batch(tmp_path):
    path = bench_trainers.synthetic_sequences(tmp_path / "seq.npz", docs=12, length=20, dim=8,
                                              context=3)
    config = LVMConfig(out=str(tmp_path / "run"), sequences=str(path), batch_size=16,
                       device="cpu", quiet=True, max_per_doc=4)
    recipe = LVMRecipe(config, torch.device("cpu"))
    recipe.setup()
    recipe.on_epoch(0)
    dataset = bench_trainers.PerItemSequences(recipe)
    planned = [list(batch) for batch in recipe.sampler]
    loader = bench_trainers.common_loader(dataset, planned, 2, torch.device("cpu"))
    assert loader.multiprocessing_context is not None
    assert loader.multiprocessing_context.get_start_method() == "spawn"
    got = list(loader)
    assert len(got) == len(planned) > 1
    for rows, (context, target, negative) in zip(planned, got, strict=True):
        items = [dataset[i] for i in rows]
        assert context.shape == (16, 3, 8) and target.shape == (16, 8)
        np.testing.assert_array_equal(context.numpy(), np.stack([c for c, _, _ in items]))
        np.testing.assert_array_equal(target.numpy(), np.stack([t for _, t, _ in items]))
        np.testing.assert_array_equal(negative.numpy(), np.stack([n for _, _, n in items]))
