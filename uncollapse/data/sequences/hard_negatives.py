"""Same-document hard negatives for next-vector sequence files, in O(1) per item.

The negative of sample ``i`` is drawn from a counter-based hash of ``(seed, epoch, i)``
(splitmix64's finaliser), so any worker or rank draws the same one without shared state, and the
draw maps to a row of the document's target range by index arithmetic: no search over
``doc_ids``, no rejection loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from uncollapse.data.sequences.dataset import SequenceDataset
from uncollapse.errors import ToolError

__all__ = ["HardNegativeSequenceDataset", "epoch_key", "item_bits", "item_bits_array"]

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


# counter-based randomness: splitmix64's finaliser, the same in Python ints and numpy uint64 ----
def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK
    return z ^ (z >> 31)


def _mix_array(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


def epoch_key(seed: int, epoch: int) -> int:
    """The 64-bit key of one (seed, epoch); item i's draw is ``mix(key + (i + 1) * golden)``."""
    return _mix(_mix((seed + _GOLDEN) & _MASK) ^ (epoch & _MASK))


def item_bits(key: int, index: int) -> int:
    return _mix((int(key) + (int(index) + 1) * _GOLDEN) & _MASK)


def item_bits_array(key: int, indices: np.ndarray) -> np.ndarray:
    counters = (indices.astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN) + np.uint64(key)
    return _mix_array(counters)


def _below(bits, bound):
    """A draw in ``[0, bound)`` from 64 random bits (bound < 2**32): exact integer arithmetic."""
    return ((bits >> 32) * bound) >> 32


