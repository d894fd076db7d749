"""Next-vector sequence files from a chunk table and its vectors (docs/data-contracts.md,
"Sequence file"; the arrays are defined once in ``uncollapse.data.sequences.contract``).

A sample is a target chunk and the ``C`` chunks before it *in the same document*. Windows are
built for all documents of a partition at once from the CSR document offsets (``np.arange``
broadcasting), so a context can never reach into another document, and documents shorter than
``C + 1`` chunks give no samples (they are counted).

Two forms:

- dense: ``context_sequences`` [N, C, D], ``target_vectors`` [N, D], ``doc_ids`` [N],
  ``target_positions`` [N] and the targets' texts — the layout trainers already read;
- compact: ``vectors`` [M, D], ``doc_offsets`` [n_docs + 1], ``context_length``, the
  documents' keys and the chunks' texts — no C-fold copy; ``SequenceDataset`` reads windows out
  of it. Document ``d`` of the compact form is the ``d``-th ``doc_id`` in sorted order (the
  same number for chunk tables made by ``uncollapse build chunks``).

Texts are written as UTF-8 bytes plus offsets (``<name>_utf8``, ``<name>_offsets``), so a text
costs its own bytes, not 4 bytes x the longest text.

Every engine builds the file the same way: ``sequence_partition`` cuts the windows of one
partition of whole documents (the local engine: the whole table, one partition; the Ray
engine: the partitions of a stable hash of ``doc_id``, on its workers), and
``write_sequence_parts`` puts the partitions' results in ``doc_id`` order and writes the file
once. What the compact form copies unchanged from the input (every chunk's vector and text)
is streamed into the file from the input, never through a partition.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

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

__all__ = ["SequencePart", "load_vectors", "sequence_partition", "write_sequence_parts",
           "write_sequences"]

CHUNKS = "chunks"
"""The column of ``SequencePart.documents`` holding each document's number of chunks."""
VECTOR = "vector"
"""The column of the rows an engine hands ``sequence_partition``: the chunk's vector."""
BLOCK_BYTES = 64 << 20
"""About the bytes of one block of rows an engine is handed (vectors included)."""


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


# one partition ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SequencePart:
    """What one partition of whole documents gives the sequence file (``sequence_partition``).

    Attributes:
        documents: one row per document, in ``doc_id`` order: ``doc_id``, ``chunks`` (its
            length) and, for the compact form, ``doc_key``.
        samples: the partition's windows.
        short_documents: its documents shorter than C + 1 chunks (no window).
        targets: dense form: one row per window, in (``doc_id``, position) order:
            ``doc_ids``, ``target_positions`` and, with texts, ``concept_texts`` (the
            target's text); None for the compact form.
        context_sequences: dense form: [samples, C, D] float32, row i for window i.
        target_vectors: dense form: [samples, D] float32.
    """

    documents: pl.DataFrame
    samples: int
    short_documents: int
    targets: pl.DataFrame | None = None
    context_sequences: np.ndarray | None = None
    target_vectors: np.ndarray | None = None


def sequence_partition(rows: pl.DataFrame, vectors: np.ndarray | None, context_length: int, *,
                       compact: bool = False, texts: bool = True) -> SequencePart:
    """The windows of one partition of whole documents: what every engine runs per partition.

    Args:
        rows: chunk rows of whole documents (a document's rows all here), sorted by
            (``doc_id``, ``position``): ``doc_id``, and ``doc_key`` (compact form) or
            ``position`` and, with ``texts``, ``text`` (dense form).
        vectors: dense form: [len(rows), D] floats, row i for ``rows`` row i (a memory map is
            fine); the compact form reads none (its vectors are copied as they are).
        context_length: C, the number of chunks before each target.
        compact: the compact form's part (documents only) instead of the dense one's.
        texts: the dense form keeps each target's text.

    Example:
        >>> part = sequence_partition(chunks, vectors, 4)
        >>> part.samples, part.context_sequences.shape
    """
    doc_ids = rows[CHUNK_DOC_ID].to_numpy()
    offsets = doc_offsets_from_ids(doc_ids)
    windows = sequence_windows(offsets, context_length)
    firsts = offsets[:-1]
    documents = pl.DataFrame({CHUNK_DOC_ID: doc_ids[firsts].astype(np.int64),
                              CHUNKS: np.diff(offsets)})
    counts = {"samples": int(windows.target_rows.size),
              "short_documents": windows.short_documents}
    if compact:
        return SequencePart(documents.with_columns(rows[CHUNK_DOC_KEY].gather(firsts)),
                            **counts)
    targets = windows.target_rows
    samples = pl.DataFrame({DOC_IDS: doc_ids[targets].astype(np.int64),
                            TARGET_POSITIONS: rows[CHUNK_POSITION].to_numpy()[targets]
                            .astype(np.int32)})
    if texts:
        samples = samples.with_columns(rows[CHUNK_TEXT].gather(targets)
                                       .alias(CONCEPT_TEXTS.name))
    return SequencePart(documents, **counts, targets=samples,
                        context_sequences=_float32(vectors[windows.context_rows(context_length)]),
                        target_vectors=_float32(vectors[targets]))


