"""Datasets over next-vector sequence files, with O(1) same-document hard negatives.

Both forms of the sequence file (docs/data-contracts.md, "Sequence file") are served the same
way. The compact form is read window by window out of the memory-mapped ``vectors`` (see
``uncollapse.data.npz``: uncompressed NPZ members are mapped in place), so contexts are never
materialised.

Items are numpy arrays (``float32`` for files written by ``uncollapse build sequences``).
Batched access: ``dataset.get_batch(indices)`` returns whole-batch arrays, vectorised over the
batch; ``dataset.__getitems__(indices)`` (which ``DataLoader`` calls when a dataset has it)
returns the same arrays wrapped in a ``SequenceBatch``. Pass ``collate_fn=collate_batch`` so the
loader turns them into tensors without copying (torch's default collate works too, item by
item)::

    loader = DataLoader(dataset, batch_size=256, shuffle=True, collate_fn=collate_batch)
    for context, target, hard_negative in loader:  # [B, C, D], [B, D], [B, D]
        ...

``HardNegativeSequenceDataset`` (same-document hard negatives) lives in
``uncollapse.data.sequences.hard_negatives``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from uncollapse.data.npz import open_npz
from uncollapse.data.sequences.contract import (
    CONCEPT_TEXTS,
    CONTEXT_LENGTH,
    CONTEXT_SEQUENCES,
    DOC_IDS,
    DOC_KEYS,
    DOC_OFFSETS,
    TARGET_POSITIONS,
    TARGET_VECTORS,
    TEXTS,
    VECTORS,
    Texts,
    read_texts,
    sequence_windows,
)
from uncollapse.errors import ToolError

__all__ = ["SequenceBatch", "SequenceDataset", "collate_batch"]


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
    return default_collate(batch)


class SequenceDataset(Dataset):
    """``(context [C, D], target [D])`` samples of a dense or compact sequence file.

    Args:
        source: path of a sequence NPZ, or a mapping of its arrays (dense: ``context_sequences``,
            ``target_vectors``, optional ``doc_ids`` and ``target_positions``; compact:
            ``vectors``, ``doc_offsets``, ``context_length``; texts optional in both).
        mmap: memory-map the file's uncompressed members (default) instead of reading them.

    Attributes:
        doc_ids: [N] int64 document of each sample (the compact form's CSR document index);
            give it to ``DiverseBatchSampler``.
        target_positions: [N] position of each target within its document.
        target_rows: compact form only: [N] int64 row of each target in ``vectors`` and
            ``texts`` (its context is the C rows before it).
        texts: the file's texts, decoded on access (``Texts``), or None if it has none:
            compact, one per row of ``vectors``; dense, one per sample. ``target_texts``
            gives the targets' texts in either form.
        doc_keys: compact form only: each document's name (``Texts``), or None.

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
        if VECTORS in arrays and DOC_OFFSETS in arrays:
            self.form = "compact"
            if CONTEXT_LENGTH not in arrays:
                raise ToolError(f"{where}: compact sequence file has no {CONTEXT_LENGTH}; "
                                "rebuild it with `uncollapse build sequences --compact`")
            self.vectors = arrays[VECTORS]
            self.doc_offsets = np.asarray(arrays[DOC_OFFSETS], dtype=np.int64)
            self.context_length = int(np.asarray(arrays[CONTEXT_LENGTH]).reshape(()))
            if self.doc_offsets.size == 0 or self.doc_offsets[0] != 0 or \
                    self.doc_offsets[-1] != len(self.vectors) or \
                    np.any(np.diff(self.doc_offsets) < 0):
                raise ToolError(f"{where}: {DOC_OFFSETS} must rise from 0 to "
                                f"{len(self.vectors)} (the number of vectors); run "
                                "`uncollapse validate sequences`")
            windows = sequence_windows(self.doc_offsets, self.context_length)
            self.target_rows = windows.target_rows
            self.doc_ids = windows.doc_index
            self.target_positions = windows.positions
            self.dim = int(self.vectors.shape[1])
            self.texts = self._texts(arrays, TEXTS, len(self.vectors), "vectors", where)
            self.doc_keys = self._texts(arrays, DOC_KEYS, len(self.doc_offsets) - 1,
                                        "documents", where)
        elif CONTEXT_SEQUENCES in arrays and TARGET_VECTORS in arrays:
            self.form = "dense"
            self.context_sequences = arrays[CONTEXT_SEQUENCES]
            self.target_vectors = arrays[TARGET_VECTORS]
            n = len(self.target_vectors)
            if len(self.context_sequences) != n:
                raise ToolError(f"{where}: {len(self.context_sequences)} contexts for {n} "
                                "targets; run `uncollapse validate sequences`")
            self.context_length = int(self.context_sequences.shape[1])
            self.doc_ids = (np.asarray(arrays[DOC_IDS], dtype=np.int64)
                            if DOC_IDS in arrays else None)
            self.target_positions = (np.asarray(arrays[TARGET_POSITIONS], dtype=np.int64)
                                     if TARGET_POSITIONS in arrays else None)
            for name, values in ((DOC_IDS, self.doc_ids),
                                 (TARGET_POSITIONS, self.target_positions)):
                if values is not None and len(values) != n:
                    raise ToolError(f"{where}: {len(values)} {name} for {n} targets; run "
                                    "`uncollapse validate sequences` (LENGTH_MISMATCH)")
            self.dim = int(self.target_vectors.shape[1])
            self.texts = self._texts(arrays, CONCEPT_TEXTS, n, "samples", where)
            self.doc_keys = None
        else:
            raise ToolError(f"{where}: not a sequence file (needs {CONTEXT_SEQUENCES} and "
                            f"{TARGET_VECTORS}, or {VECTORS}, {DOC_OFFSETS} and "
                            f"{CONTEXT_LENGTH})")

    @staticmethod
    def _texts(arrays, keys, count: int, what: str, where: str) -> Texts | None:
        texts = read_texts(arrays, keys)
        if texts is not None and len(texts) != count:
            raise ToolError(f"{where}: {len(texts)} {keys.name} for {count} {what}; run "
                            "`uncollapse validate sequences` (LENGTH_MISMATCH)")
        return texts

    def target_texts(self, indices: Sequence[int]) -> list[str]:
        """The texts of the targets of samples ``indices`` (decoded now, only these)."""
        if self.texts is None:
            raise ToolError("this sequence file holds no texts; build it with texts=True")
        idx = self._index_array(indices)
        return self.texts[self.target_rows[idx] if self.form == "compact" else idx]

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

