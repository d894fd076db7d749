"""Datasets over next-vector sequence files, with O(1) same-document hard negatives.

Both forms of the sequence file (DESIGN.md) are served the same way. The compact form is read
window by window out of the memory-mapped ``vectors`` (see ``uncollapse.pipeline.sequences.
npzfile``: uncompressed NPZ members are mapped in place), so contexts are never materialised.

Items are numpy arrays (``float32`` for files written by ``uncollapse build sequences``).
Batched access: ``dataset.get_batch(indices)`` returns whole-batch arrays, vectorised over the
batch; ``dataset.__getitems__(indices)`` (which ``DataLoader`` calls when a dataset has it)
returns the same arrays wrapped in a ``SequenceBatch``. Pass ``collate_fn=collate_batch`` so the
loader turns them into tensors without copying (torch's default collate works too, item by
item)::

    loader = DataLoader(dataset, batch_size=256, shuffle=True, collate_fn=collate_batch)
    for context, target, hard_negative in loader:  # [B, C, D], [B, D], [B, D]
        ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from uncollapse.errors import ToolError
from uncollapse.pipeline.sequences.build import sequence_windows
from uncollapse.pipeline.sequences.npzfile import open_npz

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


class SequenceBatch(Sequence):
    """What ``__getitems__`` returns: the batch's stacked arrays, also readable as a list of items.

    ``collate_batch`` turns ``arrays`` into tensors without copying; torch's default collate
    (which sees a list of ``(context, target[, negative])`` items) also works, only slower.
    """

    __slots__ = ("arrays",)

    def __init__(self, arrays):
        self.arrays = tuple(arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return tuple(part[index] for part in self.arrays)


def collate_batch(batch):
    """``collate_fn`` for a ``DataLoader`` over these datasets: stacked tensors, no copy.

    A ``SequenceBatch`` from ``__getitems__`` is already stacked, so its arrays are only wrapped
    (the compact form's contexts and targets are views of one block, so they may be strided).
    A plain list of items goes to torch's default collate.
    """
    if isinstance(batch, SequenceBatch):
        return tuple(torch.from_numpy(part) for part in batch.arrays)
    from torch.utils.data import default_collate

    return default_collate(batch)


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


class SequenceDataset(Dataset):
    """``(context [C, D], target [D])`` samples of a dense or compact sequence file.

    Args:
        source: path of a sequence NPZ, or a mapping of its arrays (dense: ``context_sequences``,
            ``target_vectors``, optional ``doc_ids`` and ``target_positions``; compact:
            ``vectors``, ``doc_offsets``, ``context_length``).
        mmap: memory-map the file's uncompressed members (default) instead of reading them.

    Attributes:
        doc_ids: [N] int64 document of each sample (the compact form's CSR document index);
            give it to ``DiverseBatchSampler``.
        target_positions: [N] position of each target within its document.
        target_rows: compact form only: [N] int64 row of each target in ``vectors`` and
            ``texts`` (its context is the C rows before it).

    Example:
        >>> dataset = SequenceDataset("sequences.npz")
        >>> context, target = dataset[0]
        >>> contexts, targets = dataset.get_batch([0, 5, 9])   # [3, C, D], [3, D]
        >>> loader = DataLoader(dataset, batch_size=256, collate_fn=collate_batch)
    """

    def __init__(self, source: str | Path | Mapping[str, np.ndarray], *, mmap: bool = True):
        self._path = None if isinstance(source, Mapping) else Path(source)
        self._mmap = mmap
        self._load(open_npz(self._path, mmap=mmap) if self._path else dict(source))

    # loading --------------------------------------------------------------------------------
    def _load(self, arrays: dict) -> None:
        where = str(self._path) if self._path else "arrays"
        if "vectors" in arrays and "doc_offsets" in arrays:
            self.form = "compact"
            if "context_length" not in arrays:
                raise ToolError(f"{where}: compact sequence file has no context_length")
            self.vectors = arrays["vectors"]
            self.doc_offsets = np.asarray(arrays["doc_offsets"], dtype=np.int64)
            self.context_length = int(np.asarray(arrays["context_length"]).reshape(()))
            if self.doc_offsets.size == 0 or self.doc_offsets[0] != 0 or \
                    self.doc_offsets[-1] != len(self.vectors) or \
                    np.any(np.diff(self.doc_offsets) < 0):
                raise ToolError(f"{where}: doc_offsets must rise from 0 to {len(self.vectors)}"
                                " (the number of vectors); run `uncollapse validate sequences`")
            windows = sequence_windows(self.doc_offsets, self.context_length)
            self.target_rows = windows.target_rows
            self.doc_ids = windows.doc_index
            self.target_positions = windows.positions
            self.dim = int(self.vectors.shape[1])
        elif "context_sequences" in arrays and "target_vectors" in arrays:
            self.form = "dense"
            self.context_sequences = arrays["context_sequences"]
            self.target_vectors = arrays["target_vectors"]
            n = len(self.target_vectors)
            if len(self.context_sequences) != n:
                raise ToolError(f"{where}: {len(self.context_sequences)} contexts for {n} "
                                "targets; run `uncollapse validate sequences`")
            self.context_length = int(self.context_sequences.shape[1])
            self.doc_ids = (np.asarray(arrays["doc_ids"], dtype=np.int64)
                            if "doc_ids" in arrays else None)
            self.target_positions = (np.asarray(arrays["target_positions"], dtype=np.int64)
                                     if "target_positions" in arrays else None)
            for name, values in (("doc_ids", self.doc_ids),
                                 ("target_positions", self.target_positions)):
                if values is not None and len(values) != n:
                    raise ToolError(f"{where}: {len(values)} {name} for {n} targets")
            self.dim = int(self.target_vectors.shape[1])
        else:
            raise ToolError(f"{where}: not a sequence file (needs context_sequences and "
                            "target_vectors, or vectors, doc_offsets and context_length)")

    def __getstate__(self):
        # A file-backed dataset travels to DataLoader workers as its path, never as a copy of
        # the memory-mapped arrays.
        state = self.__dict__.copy()
        if self._path is not None:
            state = {k: state[k] for k in self._state_keys() if k in state}
        return state

    def _state_keys(self) -> tuple[str, ...]:
        return ("_path", "_mmap")

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._path is not None and not hasattr(self, "form"):
            self._load(open_npz(self._path, mmap=self._mmap))
            self._after_load()

    def _after_load(self) -> None:
        """Derived state rebuilt after a path-backed dataset is unpickled."""

    # access ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.doc_ids) if self.form == "compact" else len(self.target_vectors)

    def _index_array(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"sample index out of range for a dataset of {n} samples")
        return np.where(idx < 0, idx + n, idx)

    def contexts_and_targets(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B, C, D] contexts and [B, D] targets of samples ``idx`` (an int64 array).

        In the compact form a sample's context and target are C + 1 consecutive rows of
        ``vectors``, so both come from one gather of whole windows (the results are views of
        one [B, C + 1, D] array).
        """
        if self.form == "compact":
            c = self.context_length
            rows, dim = self.vectors.strides
            windows = np.lib.stride_tricks.as_strided(
                self.vectors, shape=(max(len(self.vectors) - c, 0), c + 1, self.dim),
                strides=(rows, rows, dim), writeable=False)
            block = windows[self.target_rows[idx] - c]
            return block[:, :c], block[:, c]
        return np.asarray(self.context_sequences[idx]), np.asarray(self.target_vectors[idx])

    def targets(self, idx: np.ndarray) -> np.ndarray:
        """[B, D] targets of samples ``idx``."""
        if self.form == "compact":
            return self.vectors[self.target_rows[idx]]
        return np.asarray(self.target_vectors[idx])

    def _block(self, i: int, extra: int | None = None) -> np.ndarray:
        """[C + 1 (+ 1), D]: sample i's context rows, its target, and target ``extra`` if given.

        One array per item, so ``__getitem__`` pays for one tensor conversion, not three.
        """
        c = self.context_length
        source = self.vectors if self.form == "compact" else self.target_vectors
        block = np.empty((c + 1 + (extra is not None), self.dim), dtype=source.dtype)
        if self.form == "compact":
            row = int(self.target_rows[i])
            block[:c + 1] = self.vectors[row - c:row + 1]
            if extra is not None:
                block[c + 1] = self.vectors[int(self.target_rows[extra])]
        else:
            block[:c] = self.context_sequences[i]
            block[c] = self.target_vectors[i]
            if extra is not None:
                block[c + 1] = self.target_vectors[extra]
        return block

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sample index {index} out of range for {n} samples")
        return index + n if index < 0 else index

    def __getitem__(self, index: int):
        block = self._block(self._check_index(int(index)))
        return block[:self.context_length], block[self.context_length]

    def get_batch(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(contexts [B, C, D], targets [B, D])`` of samples ``indices``, vectorised."""
        return self.contexts_and_targets(self._index_array(indices))

    def __getitems__(self, indices: Sequence[int]) -> SequenceBatch:
        """The batch for ``DataLoader`` (see ``SequenceBatch`` and ``collate_batch``)."""
        return SequenceBatch(self.get_batch(indices))


class HardNegativeSequenceDataset(SequenceDataset):
    """``(context, target, hard_negative)``: the negative is another target of the same document.

    The draw for sample ``i`` is a pure function of ``(seed, epoch, i)`` (a splitmix64 hash of
    the three), so it is the same whichever DataLoader worker or rank serves ``i``, and costs
    O(1): targets are laid out document by document, so the negative is an offset drawn in the
    document's target range that skips the target and its ``+-exclude_window`` neighbours by
    index arithmetic, without rejection.

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
        """Draw this epoch's negatives (call before each epoch, as with DistributedSampler)."""
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
        self._doc_of_rank = np.cumsum(new_doc) - 1
        self._segments = np.r_[np.flatnonzero(new_doc), n].astype(np.int64)
        steps = np.diff(sorted_pos)[~new_doc[1:]]
        if np.any(steps == 0):
            raise ToolError(f"{where}: two samples share a document and target position")
        # Consecutive positions: the window is rank +- w. Otherwise it is found by a binary
        # search on (document, position) keys.
        self._contiguous = bool(np.all(steps == 1)) or self.exclude_window == 0
        self._sorted_keys = None
        if not self._contiguous:
            self._key_stride = int(sorted_pos.max()) + 2 * self.exclude_window + 2
            self._sorted_keys = self._doc_of_rank * self._key_stride + sorted_pos
        ranks = np.arange(n, dtype=np.int64)
        lo, hi = self._window(ranks)
        size = self._segments[self._doc_of_rank + 1] - self._segments[self._doc_of_rank]
        eligible = size - (hi - lo + 1)
        self.fallback_counts = {
            "window_relaxed": int(np.count_nonzero((eligible == 0) & (size >= 2))),
            "other_document": int(np.count_nonzero(size == 1))}

    def _window(self, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and last rank of the excluded window around each rank (within its document)."""
        docs = self._doc_of_rank[ranks]
        start, end = self._segments[docs], self._segments[docs + 1]
        w = self.exclude_window
        if self._contiguous:
            return np.maximum(start, ranks - w), np.minimum(end - 1, ranks + w)
        keys = self._sorted_keys[ranks]
        return (np.searchsorted(self._sorted_keys, keys - w, side="left"),
                np.searchsorted(self._sorted_keys, keys + w, side="right") - 1)

    def negative_indices(self, indices: Sequence[int]) -> np.ndarray:
        """Dataset indices of the hard negatives of samples ``indices`` at the current epoch."""
        return self._negatives(self._index_array(indices))

    def _negatives(self, idx: np.ndarray) -> np.ndarray:
        ranks = idx if self._rank_of_item is None else self._rank_of_item[idx]
        docs = self._doc_of_rank[ranks]
        start, end = self._segments[docs], self._segments[docs + 1]
        lo, hi = self._window(ranks)
        size = end - start
        excluded = hi - lo + 1
        eligible = size - excluded
        bits = item_bits_array(self._key, idx)
        n = len(self)
        # the bound of each sample's draw under its case: normal, window relaxed, other document
        bound = np.where(eligible > 0, eligible, np.where(size >= 2, size - 1, n - size))
        draw = _below(bits, bound.astype(np.uint64)).astype(np.int64)
        normal = start + draw
        normal += np.where(normal >= lo, excluded, 0)
        relaxed = start + draw
        relaxed += relaxed >= ranks
        other = draw + np.where(draw >= start, size, 0)
        negative = np.where(eligible > 0, normal, np.where(size >= 2, relaxed, other))
        return negative if self._item_of_rank is None else self._item_of_rank[negative]

    def _negative(self, i: int) -> int:
        """The scalar twin of ``_negatives`` (same draw, Python ints), for ``__getitem__``."""
        rank = i if self._rank_of_item is None else int(self._rank_of_item[i])
        doc = int(self._doc_of_rank[rank])
        start, end = int(self._segments[doc]), int(self._segments[doc + 1])
        w = self.exclude_window
        if self._contiguous:
            lo, hi = max(start, rank - w), min(end - 1, rank + w)
        else:
            key = int(self._sorted_keys[rank])
            lo = int(np.searchsorted(self._sorted_keys, key - w, side="left"))
            hi = int(np.searchsorted(self._sorted_keys, key + w, side="right")) - 1
        size = end - start
        excluded = hi - lo + 1
        bits = item_bits(self._key, i)
        if size > excluded:
            negative = start + _below(bits, size - excluded)
            negative += excluded if negative >= lo else 0
        elif size >= 2:
            negative = start + _below(bits, size - 1)
            negative += negative >= rank
        else:
            negative = _below(bits, len(self) - size)
            negative += size if negative >= start else 0
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
        return contexts, targets, self.targets(self._negatives(idx))
