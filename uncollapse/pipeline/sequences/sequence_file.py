"""Next-vector sequence files from a chunk table and its vectors (docs/data-contracts.md,
"Sequence file"; the arrays are defined once in ``uncollapse.data.sequences.contract``).

A sample is a target chunk and the ``C`` chunks before it *in the same document*. Windows are
built for all documents at once from the CSR document offsets (``np.arange`` broadcasting), so a
context can never reach into another document, and documents shorter than ``C + 1`` chunks give
no samples (they are counted).

Two forms:

- dense: ``context_sequences`` [N, C, D], ``target_vectors`` [N, D], ``doc_ids`` [N],
  ``target_positions`` [N] and the targets' texts — the layout trainers already read;
- compact: ``vectors`` [M, D], ``doc_offsets`` [n_docs + 1], ``context_length``, the
  documents' keys and the chunks' texts — no C-fold copy; ``SequenceDataset`` reads windows out
  of it. Document ``d`` of the compact form is the ``d``-th ``doc_id`` in sorted order (the
  same number for chunk tables made by ``uncollapse build chunks``).

Texts are written as UTF-8 bytes plus offsets (``<name>_utf8``, ``<name>_offsets``), so a text
costs its own bytes, not 4 bytes x the longest text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uncollapse.data.npy import load_npy
from uncollapse.data.npz import AsType, write_npz
from uncollapse.data.sequences.contract import (
    CHUNK_DOC_ID,
    CHUNK_DOC_KEY,
    CHUNK_POSITION,
    CHUNK_TEXT,
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
    doc_offsets_from_ids,
    sequence_windows,
    utf8_texts,
)
from uncollapse.errors import InputError, ToolError

__all__ = ["load_vectors", "write_sequences"]


def load_vectors(path: str | Path, rows: int) -> np.ndarray:
    """A ``.npy`` of vectors aligned to ``rows`` chunk rows, memory-mapped, checked."""
    path = Path(path)
    vectors = load_npy(path, mmap=True, what="vectors")
    if vectors.ndim != 2:
        raise InputError(path, f"vectors have shape {vectors.shape}, expected [rows, dim]")
    if vectors.shape[1] == 0:
        raise InputError(path, f"vectors have shape {vectors.shape}: 0 dimensions; encode the "
                               "chunks again (one row of D > 0 floats per chunk row)")
    if vectors.shape[0] != rows:
        raise InputError(path, f"{vectors.shape[0]} vectors for {rows} chunk rows; vector i "
                               "must belong to chunk row i, so encode the chunk table as it is")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise InputError(path, f"vectors have dtype {vectors.dtype}, expected a float type")
    return vectors


def _float32(vectors: np.ndarray) -> np.ndarray:
    return vectors if vectors.dtype == np.float32 else vectors.astype(np.float32)


def write_sequences(chunks, vectors: np.ndarray, context_length: int, out_path: str | Path, *,
                    compact: bool = False, texts: bool = True) -> dict:
    """Write the dense (default) or compact sequence NPZ; return what was built, counted.

    Args:
        chunks: the chunk table (``load_chunks``), sorted by (doc_id, position).
        vectors: [len(chunks), D] floats, row i for chunk row i (a memory map is fine).
        context_length: C, the number of chunks before each target.
        out_path: where to write the NPZ (atomically, uncompressed).
        compact: write the compact form instead of the dense one.
        texts: include the chunk texts (dense: the targets' texts; compact: every chunk's),
            as UTF-8 bytes plus offsets.
    """
    if vectors.shape[0] != chunks.height:
        raise ToolError(f"{vectors.shape[0]} vectors for {chunks.height} chunk rows")
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ToolError(f"vectors have shape {vectors.shape}, expected [chunk rows, D > 0]; the "
                        "encoder returned no dimensions")
    doc_ids = chunks[CHUNK_DOC_ID].to_numpy()
    offsets = doc_offsets_from_ids(doc_ids)
    windows = sequence_windows(offsets, context_length)
    stats = {"form": "compact" if compact else "dense", "documents": int(offsets.size - 1),
             "chunks": int(chunks.height), "samples": int(windows.target_rows.size),
             "context_length": int(context_length), "dim": int(vectors.shape[1]),
             "short_documents": windows.short_documents}
    if compact:
        # converted while written: vectors larger than memory stay memory-mapped
        arrays = {VECTORS: vectors if vectors.dtype == np.float32
                  else AsType(vectors, np.float32), DOC_OFFSETS: offsets,
                  CONTEXT_LENGTH: np.int64(context_length),
                  **utf8_texts(DOC_KEYS, chunks[CHUNK_DOC_KEY].gather(offsets[:-1]))}
        if texts:
            arrays.update(utf8_texts(TEXTS, chunks[CHUNK_TEXT]))
    else:
        targets = windows.target_rows
        arrays = {CONTEXT_SEQUENCES: _float32(vectors[windows.context_rows(context_length)]),
                  TARGET_VECTORS: _float32(vectors[targets]),
                  DOC_IDS: doc_ids[targets].astype(np.int64),
                  TARGET_POSITIONS: chunks[CHUNK_POSITION].to_numpy()[targets].astype(np.int32)}
        if texts:
            arrays.update(utf8_texts(CONCEPT_TEXTS, chunks[CHUNK_TEXT].gather(targets)))
    write_npz(out_path, arrays)
    return stats
