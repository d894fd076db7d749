"""Collating a grouped batch together with what a multi-positive contrastive loss needs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch


def group_tensor(group_ids) -> torch.Tensor:
    """Group ids as a tensor; string ids (e.g. ``image_id``) become codes ``0..G-1`` numbered in
    sorted id order, which is all a positive mask needs."""
    if isinstance(group_ids, torch.Tensor):
        return group_ids
    ids = np.asarray(group_ids)
    if ids.dtype.kind in "USO":
        ids = np.unique(ids.astype(str), return_inverse=True)[1].reshape(ids.shape)
    return torch.as_tensor(ids)


def positive_mask(group_ids) -> torch.Tensor:
    """``[B, B]`` bool: ``mask[i, j]`` is True when rows ``i != j`` belong to the same group.

    Row ``i``'s positives in a multi-positive InfoNCE loss are ``mask[i].nonzero()``; a row whose
    mask row is all False has no positive in the batch. ``group_ids`` may be ints or strings.

    Example:
        >>> positive_mask(torch.tensor([7, 7, 3]))
        tensor([[False,  True, False],
                [ True, False, False],
                [False, False, False]])
    """
    ids = group_tensor(group_ids)
    if ids.dim() != 1:
        raise ValueError(f"group_ids must be 1-d, got shape {tuple(ids.shape)}")
    same = ids[:, None] == ids[None, :]
    same.fill_diagonal_(False)
    return same


class GroupedCollate:
    """A ``collate_fn`` that adds each batch's group ids and positive mask.

    Samples are either mappings holding ``group_key`` (the result is the collated mapping plus
    ``"group_ids"`` and ``"positive_mask"``) or tuples whose last element is the group id (the
    result is the collated other elements followed by ``group_ids`` and ``positive_mask``).
    ``group_ids`` is a tensor: the ids themselves, or for string ids their codes within the
    batch (the mapping still holds the strings under ``group_key``).
    It is a picklable class, so it works with ``num_workers > 0``.

    Args:
        group_key: the key of the group id in mapping samples.
        collate: how to collate everything else (default: torch's ``default_collate``).

    Example:
        >>> loader = DataLoader(dataset, batch_sampler=GroupedBatchSampler(ids, 250, 5),
        ...                     collate_fn=GroupedCollate("match_id"))
        >>> batch = next(iter(loader))
        >>> batch["positive_mask"].sum(1)  # 4 positives for every row
    """

    def __init__(self, group_key: str = "match_id", collate: Callable | None = None):
        self.group_key = group_key
        self.collate = collate

    def __call__(self, samples: Sequence):
        from torch.utils.data import default_collate

        collate = self.collate or default_collate
        if not samples:
            raise ValueError("cannot collate an empty batch")
        if isinstance(samples[0], Mapping):
            if any(self.group_key not in s for s in samples):
                raise KeyError(f"a sample has no {self.group_key!r} field; pass "
                               f"GroupedCollate(group_key=...) naming the group id field")
            batch = collate(samples)
            group_ids = group_tensor(batch[self.group_key])
            batch["group_ids"] = group_ids
            batch["positive_mask"] = positive_mask(group_ids)
            return batch
        group_ids = group_tensor([s[-1] for s in samples])
        rest = collate([tuple(s[:-1]) for s in samples])
        return (*rest, group_ids, positive_mask(group_ids))
