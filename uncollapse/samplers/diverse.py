"""Batches that no single document dominates: at most ``max_per_doc`` rows of a document each."""

from __future__ import annotations

import numpy as np

from uncollapse.samplers.base import PlannedBatchSampler
from uncollapse.samplers.planner import diverse_layout


class DiverseBatchSampler(PlannedBatchSampler):
    """No batch holds more than ``max_per_doc`` rows of one document.

    An epoch places the largest number of rows any plan of full batches can place under that
    cap; a document larger than the epoch's batches times ``max_per_doc`` gives only that many
    rows per epoch (different ones each epoch). ``rows_unplaced()`` and ``stats`` say how many
    rows an epoch leaves out. Every row appears at most once per epoch.

    Args:
        doc_ids: one document id per row (ints or strings), e.g. a sequence file's ``doc_ids``.
        batch_size: rows per batch.
        max_per_doc: most rows of one document in one batch.
        seed: the plan of an epoch is a pure function of ``(doc_ids, seed, epoch)``.
        drop_last: drop the rows that do not fill a whole batch (default). With ``False`` they
            form one smaller last batch, under the same cap.
        rank, world_size: this process's rank; default: those of ``sampler``, else of the
            ``torch.distributed`` group (read when the sampler is first used after the group is
            initialised), else 0 and 1. Every rank gets the same number of batches, disjoint
            from the other ranks'.
        sampler: a ``DistributedSampler`` naming this process's rank and world size; PyTorch
            Lightning passes one when it re-creates the batch sampler for DDP. Only its rank
            and world size are used.

    Raises:
        ValueError: not even one batch can be filled under the cap, or fewer batches than ranks.

    Attributes:
        stats: ``rows``, ``docs``, ``largest_doc``, ``batches_per_epoch``, ``batches_per_rank``,
            ``batches_left_for_rank_balance``, ``rows_in_full_batches``,
            ``has_smaller_last_batch``.

    Example:
        >>> sampler = DiverseBatchSampler(np.load("seqs.npz")["doc_ids"], batch_size=64,
        ...                               max_per_doc=4)
        >>> sampler.rows_unplaced()
        1873
        >>> loader = DataLoader(dataset, batch_sampler=sampler)
    """

    def __init__(self, doc_ids, batch_size: int, max_per_doc: int, *, seed: int = 0,
                 drop_last: bool = True, rank: int | None = None, world_size: int | None = None,
                 sampler=None):
        layout = diverse_layout(np.asarray(doc_ids), int(batch_size), int(max_per_doc),
                                drop_last=drop_last)
        super().__init__(layout, seed=seed, rank=rank, world_size=world_size, kind="diverse",
                         sampler=sampler)
        self.batch_size = int(batch_size)
        self.max_per_doc = int(max_per_doc)
        self.drop_last = bool(drop_last)