# the parts, in doc_id order, into one file --------------------------------------------------

class _InOrder:
    """The rows of one array per partition, in the file's order (row i is row ``row[i]`` of
    partition ``part[i]``), gathered a slice at a time: wrapped in ``AsType``, ``write_npz``
    writes it without an array of all rows beside the partitions'."""

    def __init__(self, arrays: list[np.ndarray], part: np.ndarray, row: np.ndarray):
        self.arrays, self.part, self.row = arrays, part, row
        self.dtype = arrays[0].dtype
        self.shape = (int(part.size), *(int(n) for n in arrays[0].shape[1:]))

    def __getitem__(self, rows: slice) -> np.ndarray:
        part, row = self.part[rows], self.row[rows]
        gathered = np.empty((part.size, *self.shape[1:]), dtype=self.dtype)
        for number in np.unique(part):  # a few partitions per slice, not a loop over rows
            here = part == number
            gathered[here] = self.arrays[number][row[here]]
        return gathered


def write_sequence_parts(parts: list[SequencePart], chunks: pl.DataFrame, vectors: np.ndarray,
                         context_length: int, out_path: str | Path, *, compact: bool = False,
                         texts: bool = True) -> dict:
    """Write the sequence file of the partitions' results (``sequence_partition``, any
    partitioning of whole documents, in any order); return what was built, counted.

    The file is the one a single partition of the whole table gives, byte for byte: the
    documents and windows are put in ``doc_id`` order (a document's windows stay in their
    order), and a dense member is gathered from the partitions a block at a time as it is
    written. The compact form's vectors and texts come from ``vectors`` and ``chunks``.
    """
    documents = pl.concat([part.documents for part in parts]).sort(CHUNK_DOC_ID)
    lengths = documents[CHUNKS].to_numpy()
    if int(lengths.sum()) != chunks.height or documents[CHUNK_DOC_ID].is_duplicated().any():
        raise ToolError(f"the partitions hold {int(lengths.sum())} chunk rows in "
                        f"{documents.height} documents for {chunks.height} chunk rows: a "
                        "document was lost or split between partitions; nothing was written, "
                        "run the build again")
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    stats = {"form": "compact" if compact else "dense", "documents": int(documents.height),
             "chunks": int(chunks.height), "samples": sum(part.samples for part in parts),
             "context_length": int(context_length), "dim": int(vectors.shape[1]),
             "short_documents": sum(part.short_documents for part in parts)}
    if compact:
        # converted while written: vectors larger than memory stay memory-mapped
        arrays = {VECTORS: vectors if vectors.dtype == np.float32
                  else AsType(vectors, np.float32), DOC_OFFSETS: offsets,
                  CONTEXT_LENGTH: np.int64(context_length),
                  **utf8_texts(DOC_KEYS, documents[CHUNK_DOC_KEY])}
        if texts:
            arrays.update(utf8_texts(TEXTS, chunks[CHUNK_TEXT]))
        write_npz(out_path, arrays)
        return stats
    targets = pl.concat([part.targets for part in parts])
    if len(parts) == 1:  # already in order
        context, target = parts[0].context_sequences, parts[0].target_vectors
    else:
        # a document lies in one partition, its windows in order: a stable sort by doc_id
        order = np.argsort(targets[DOC_IDS].to_numpy(), kind="stable")
        targets = targets[order]
        starts = np.cumsum([0] + [part.samples for part in parts])
        part = (np.searchsorted(starts, order, side="right") - 1).astype(np.int64)
        row = order - starts[part]
        context = AsType(_InOrder([p.context_sequences for p in parts], part, row), np.float32)
        target = AsType(_InOrder([p.target_vectors for p in parts], part, row), np.float32)
    arrays = {CONTEXT_SEQUENCES: context, TARGET_VECTORS: target,
              DOC_IDS: targets[DOC_IDS].to_numpy(),
              TARGET_POSITIONS: targets[TARGET_POSITIONS].to_numpy()}
    if texts:
        arrays.update(utf8_texts(CONCEPT_TEXTS, targets[CONCEPT_TEXTS.name]))
    write_npz(out_path, arrays)
    return stats