class HardNegativeSequenceDataset(SequenceDataset):
    """``(context, target, hard_negative)``: the negative is another target of the same document.

    The draw for sample ``i`` is a pure function of ``(seed, epoch, i)`` (a splitmix64 hash of
    the three), so it is the same whichever DataLoader worker or rank serves ``i``, and costs
    O(1): targets are laid out document by document, so the negative is an offset drawn in the
    document's target range that skips the target and its ``+-exclude_window`` neighbours by
    index arithmetic, without rejection. Opening the dataset builds that arithmetic's operands
    once per sample (16 bytes per sample below 2**31 samples, 28 above), in one vectorised pass.

    Fallback, counted in ``fallback_counts`` (per epoch; the counts do not depend on the epoch):

    - ``window_relaxed``: every other target of the document lies within the window; the
      negative is then any other target of the document (the window is dropped, the target
      itself is still excluded);
    - ``other_document``: the document has no other target; the negative is a target drawn
      uniformly from the other documents.

    The negative is never the sample's own target row. (Two different chunks with identical
    vectors can still meet; ``uncollapse validate sequences`` reports those as
    ``DUPLICATE_TARGETS``.)

    Args:
        source: as for ``SequenceDataset``; a dense file needs ``doc_ids`` (without
            ``target_positions``, the window counts samples in file order).
        exclude_window: w; targets at positions within +-w of the target are not drawn
            (0: only the target itself is excluded).
        seed: the draws' seed.
        epoch: the starting epoch (see ``set_epoch``).
        mmap: as for ``SequenceDataset``.

    Example:
        >>> dataset = HardNegativeSequenceDataset("sequences.npz", exclude_window=2, seed=7)
        >>> dataset.set_epoch(3)
        >>> context, target, negative = dataset[10]
        >>> loader = DataLoader(dataset, batch_size=256, shuffle=True, collate_fn=collate_batch)
    """

    def __init__(self, source, *, exclude_window: int = 0, seed: int = 0, epoch: int = 0,
                 mmap: bool = True):
        if exclude_window < 0:
            raise ToolError(f"exclude_window must be 0 or more, not {exclude_window}")
        self.exclude_window = int(exclude_window)
        self.seed = int(seed)
        super().__init__(source, mmap=mmap)
        self._after_load()
        self.set_epoch(epoch)

    def _state_keys(self):
        return ("_path", "_mmap", "exclude_window", "seed", "epoch", "_key")

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's negatives (call before each epoch, as with DistributedSampler).

        ``DataLoader`` workers hold a copy of the dataset made when they start: the default
        loader starts them at every ``iter(loader)``, so they see the new epoch, but with
        ``persistent_workers=True`` they keep the epoch they started with. Leave
        ``persistent_workers`` off (or build a new loader) when negatives must change per epoch.
        """
        self.epoch = int(epoch)
        self._key = epoch_key(self.seed, self.epoch)

    def _after_load(self) -> None:
        where = str(self._path) if self._path else "arrays"
        if self.doc_ids is None:
            raise ToolError(f"{where}: no doc_ids, so no same-document negative can be drawn; "
                            "rebuild it with `uncollapse build sequences` "
                            "(MISSING_DOC_IDS)")
        n = len(self)
        if n < 2:
            raise ToolError(f"{where}: {n} sample(s); a hard negative needs at least 2")
        if n >= 1 << 32:
            raise ToolError(f"{where}: more than 2**32 samples are not supported")
        # without target_positions, a sample's place in the file stands for its position
        positions = (self.target_positions if self.target_positions is not None
                     else np.arange(n, dtype=np.int64))
        # Rank space: samples sorted by (document, position). The compact form and files from
        # `build sequences` are already in that order, so no permutation is kept for them.
        order = np.lexsort((positions, self.doc_ids))
        identity = bool(np.array_equal(order, np.arange(n)))
        self._item_of_rank = None if identity else order
        self._rank_of_item = None
        if not identity:
            self._rank_of_item = np.empty(n, dtype=np.int64)
            self._rank_of_item[order] = np.arange(n)
        sorted_docs = self.doc_ids[order]
        sorted_pos = np.asarray(positions, dtype=np.int64)[order]
        new_doc = np.r_[True, sorted_docs[1:] != sorted_docs[:-1]]
        steps = np.diff(sorted_pos)[~new_doc[1:]]
        if np.any(steps == 0):
            same = np.flatnonzero(~new_doc[1:] & (np.diff(sorted_pos) == 0))[0]
            first, second = sorted((int(order[same]), int(order[same + 1])))
            raise ToolError(f"{where}: samples {first} and {second} both have doc_id "
                            f"{int(sorted_docs[same])} and target position "
                            f"{int(sorted_pos[same])}; a target position names one chunk of its "
                            "document, so the file is malformed: run `uncollapse validate "
                            "sequences` on it and rebuild it with `uncollapse build sequences`")
        # Consecutive positions: the window is rank +- w. Otherwise it is found by a binary
        # search on (document, position) keys.
        doc_of_rank = np.cumsum(new_doc) - 1
        segments = np.r_[np.flatnonzero(new_doc), n].astype(np.int64)
        start, end = segments[doc_of_rank], segments[doc_of_rank + 1]
        ranks = np.arange(n, dtype=np.int64)
        w = self.exclude_window
        if w == 0 or bool(np.all(steps == 1)):
            lo, hi = np.maximum(start, ranks - w), np.minimum(end - 1, ranks + w)
        else:
            keys = doc_of_rank * (int(sorted_pos.max()) + 2 * w + 2) + sorted_pos
            lo = np.searchsorted(keys, keys - w, side="left")
            hi = np.searchsorted(keys, keys + w, side="right") - 1
        size = end - start
        excluded = hi - lo + 1
        eligible = size - excluded
        normal, relaxed = eligible > 0, (eligible == 0) & (size >= 2)
        self.fallback_counts = {"window_relaxed": int(np.count_nonzero(relaxed)),
                                "other_document": int(np.count_nonzero(size == 1))}
        # Every case draws d uniformly below ``bound`` and returns base + d, shifted by ``skip``
        # once it reaches ``skip_from``: past the window (normal), past the target itself
        # (window relaxed), or past the sample's own document (other document). Kept per rank,
        # so a draw is a few gathers and no per-document arithmetic.
        small = np.int32 if n < 1 << 31 else np.int64
        self._bound = np.where(normal, eligible,
                               np.where(relaxed, size - 1, n - size)).astype(np.uint32)
        self._base = np.where(size == 1, 0, start).astype(small)
        self._skip_from = np.where(normal, lo, np.where(relaxed, ranks, start)).astype(small)
        self._skip = np.where(normal, excluded, np.where(relaxed, 1, size)).astype(small)

    def negative_indices(self, indices: Sequence[int]) -> np.ndarray:
        """Dataset indices of the hard negatives of samples ``indices`` at the current epoch."""
        return self._negatives(self._index_array(indices))

    def _negatives(self, idx: np.ndarray) -> np.ndarray:
        ranks = idx if self._rank_of_item is None else self._rank_of_item[idx]
        draw = _below(item_bits_array(self._key, idx), self._bound[ranks]).astype(np.int64)
        negative = draw + self._base[ranks]
        negative += np.where(negative >= self._skip_from[ranks], self._skip[ranks], 0)
        return negative if self._item_of_rank is None else self._item_of_rank[negative]

    def _negative(self, i: int) -> int:
        """The scalar twin of ``_negatives`` (same draw, Python ints), for ``__getitem__``."""
        rank = i if self._rank_of_item is None else int(self._rank_of_item[i])
        negative = int(self._base[rank]) + _below(item_bits(self._key, i), int(self._bound[rank]))
        if negative >= int(self._skip_from[rank]):
            negative += int(self._skip[rank])
        return negative if self._item_of_rank is None else int(self._item_of_rank[negative])

    def __getitem__(self, index: int):
        i = self._check_index(int(index))
        block = self._block(i, self._negative(i))
        c = self.context_length
        return block[:c], block[c], block[c + 1]

    def get_batch(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(contexts [B, C, D], targets [B, D], hard_negatives [B, D])``, vectorised."""
        idx = self._index_array(indices)
        contexts, targets = self.contexts_and_targets(idx)
        # The negatives' rows are gathered on their own: one gather of C + 2 rows per sample
        # measured slower than the window gather plus this one.
        return contexts, targets, self.targets(self._negatives(idx))
