"""Always-on attribute flips for attribute-conditioned training (flows in embedding space).

``AttributeFlipDataset`` gives every sample, every time, a target attribute vector that differs
from its source in between ``min_flips`` and ``max_flips`` attributes. Flipping only some of
the time lets a model learn the identity map for most of the data and collapse; here a sample
without a flip cannot occur.

Randomness is counter-based: the flips of sample ``i`` in epoch ``e`` are a hash of
``(seed, e, i)``, so they are the same whichever worker, batch or order asks for them, and a
whole batch is drawn with a few array operations.

Real attribute tables have rare combinations (few women with moustaches): a target landing on
one has no prototype worth the name. ``excluded_targets`` names combinations never drawn as
targets; a draw that lands on one is replaced by a uniform choice among the flips of the same
source (``min_flips..max_flips`` attributes) whose target is allowed, from another word of the
same hash, so the draws stay a pure function of ``(seed, e, i)``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from uncollapse.data.attributes.contract import (
    MAX_ATTRIBUTES,
    combination_ids,
    counter_hash,
    decode_combination_ids,
    draw_flips,
)

__all__ = ["AttributeFlipDataset", "allowed_flips", "flip_masks"]

MAX_FLIP_MASKS = 1 << 16  # flip masks enumerated for a redraw (8 attributes, 2 flips: 36)


def flip_masks(n_attributes: int, min_flips: int, max_flips: int) -> np.ndarray:
    """[M] int64 bit masks of every flip of ``min_flips..max_flips`` of ``n_attributes``."""
    total = sum(math.comb(n_attributes, k) for k in range(min_flips, max_flips + 1))
    if total > MAX_FLIP_MASKS:
        raise ValueError(f"{total} ways to flip {min_flips}..{max_flips} of {n_attributes} "
                         f"attributes, more than {MAX_FLIP_MASKS} can be searched for allowed "
                         "targets; flip fewer attributes (or fewer at once)")
    every = np.arange(1 << n_attributes, dtype=np.int64) if n_attributes <= 20 else None
    if every is not None:
        counts = decode_combination_ids(every, n_attributes).sum(axis=1)
        return every[(counts >= min_flips) & (counts <= max_flips)]
    masks = [sum(1 << j for j in chosen) for k in range(min_flips, max_flips + 1)
             for chosen in itertools.combinations(range(n_attributes), k)]
    return np.array(masks, dtype=np.int64)


def allowed_flips(sources: np.ndarray, masks: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """[U, M] bool: flip mask ``m`` of source combination ``u`` lands outside ``excluded``."""
    return ~np.isin(np.asarray(sources, np.int64)[:, None] ^ masks[None, :], excluded)


class AttributeFlipDataset(torch.utils.data.Dataset):
    """Embeddings with source attributes and always-flipped target attributes.

    Item ``i`` is a dict: ``embedding`` (the row of ``embeddings``), ``source_attributes`` and
    ``target_attributes`` (float32 0/1 vectors, ready to condition a network), ``flips`` (int64
    number of attributes that differ, always in ``[min_flips, max_flips]``),
    ``combination_id`` (int64 id of the target vector, see ``combination_ids``) and ``index``.
    The flips of item ``i`` depend only on ``(seed, epoch, i)``.

    Args:
        embeddings: [N, D] array or tensor (a numpy memmap works; rows are read per batch).
        attributes: [N, A] 0/1 source attributes (array, tensor, or a polars DataFrame of
            attribute columns). A is at most 62.
        min_flips, max_flips: every target differs from its source in k attributes, k uniform
            in ``[min_flips, max_flips]``, the attributes a uniform choice without replacement.
        seed: seed of the flips.
        attribute_names: names of the A columns (taken from a DataFrame when given one).
        excluded_targets: combination ids (see ``combination_ids``) never drawn as targets,
            such as the combinations too rare for a prototype. Every row must keep at least
            one allowed target within ``min_flips..max_flips`` flips.

    Example:
        >>> table = pl.read_parquet("attrs.parquet")
        >>> names = ["Smiling", "Male", "Eyeglasses"]
        >>> data = AttributeFlipDataset(embeddings, table.select(names), max_flips=2, seed=0)
        >>> for epoch in range(10):
        ...     data.set_epoch(epoch)
        ...     # 3 attributes: 8 target combinations, 8 groups x 32 rows per batch
        ...     sampler = GroupedBatchSampler(data.target_combination_ids(), batch_size=256,
        ...                                   per_group=32, seed=0)
        ...     sampler.set_epoch(epoch)
        ...     loader = DataLoader(data, sampler=sampler, batch_size=None, num_workers=4)
        ...     for batch in loader: ...

    With ``sampler=<batch sampler>, batch_size=None`` the loader hands each batch's index list
    to ``__getitem__``, which returns the whole batch from one vectorised call (about 9x
    faster than ``batch_sampler=``, whose default collation stacks per-row dicts; both give
    the same batches). ``__getitems__`` still draws a ``batch_sampler=`` batch in one call.
    ``set_epoch`` changes the flips; with ``persistent_workers`` the workers keep the epoch
    they were started with, so leave persistent workers off.
    """

    def __init__(self, embeddings, attributes, *, min_flips: int = 1, max_flips: int = 2,
                 seed: int = 0, attribute_names: list[str] | None = None,
                 excluded_targets=None):
        if hasattr(attributes, "columns") and hasattr(attributes, "to_numpy"):
            attribute_names = attribute_names or list(attributes.columns)
            attributes = attributes.to_numpy()
        if isinstance(attributes, torch.Tensor):
            attributes = attributes.cpu().numpy()
        source = np.asarray(attributes)
        if source.ndim != 2:
            raise ValueError(f"attributes must be [N, A], got shape {source.shape}")
        n, a = source.shape
        if not np.isin(source, (0, 1)).all():
            bad = np.argwhere(~np.isin(source, (0, 1)))[0]
            raise ValueError(f"attributes must be 0/1; row {bad[0]}, column {bad[1]} is "
                             f"{source[bad[0], bad[1]]} (convert -1/1 sources with (a + 1) // 2)")
        if len(embeddings) != n:
            raise ValueError(f"{len(embeddings)} embeddings but {n} attribute rows; row i of "
                             "both must describe the same sample")
        if not 1 <= min_flips <= max_flips <= a:
            raise ValueError(f"need 1 <= min_flips ({min_flips}) <= max_flips ({max_flips}) <= "
                             f"number of attributes ({a}); a sample must always flip")
        if a > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes (combination ids are "
                             f"bit-packed int64), got {a}; select the attributes to flip")
        if attribute_names is not None and len(attribute_names) != a:
            raise ValueError(f"{len(attribute_names)} attribute names for {a} columns")
        self.embeddings = embeddings
        self.source = source.astype(np.int8)
        self.min_flips, self.max_flips = int(min_flips), int(max_flips)
        self.seed = int(seed)
        self.epoch = 0
        self.attribute_names = list(attribute_names) if attribute_names is not None else None
        self.excluded_targets = np.unique(np.asarray(
            [] if excluded_targets is None else excluded_targets, dtype=np.int64))
        if len(self.excluded_targets):
            self._plan_redraws()

    def _plan_redraws(self) -> None:
        """For every distinct source combination, the flip masks whose target is allowed (CSR:
        ``_allowed_masks[_allowed_offsets[u]:_allowed_offsets[u + 1]]``)."""
        masks = flip_masks(self.n_attributes, self.min_flips, self.max_flips)
        sources, self._source_slot = np.unique(combination_ids(self.source),
                                               return_inverse=True)
        allowed = allowed_flips(sources, masks, self.excluded_targets)
        counts = allowed.sum(axis=1)
        if not counts.all():
            row = int(np.flatnonzero(counts[self._source_slot] == 0)[0])
            raise ValueError(f"row {row} (combination {int(sources[self._source_slot[row]])}) "
                             f"has no target within {self.min_flips}..{self.max_flips} flips "
                             "outside excluded_targets; leave such rows out or exclude fewer "
                             "combinations")
        self._allowed_offsets = np.concatenate([[0], np.cumsum(counts)])
        self._allowed_masks = np.broadcast_to(masks, allowed.shape)[allowed]

    def __len__(self) -> int:
        return len(self.source)

    @property
    def n_attributes(self) -> int:
        return self.source.shape[1]

    def set_epoch(self, epoch: int) -> None:
        """Draw the flips of ``epoch`` from now on (call before each epoch)."""
        self.epoch = int(epoch)

    def targets(self, index, epoch: int | None = None) -> np.ndarray:
        """[n, A] int8 target attributes of the samples ``index`` (default: current epoch)."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        epoch = self.epoch if epoch is None else epoch
        flips = draw_flips(self.n_attributes, index, min_flips=self.min_flips,
                           max_flips=self.max_flips, seed=self.seed, epoch=epoch)
        target = self.source[index] ^ flips.astype(np.int8)
        if not len(self.excluded_targets):
            return target
        redraw = np.flatnonzero(np.isin(combination_ids(target), self.excluded_targets))
        if len(redraw):
            # the hash word after draw_flips' own: independent of the first draw
            word = counter_hash(self.seed, epoch, index[redraw], self.n_attributes + 2)[:, -1]
            slot = self._source_slot[index[redraw]]
            start, count = self._allowed_offsets[slot], np.diff(self._allowed_offsets)[slot]
            mask = self._allowed_masks[start + (word % count.astype(np.uint64)).astype(np.int64)]
            target[redraw] = self.source[index[redraw]] ^ decode_combination_ids(
                mask, self.n_attributes)
        return target

    def target_combination_ids(self, epoch: int | None = None) -> np.ndarray:
        """[N] int64 combination id of every sample's target in ``epoch`` (default: current).

        Pass it as ``group_ids`` to ``GroupedBatchSampler`` so each batch holds several
        samples of each target combination, as a prototype loss needs.
        """
        return combination_ids(self.targets(np.arange(len(self)), epoch))

    def batch(self, index) -> dict[str, torch.Tensor]:
        """The samples ``index`` as one dict of batched tensors (the vectorised path)."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} samples")
        index = index % len(self) if len(index) else index
        target = self.targets(index)
        source = self.source[index]
        embedding = self.embeddings[torch.as_tensor(index)] if isinstance(
            self.embeddings, torch.Tensor) else torch.as_tensor(np.asarray(self.embeddings[index]))
        return {"embedding": embedding,
                "source_attributes": torch.from_numpy(source.astype(np.float32)),
                "target_attributes": torch.from_numpy(target.astype(np.float32)),
                "flips": torch.from_numpy((source != target).sum(axis=1).astype(np.int64)),
                "combination_id": torch.from_numpy(combination_ids(target)),
                "index": torch.from_numpy(index)}

    def __getitem__(self, index):
        """One sample as a dict of tensors; a list/array of indices gives a batched dict."""
        if isinstance(index, (int, np.integer)) or (
                isinstance(index, torch.Tensor) and index.ndim == 0):
            return {key: value[0] for key, value in self.batch([int(index)]).items()}
        return self.batch(index)

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """Samples for ``DataLoader``'s default collate, drawn as one vectorised batch."""
        batch = self.batch(indices)
        columns = {key: value.unbind(0) for key, value in batch.items()}
        return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(),
                                                                    strict=True)]
