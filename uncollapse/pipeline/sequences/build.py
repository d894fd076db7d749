"""Next-vector sequence files (DESIGN.md, "Sequence file") from a chunk table and its vectors.

A sample is a target chunk and the ``C`` chunks before it *in the same document*. Windows are
built for all documents at once from the CSR document offsets (``np.arange`` broadcasting), so a
context can never reach into another document, and documents shorter than ``C + 1`` chunks give
no samples (they are counted).

Two forms:

- dense: ``context_sequences`` [N, C, D], ``target_vectors`` [N, D], ``doc_ids`` [N],
  ``target_positions`` [N], ``concept_texts`` [N] — the layout trainers already read;
- compact: ``vectors`` [M, D], ``doc_offsets`` [n_docs + 1], ``doc_keys``, ``texts``,
  ``context_length`` — no C-fold copy; ``SequenceDataset`` reads windows out of it.
  Document ``d`` of the compact form is the ``d``-th ``doc_id`` in sorted order (the same number
  for chunk tables made by ``uncollapse build chunks``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uncollapse.data.npz import write_npz
from uncollapse.data.sequences.contract import (
    doc_offsets_from_ids,
    sequence_windows,
    unicode_array,
)
from uncollapse.errors import InputError, ToolError


def load_vectors(path: str | Path, rows: int) -> np.ndarray:
    """A ``.npy`` of vectors aligned to ``rows`` chunk rows, memory-mapped, checked."""
    path = Path(path)
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(path, f"cannot read as a .npy array ({exc}); save the vectors with "
                               "numpy.save") from exc
    if vectors.ndim != 2:
        raise InputError(path, f"vectors have shape {vectors.shape}, expected [rows, dim]")
    if vectors.shape[0] != rows:
        raise InputError(path, f"{vectors.shape[0]} vectors for {rows} chunk rows; vector i "
                               "must belong to chunk row i, so encode the chunk table as it is")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise InputError(path, f"vectors have dtype {vectors.dtype}, expected a float type")
    return vectors


def _float32(vectors: np.ndarray) -> np.ndarray:
    return vectors if vectors.dtype == np.float32 else vectors.astype(np.float32)


def build_sequences(chunks, vectors: np.ndarray, context_length: int, out_path: str | Path, *,
                    compact: bool = False, texts: bool = True) -> dict:
    """Write the dense (default) or compact sequence NPZ; return what was built, counted.

    Args:
        chunks: the chunk table (``load_chunks``), sorted by (doc_id, position).
        vectors: [len(chunks), D] floats, row i for chunk row i (a memory map is fine).
        context_length: C, the number of chunks before each target.
        out_path: where to write the NPZ (atomically, uncompressed).
        compact: write the compact form instead of the dense one.
        texts: include the chunk texts (``concept_texts`` / ``texts``). Unicode arrays are
            fixed-width (4 bytes x the longest text per row), so leave them out for corpora
            with very long chunks.
    """
    if vectors.shape[0] != chunks.height:
        raise ToolError(f"{vectors.shape[0]} vectors for {chunks.height} chunk rows")
    doc_ids = chunks["doc_id"].to_numpy()
    offsets = doc_offsets_from_ids(doc_ids)
    windows = sequence_windows(offsets, context_length)
    stats = {"form": "compact" if compact else "dense", "documents": int(offsets.size - 1),
             "chunks": int(chunks.height), "samples": int(windows.target_rows.size),
             "context_length": int(context_length), "dim": int(vectors.shape[1]),
             "short_documents": windows.short_documents}
    if compact:
        arrays = {"vectors": _float32(vectors), "doc_offsets": offsets,
                  "doc_keys": unicode_array(chunks["doc_key"].gather(offsets[:-1])),
                  "context_length": np.int64(context_length)}
        if texts:
            arrays["texts"] = unicode_array(chunks["text"])
    else:
        targets = windows.target_rows
        arrays = {"context_sequences": _float32(vectors[windows.context_rows(context_length)]),
                  "target_vectors": _float32(vectors[targets]),
                  "doc_ids": doc_ids[targets].astype(np.int64),
                  "target_positions": chunks["position"].to_numpy()[targets].astype(np.int32)}
        if texts:
            arrays["concept_texts"] = unicode_array(chunks["text"].gather(targets))
    write_npz(out_path, arrays)
    return stats
