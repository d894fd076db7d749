"""The sequence file contract: its NPZ keys, their shapes, and the windows a sample reads.

The format is documented for users in ``docs/data-contracts.md``. Two forms:

- dense: ``context_sequences`` [N, C, D], ``target_vectors`` [N, D], ``doc_ids`` [N],
  ``target_positions`` [N], ``concept_texts`` [N];
- compact: ``vectors`` [M, D], ``doc_offsets`` [n_docs + 1], ``doc_keys``, ``texts``,
  ``context_length``; windows are read out of ``vectors`` without a C-fold copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uncollapse.errors import ToolError


@dataclass(frozen=True)
class Windows:
    """Sample windows over rows ``0..M-1`` grouped into documents by ``doc_offsets``.

    ``target_rows[i]`` is sample i's target row; its context rows are
    ``target_rows[i] - C .. target_rows[i] - 1``; ``doc_index[i]`` is its document (CSR index).
    """

    target_rows: np.ndarray
    doc_index: np.ndarray
    positions: np.ndarray
    short_documents: int

    def context_rows(self, context_length: int) -> np.ndarray:
        return self.target_rows[:, None] + np.arange(-context_length, 0, dtype=np.int64)


def doc_offsets_from_ids(doc_ids: np.ndarray) -> np.ndarray:
    """CSR offsets of a doc-id column sorted by document: document d owns rows off[d]:off[d+1]."""
    doc_ids = np.asarray(doc_ids)
    starts = np.flatnonzero(np.r_[True, doc_ids[1:] != doc_ids[:-1]]) if doc_ids.size else []
    return np.r_[np.asarray(starts, dtype=np.int64), np.int64(doc_ids.size)].astype(np.int64)


def sequence_windows(doc_offsets: np.ndarray, context_length: int) -> Windows:
    """Every (document, target) window with ``context_length`` chunks of context, vectorised."""
    if context_length < 1:
        raise ToolError(f"context length must be at least 1, not {context_length}")
    offsets = np.asarray(doc_offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    per_doc = np.maximum(lengths - context_length, 0)
    doc_index = np.repeat(np.arange(lengths.size, dtype=np.int64), per_doc)
    # rank of each sample within its document, from the CSR of samples per document
    sample_offsets = np.r_[0, np.cumsum(per_doc)]
    rank = np.arange(sample_offsets[-1], dtype=np.int64) - sample_offsets[:-1][doc_index]
    positions = rank + context_length
    target_rows = offsets[:-1][doc_index] + positions
    return Windows(target_rows=target_rows, doc_index=doc_index,
                   positions=positions.astype(np.int32),
                   short_documents=int(np.count_nonzero(lengths < context_length + 1)))


def unicode_array(values) -> np.ndarray:
    """A ``<U`` array (never object) from a polars Series or a list of strings."""
    if hasattr(values, "to_numpy"):
        values = values.fill_null("").to_list()
    array = np.asarray(values, dtype=str)
    return array if array.size else np.zeros(0, dtype="<U1")