# on an engine -------------------------------------------------------------------------------

def _partition_of_rows(rows: pl.DataFrame, context_length: int, compact: bool,
                       texts: bool) -> SequencePart:
    """``sequence_partition`` of rows an engine hands over, the vectors in their column."""
    vectors = None if compact else rows[VECTOR].to_numpy()
    return sequence_partition(rows, vectors, context_length, compact=compact, texts=texts)


def _blocks(chunks: pl.DataFrame, vectors: np.ndarray, *, compact: bool, texts: bool):
    """The rows ``sequence_partition`` reads, in blocks of consecutive rows (the dense form's
    with their float32 vectors), one block read from the memory map at a time."""
    columns = [CHUNK_DOC_ID, CHUNK_DOC_KEY] if compact else \
        [CHUNK_DOC_ID, CHUNK_POSITION] + ([CHUNK_TEXT] if texts else [])
    row_bytes = 16 + (0 if compact else 4 * int(vectors.shape[1]))
    step = max(1, min(math.ceil(chunks.height / 16), BLOCK_BYTES // row_bytes))
    for start in range(0, chunks.height, step):
        block = chunks.select(columns).slice(start, step)
        if not compact:
            block = block.with_columns(pl.Series(VECTOR, np.ascontiguousarray(
                vectors[start:start + step], dtype=np.float32)))
        yield block


def write_sequences(chunks: pl.DataFrame, vectors: np.ndarray, context_length: int,
                    out_path: str | Path, *, compact: bool = False, texts: bool = True,
                    engine=None) -> dict:
    """Write the dense (default) or compact sequence NPZ; return what was built, counted.

    Args:
        chunks: the chunk table (``load_chunks``), sorted by (doc_id, position).
        vectors: [len(chunks), D] floats, row i for chunk row i (a memory map is fine).
        context_length: C, the number of chunks before each target.
        out_path: where to write the NPZ (atomically, uncompressed).
        compact: write the compact form instead of the dense one.
        texts: include the chunk texts (dense: the targets' texts; compact: every chunk's),
            as UTF-8 bytes plus offsets.
        engine: where the windows are cut: by default here, the whole table as one
            partition; an engine with ``map_groups`` (``RayEngine``) runs
            ``sequence_partition`` on the partitions of a stable hash of ``doc_id``. The file
            is the same either way.
    """
    if vectors.shape[0] != chunks.height:
        raise ToolError(f"{vectors.shape[0]} vectors for {chunks.height} chunk rows")
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ToolError(f"vectors have shape {vectors.shape}, expected [chunk rows, D > 0]; the "
                        "encoder returned no dimensions")
    if engine is None or chunks.height == 0:
        parts = [sequence_partition(chunks, None if compact else vectors, context_length,
                                    compact=compact, texts=texts)]
    else:
        parts = engine.map_groups(
            functools.partial(_partition_of_rows, context_length=context_length,
                              compact=compact, texts=texts),
            _blocks(chunks, vectors, compact=compact, texts=texts), key=CHUNK_DOC_ID,
            what="cutting the sequence windows")
    return write_sequence_parts(parts, chunks, vectors, context_length, out_path,
                                compact=compact, texts=texts)
