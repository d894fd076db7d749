"""Batches of whole groups: `per_group` positives of each of `batch_size // per_group` groups."""

from __future__ import annotations

import numpy as np

from uncollapse.samplers.base import PlannedBatchSampler
from uncollapse.samplers.planner import grouped_layout


class GroupedBatchSampler(PlannedBatchSampler):
    """Every batch holds ``batch_size // per_group`` distinct groups with ``per_group`` distinct
    rows each, e.g. k captions of each image for a multi-positive InfoNCE loss.

    Rows of a group are used without replacement within an epoch: a group with ``s`` rows gives
    ``s // per_group`` slots of ``per_group`` rows, each in a different batch; which rows fill them
    changes every epoch. A group larger than the epoch has batches is capped at one slot per
    batch. An index never appears twice in a batch, and a small group is never padded with
    repeats. Rows of one group sit next to each other in the batch, so it can be viewed as
    ``[batch_size // per_group, per_group]``.

    Args:
        group_ids: one id per row (ints or strings), e.g. the caption table's ``match_id``.
        batch_size: rows per batch; a multiple of ``per_group``.
        per_group: rows of each group in a batch (the positives of each anchor, itself included).
        seed: the plan of an epoch is a pure function of ``(group_ids, seed, epoch)``.
        drop_last: drop the rows that do not fill a whole batch (default). With ``False`` they
            form one smaller last batch of whole groups, still ``per_group`` rows each.
        small_groups: what to do with groups of fewer than ``per_group`` rows: ``"drop"`` leaves
            them out (counted in ``stats["small_groups"]``), ``"error"`` raises ``ValueError``.
        exclude_duplicates: optional key per row (e.g. a hash of the normalised caption). Two
            groups that share a key, directly or through other groups, never meet in one batch,
            so a duplicate caption of another image never appears as a false negative.
        rank, world_size: this process's rank; default: those of ``sampler``, else of the
            ``torch.distributed`` group (read when the sampler is first used after the group is
            initialised), else 0 and 1. Every rank gets the same number of batches, disjoint
            from the other ranks'.
        sampler: a ``DistributedSampler`` naming this process's rank and world size; PyTorch
            Lightning passes one when it re-creates the batch sampler for DDP. Only its rank
            and world size are used.

    Raises:
        ValueError: the request is impossible (``batch_size`` not a multiple of ``per_group``,
            fewer eligible groups than one batch needs, fewer batches than ranks, ...).

    Attributes:
        stats: ``rows``, ``groups``, ``eligible_groups``, ``small_groups``,
            ``rows_in_small_groups``, ``linked_group_sets``, ``batches_per_epoch``,
            ``batches_per_rank``, ``batches_left_for_rank_balance``, ``rows_in_full_batches``,
            ``has_smaller_last_batch``.

    Example:
        >>> sampler = GroupedBatchSampler(table["match_id"].to_numpy(), batch_size=250,
        ...                               per_group=5, seed=0)
        >>> loader = DataLoader(dataset, batch_sampler=sampler, num_workers=4)
        >>> for epoch in range(10):
        ...     sampler.set_epoch(epoch)
        ...     for batch in loader: ...
    """

    def __init__(self, group_ids, batch_size: int, per_group: int, *, seed: int = 0,
                 drop_last: bool = True, small_groups: str = "drop", exclude_duplicates=None,
                 rank: int | None = None, world_size: int | None = None, sampler=None):
        layout = grouped_layout(np.asarray(group_ids), int(batch_size), int(per_group),
                                drop_last=drop_last, small_groups=small_groups,
                                exclude_duplicates=exclude_duplicates)
        super().__init__(layout, seed=seed, rank=rank, world_size=world_size, kind="grouped",
                         sampler=sampler)
        self.batch_size = int(batch_size)
        self.per_group = int(per_group)
        self.drop_last = bool(drop_last)
        self.small_groups = small_groups

    def _check_split(self, pieces: int) -> None:
        piece = self.batch_size // pieces
        if self.batch_size % pieces or piece % self.per_group:
            raise RuntimeError(
                f"accelerate's split_batches cuts every batch of {self.batch_size} rows into "
                f"{pieces} pieces of {self.batch_size / pieces:g}, which splits groups of "
                f"{self.per_group} across processes; use a batch_size that is a multiple of "
                f"{pieces} x per_group ({pieces * self.per_group}), or split_batches=False")
