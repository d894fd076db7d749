"""Batches of target attribute combinations for attribute-flip training.

``AttributeFlipDataset`` redraws every row's target attributes each epoch, so the groups a
batch is built from change with the epoch; ``TargetCombinationSampler`` plans each epoch with
``GroupedBatchSampler`` over that epoch's target combination ids.
"""

from __future__ import annotations

import hashlib

import numpy as np

from uncollapse.data.attributes.dataset import AttributeFlipDataset
from uncollapse.samplers.grouped import GroupedBatchSampler

__all__ = ["TargetCombinationSampler"]


class TargetCombinationSampler:
    """``GroupedBatchSampler`` over each epoch's target combination ids.

    The groups change every epoch (the targets are redrawn), so the grouped sampler of epoch
    ``e`` is built from ``dataset.target_combination_ids(e)``; its plan is a pure function of
    ``(seed, e)``. Gives the engine what it uses of a planned sampler: ``plan``, ``set_epoch``,
    ``state_dict`` and ``load_state_dict``.

    Args:
        dataset: the flip dataset whose targets are drawn per epoch.
        batch_size: rows per batch, a multiple of ``per_group``.
        per_group: rows of each target combination in a batch.
        seed: seed of every epoch's plan.
        rank, world_size: this process's slice of each epoch's global plan (None: those of
            the torch.distributed group, or one process).

    Example:
        >>> dataset = AttributeFlipDataset(embeddings, attributes, min_flips=1, max_flips=2,
        ...                                seed=0)
        >>> sampler = TargetCombinationSampler(dataset, batch_size=64, per_group=8, seed=0)
        >>> sampler.set_epoch(1)
        >>> for batch in sampler:  # 8 target combinations, 8 rows of each
        ...     ...
    """

    def __init__(self, dataset: AttributeFlipDataset, batch_size: int, per_group: int, *,
                 seed: int, rank: int | None = None, world_size: int | None = None):
        self.dataset, self.batch_size, self.per_group = dataset, batch_size, per_group
        self.rank, self.world_size = rank, world_size  # None: the torch.distributed group's
        self.seed, self.epoch = int(seed), 0
        self._cached: tuple[int, GroupedBatchSampler] | None = None

    def sampler(self, epoch: int) -> GroupedBatchSampler:
        if self._cached is None or self._cached[0] != epoch:
            grouped = GroupedBatchSampler(self.dataset.target_combination_ids(epoch),
                                          self.batch_size, self.per_group, seed=self.seed,
                                          drop_last=True, rank=self.rank,
                                          world_size=self.world_size)
            self._cached = (epoch, grouped)
        return self._cached[1]

    def plan(self, epoch: int | None = None):
        epoch = self.epoch if epoch is None else int(epoch)
        return self.sampler(epoch).plan(epoch)

    def __iter__(self):
        plan = self.plan()
        return (plan.batch(i).tolist() for i in range(len(plan)))

    def __len__(self) -> int:
        return len(self.plan())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def data_digest(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(np.ascontiguousarray(self.dataset.source).data)
        digest.update(repr((self.batch_size, self.per_group, self.dataset.min_flips,
                            self.dataset.max_flips, self.dataset.seed)).encode())
        excluded = getattr(self.dataset, "excluded_targets", ())
        if len(excluded):  # runs without exclusions keep the digest they always had
            digest.update(np.ascontiguousarray(excluded, dtype=np.int64).data)
        return digest.hexdigest()

    def state_dict(self, batches_done: int = 0) -> dict:
        return {"kind": "target-combinations", "seed": self.seed, "epoch": self.epoch,
                "batches_done": int(batches_done), "data": self.data_digest()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "target-combinations" or state.get("seed") != self.seed or \
                state.get("data") != self.data_digest():
            raise ValueError("the checkpoint's sampler state is of other data, seed or flip "
                             "settings; resume with the run's own config")
        self.epoch = int(state["epoch"])
