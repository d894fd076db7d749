"""The sequence file contract: one definition of its NPZ arrays, the texts stored in it, and the
windows a sample reads; and the columns of the chunk table a sequence file is built from.
Documented for users in docs/data-contracts.md ("Sequence file", "Chunk table"), which is
generated from ``DOC_SECTIONS`` (``DENSE_ARRAYS``, ``COMPACT_ARRAYS``, ``CHUNK_COLUMNS``).

Two forms:

- dense: ``context_sequences`` [N, C, D], ``target_vectors`` [N, D], ``doc_ids`` [N],
  ``target_positions`` [N], optional ``concept_texts_utf8`` + ``concept_texts_offsets``;
- compact: ``vectors`` [M, D], ``doc_offsets`` [n_docs + 1], ``context_length``, optional
  ``doc_keys_utf8`` + ``doc_keys_offsets`` and ``texts_utf8`` + ``texts_offsets``; windows are
  read out of ``vectors`` without a C-fold copy.

Texts are stored as UTF-8 bytes plus offsets (text i is ``utf8[offsets[i]:offsets[i + 1]]``),
never as fixed-width unicode (4 bytes x the longest text, per row) and never pickled. Files
written before this layout hold ``concept_texts``, ``texts`` and ``doc_keys`` as ``<U`` arrays:
they are still read (``read_texts`` serves both), but only the UTF-8 form is written.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from uncollapse.data.spec import ArraySpec, ColumnSpec, DocSection
from uncollapse.errors import ToolError

__all__ = [
    "CHUNK_COLUMNS", "CHUNK_DOC_ID", "CHUNK_DOC_KEY", "CHUNK_POSITION", "CHUNK_TEXT",
    "COMPACT_ARRAYS", "COMPACT_TEXTS", "CONCEPT_TEXTS", "CONTEXT_LENGTH", "CONTEXT_SEQUENCES",
    "DENSE_ARRAYS", "DENSE_TEXTS", "DOC_IDS", "DOC_KEYS", "DOC_OFFSETS", "DOC_SECTIONS",
    "TARGET_POSITIONS", "TARGET_VECTORS", "TEXTS", "VECTORS", "TextKeys", "Texts", "Windows",
    "doc_offsets_from_ids", "read_texts", "required_keys", "sample_doc_ids", "sequence_form",
    "sequence_windows", "spec_ndim", "utf8_problems", "utf8_texts",
]

CONTEXT_SEQUENCES = "context_sequences"
TARGET_VECTORS = "target_vectors"
DOC_IDS = "doc_ids"
TARGET_POSITIONS = "target_positions"
VECTORS = "vectors"
DOC_OFFSETS = "doc_offsets"
CONTEXT_LENGTH = "context_length"
CHUNK_DOC_ID = "doc_id"
"""The document column of a chunk table (``uncollapse build chunks``)."""


@dataclass(frozen=True)
class TextKeys:
    """The keys of one list of texts: ``<name>_utf8`` [bytes] uint8 and ``<name>_offsets``
    [count + 1] int64; ``<name>`` alone is the fixed-width ``<U`` array of older files."""

    name: str

    @property
    def utf8(self) -> str:
        return f"{self.name}_utf8"

    @property
    def offsets(self) -> str:
        return f"{self.name}_offsets"

    @property
    def legacy(self) -> str:
        return self.name


CONCEPT_TEXTS = TextKeys("concept_texts")
TEXTS = TextKeys("texts")
DOC_KEYS = TextKeys("doc_keys")

_LEGACY = "Older files only: read, never written (the UTF-8 form replaces it)."


def _text_specs(keys: TextKeys, count: str, what: str) -> dict[str, ArraySpec]:
    return {
        keys.utf8: ArraySpec("[total_bytes]", "uint8",
                             f"The UTF-8 bytes of {what}, one after another.", required=False),
        keys.offsets: ArraySpec(f"[{count} + 1]", "int64",
                                f"Text i of {what} is {keys.utf8}[{keys.offsets}[i]:"
                                f"{keys.offsets}[i + 1]]; rises from 0 to len({keys.utf8}).",
                                required=False),
        keys.legacy: ArraySpec(f"[{count}]", "unicode",
                               f"{what[0].upper()}{what[1:]} as a fixed-width unicode array. "
                               + _LEGACY, required=False),
    }


DENSE_ARRAYS: dict[str, ArraySpec] = {
    CONTEXT_SEQUENCES: ArraySpec("[N, C, D]", "float32",
                                 "The C vectors before each target, all in the target's "
                                 "document."),
    TARGET_VECTORS: ArraySpec("[N, D]", "float32", "The vector each sample predicts."),
    DOC_IDS: ArraySpec("[N]", "int64", "The document of each sample (same-document hard "
                                       "negatives, per-document batch caps)."),
    TARGET_POSITIONS: ArraySpec("[N]", "int32", "The target's chunk position in its document "
                                                "(at least C)."),
    **_text_specs(CONCEPT_TEXTS, "N", "the target chunks' texts"),
}

COMPACT_ARRAYS: dict[str, ArraySpec] = {
    VECTORS: ArraySpec("[M, D]", "float32", "Every chunk's vector once, document by document; "
                                            "a sample is C + 1 consecutive rows of a document."),
    DOC_OFFSETS: ArraySpec("[n_docs + 1]", "int64",
                           "CSR offsets: document d owns rows doc_offsets[d]:doc_offsets[d + 1]; "
                           "rises from 0 to M."),
    CONTEXT_LENGTH: ArraySpec("[]", "int64", "C, the number of context rows before a target."),
    **_text_specs(DOC_KEYS, "n_docs", "the documents' names"),
    **_text_specs(TEXTS, "M", "the chunks' texts"),
}

# which text lists each form stores, and the count each one is aligned to
DENSE_TEXTS = (CONCEPT_TEXTS,)
COMPACT_TEXTS = (DOC_KEYS, TEXTS)

# the chunk table (Parquet) that ``uncollapse build sequences`` reads: read and written by
# ``uncollapse.data.sequences.chunks``
CHUNK_DOC_ID = "doc_id"
CHUNK_DOC_KEY = "doc_key"
CHUNK_POSITION = "position"
CHUNK_TEXT = "text"

CHUNK_COLUMNS: dict[str, ColumnSpec] = {
    CHUNK_DOC_ID: ColumnSpec("Int64", "the document, numbered 0.. in order of first appearance "
                                      "in the source", nullable=False),
    CHUNK_DOC_KEY: ColumnSpec("String", "the document's own name: the source's document field, "
                                        "the file's path, or the title of a heading line (a "
                                        "table without it gets the doc_id as text)",
                              nullable=False, required=False),
    CHUNK_POSITION: ColumnSpec("Int32", "the chunk's number within its document, 0..",
                               nullable=False),
    CHUNK_TEXT: ColumnSpec("String", "the chunk, surrounding whitespace stripped",
                           nullable=False),
}
"""Column -> dtype, nullability and meaning, in the order they are written; rows are sorted by
(doc_id, position)."""


def required_keys(specs: Mapping[str, ArraySpec]) -> tuple[str, ...]:
    return tuple(key for key, spec in specs.items() if spec.required)


def spec_ndim(spec: ArraySpec) -> int:
    """The number of dimensions of ``spec.shape`` (``"[N, C, D]"`` -> 3, ``"[]"`` -> 0)."""
    inner = spec.shape.strip("[]").strip()
    return len(inner.split(",")) if inner else 0


def sequence_form(arrays: Mapping[str, object]) -> str | None:
    """``"compact"``, ``"dense"`` or None, from the keys a file holds."""
    if VECTORS in arrays or DOC_OFFSETS in arrays:
        return "compact"
    if CONTEXT_SEQUENCES in arrays or TARGET_VECTORS in arrays:
        return "dense"
    return None


# texts ----------------------------------------------------------------------------------------
def utf8_texts(keys: TextKeys, values) -> dict[str, np.ndarray]:
    """``{keys.utf8: uint8 bytes, keys.offsets: int64 offsets}`` of a polars Series (nulls are
    empty texts) or a sequence of strings."""
    if hasattr(values, "str"):  # polars: byte lengths and one join, no Python loop over rows
        values = values.fill_null("")
        lengths = values.str.len_bytes().to_numpy()
        data = values.str.join("").item().encode("utf-8") if len(values) else b""
    else:
        encoded = [str(v).encode("utf-8") for v in values]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        data = b"".join(encoded)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return {keys.utf8: np.frombuffer(data, dtype=np.uint8), keys.offsets: offsets}


class Texts(Sequence):
    """A list of texts decoded on access: ``texts[i]`` is a ``str``, ``texts[[i, j]]`` and
    ``texts[a:b]`` are lists. Backed by UTF-8 bytes and offsets (memory-mapped when the file
    is), or by the fixed-width ``<U`` array of an older file."""

    def __init__(self, utf8: np.ndarray | None, offsets: np.ndarray | None, *,
                 unicode: np.ndarray | None = None):
        self._utf8 = utf8
        self._offsets = None if offsets is None else np.asarray(offsets, dtype=np.int64)
        self._unicode = unicode

    def __len__(self) -> int:
        return len(self._unicode) if self._unicode is not None else len(self._offsets) - 1

    def _one(self, i: int) -> str:
        if self._unicode is not None:
            return str(self._unicode[i])
        start, end = self._offsets[i], self._offsets[i + 1]
        return self._utf8[start:end].tobytes().decode("utf-8")

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._one(i) for i in range(*index.indices(len(self)))]
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"text index {index} out of range for {n} texts")
            return self._one(int(index) % n)
        return [self[int(i)] for i in np.asarray(index).reshape(-1)]

    def tolist(self) -> list[str]:
        """Every text, decoded from one copy of the bytes."""
        if self._unicode is not None:
            return self._unicode.tolist()
        raw = np.asarray(self._utf8).tobytes()
        cuts = self._offsets.tolist()
        return [raw[a:b].decode("utf-8") for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    def __repr__(self) -> str:
        return f"Texts({len(self)} texts)"


def read_texts(arrays: Mapping[str, np.ndarray], keys: TextKeys) -> Texts | None:
    """The texts of ``keys`` in ``arrays`` (UTF-8 form, else an older file's ``<U`` array), or
    None when the file holds neither. The arrays are not checked here: see
    ``uncollapse validate sequences``."""
    if keys.utf8 in arrays and keys.offsets in arrays:
        return Texts(arrays[keys.utf8], arrays[keys.offsets])
    if keys.legacy in arrays:
        return Texts(None, None, unicode=arrays[keys.legacy])
    return None


def utf8_problems(utf8: np.ndarray, offsets: np.ndarray, *,
                  block: int = 1 << 24) -> list[tuple[str, int]]:
    """What is wrong with UTF-8 bytes and offsets that already rise from 0 to ``len(utf8)``:
    ``(problem, text index)`` pairs for bytes that are not UTF-8 and offsets that fall inside
    a character. Scans ``utf8`` in blocks (a memory map is never read whole)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    problems = []
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = len(utf8)
    for start in range(0, max(size, 1), block):
        chunk = np.asarray(utf8[start:start + block]).tobytes()
        try:
            decoder.decode(chunk, final=start + block >= size)
        except UnicodeDecodeError as exc:
            at = start + exc.start
            text = int(np.searchsorted(offsets, at, side="right")) - 1
            problems.append((f"byte {at} is not UTF-8 ({exc.reason})", text))
            break
    inner = offsets[(offsets > 0) & (offsets < size)]
    if inner.size:
        inside = inner[(np.asarray(utf8[inner]) & 0xC0) == 0x80]
        if inside.size:
            text = int(np.searchsorted(offsets, inside[0], side="left"))
            problems.append((f"{inside.size} offset(s) fall inside a character, first "
                             f"{int(inside[0])}", text))
    return problems


# windows --------------------------------------------------------------------------------------
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
        if self.target_rows.size == 0:  # no window: nothing to allocate, whatever the length
            return np.empty((0, context_length), dtype=np.int64)
        return self.target_rows[:, None] + np.arange(-context_length, 0, dtype=np.int64)


def doc_offsets_from_ids(doc_ids: np.ndarray) -> np.ndarray:
    """CSR offsets of a doc-id column sorted by document: document d owns rows off[d]:off[d+1]."""
    doc_ids = np.asarray(doc_ids)
    starts = np.flatnonzero(np.r_[True, doc_ids[1:] != doc_ids[:-1]]) if doc_ids.size else []
    return np.r_[np.asarray(starts, dtype=np.int64), np.int64(doc_ids.size)].astype(np.int64)


def sequence_windows(doc_offsets: np.ndarray, context_length: int) -> Windows:
    """Every (document, target) window with ``context_length`` chunks of context, vectorised."""
    if context_length < 1:
        raise ToolError(f"context_length must be at least 1, not {context_length}")
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


def sample_doc_ids(arrays: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The document of each sample of either form (the compact form's from its windows, as
    ``SequenceDataset.doc_ids`` gives them), or None when the file does not record them."""
    if DOC_IDS in arrays:
        return np.asarray(arrays[DOC_IDS])
    if DOC_OFFSETS in arrays and CONTEXT_LENGTH in arrays:
        return sequence_windows(np.asarray(arrays[DOC_OFFSETS]),
                                int(np.asarray(arrays[CONTEXT_LENGTH]).reshape(()))).doc_index
    return None


DOC_SECTIONS = (
    DocSection("""\
## Sequence file

Next-vector prediction samples: a context of C vectors and the vector that follows, all from
one document. One NPZ in one of two forms, written by `uncollapse build sequences` (dense by
default, `--compact` for the compact form), checked by `uncollapse validate sequences`, served
by `SequenceDataset` and `HardNegativeSequenceDataset` (`uncollapse.data.sequences`).

- A context never crosses a document boundary; documents with fewer than C + 1 chunks give
  no samples.
- Texts are stored as UTF-8 bytes plus offsets (text `i` is `utf8[offsets[i]:offsets[i + 1]]`),
  never pickled: a list of texts needs both its `_utf8` and its `_offsets` array. Files written
  before this layout hold fixed-width unicode arrays instead, which are still read.
- Uncompressed files are memory-mapped by the datasets; the compact form reads each window
  out of `vectors` without a C-fold copy.
"""),
    DocSection("""\
### Dense form

Sample `i` is row `i` of the per-sample arrays; N samples, context length C, vector size D.
""", DENSE_ARRAYS),
    DocSection("""\
### Compact form

Every chunk's vector once; sample windows are computed from `doc_offsets` and
`context_length`. M chunks in n_docs documents.
""", COMPACT_ARRAYS),
    DocSection("""\
### Chunk table

What a sequence file is built from: one row per text chunk (Parquet), sorted by `doc_id` then
`position`, so vector `i` (of `--vectors` or the encoder) belongs to row `i`. Written by
`uncollapse build chunks`, read by `uncollapse.data.sequences.chunks.load_chunks`, which names
the row that breaks the order.
""", CHUNK_COLUMNS),
)
"""What docs/data-contracts.md shows of the sequence family."""
