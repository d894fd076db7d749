"""Checks of next-vector sequence files, dense or compact, against the contract of
``uncollapse.data.sequences.contract`` (docs/data-contracts.md, "Sequence file").

Arrays are read memory-mapped and scanned in blocks of rows, so a file larger than memory can
be checked. Nothing is unpickled: an object array makes the check a tool error (exit 2).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from uncollapse.data.npz import open_npz
from uncollapse.data.sequences.contract import (
    COMPACT_ARRAYS,
    COMPACT_TEXTS,
    CONCEPT_TEXTS,
    CONTEXT_LENGTH,
    CONTEXT_SEQUENCES,
    DENSE_ARRAYS,
    DENSE_TEXTS,
    DOC_IDS,
    DOC_KEYS,
    DOC_OFFSETS,
    TARGET_POSITIONS,
    TARGET_VECTORS,
    TEXTS,
    VECTORS,
    TextKeys,
    read_texts,
    required_keys,
    sequence_form,
    sequence_windows,
    spec_ndim,
    utf8_problems,
)
from uncollapse.report import MAX_EXAMPLES, Code, Report


def _keys(specs) -> str:
    return ", ".join(f"`{key}`" for key in required_keys(specs))


MISSING_DOC_IDS = Code(
    "MISSING_DOC_IDS", "error",
    "The sequence file does not say which document each sample comes from (no `doc_ids` in the "
    "dense form, no `doc_offsets` in the compact form), so it cannot give same-document hard "
    "negatives or batches capped per document.",
    "Rebuild it with `uncollapse build chunks` and `uncollapse build sequences`, which record "
    "every target's document.")
MISSING_ARRAYS = Code(
    "MISSING_ARRAYS", "error",
    "An array the sequence-file contract requires is missing.",
    f"Write the arrays of docs/data-contracts.md (\"Sequence file\"): dense "
    f"{_keys(DENSE_ARRAYS)}; compact {_keys(COMPACT_ARRAYS)}; a text list needs both its "
    "`_utf8` and its `_offsets` array.")
ARRAY_DTYPE = Code(
    "ARRAY_DTYPE", "error",
    "An array has the wrong dtype (vectors must be float32, ids and offsets integers, text "
    "bytes uint8).",
    "Cast before saving, e.g. `vectors.astype(np.float32)`; store texts as UTF-8 bytes plus "
    "offsets (`uncollapse.data.sequences.contract.utf8_texts`).")
ARRAY_SHAPE = Code(
    "ARRAY_SHAPE", "error",
    "An array has the wrong number of dimensions, or contexts and targets disagree on the "
    "vector size.",
    "Dense: context_sequences [N, C, D], target_vectors [N, D]; compact: vectors [M, D].")
LENGTH_MISMATCH = Code(
    "LENGTH_MISMATCH", "error",
    "Arrays that describe the same samples (or rows) have different lengths, so they cannot "
    "be aligned.",
    "Write every per-sample array from the same sample index (rebuild the file).")
NONFINITE_VALUES = Code(
    "NONFINITE_VALUES", "error",
    "Vectors hold NaN or infinite values; one of them turns the loss into NaN.",
    "Find the chunks named in the examples and re-encode them (empty or overlong texts are the "
    "usual cause).")
CONTEXT_CROSSES_DOC = Code(
    "CONTEXT_CROSSES_DOC", "error",
    "A target sits closer to the start of its document than the context length, so its "
    "context must hold vectors of another document (or padding).",
    "Build windows per document (`uncollapse build sequences` does): documents shorter than "
    "C + 1 chunks give no sample.")
CONTEXT_MISALIGNED = Code(
    "CONTEXT_MISALIGNED", "error",
    "The last context vector of a sample is not the vector of the chunk just before its target "
    "in the same document: contexts and targets were shifted against each other.",
    "Rebuild the file so that context i holds the C vectors before target i.")
DOC_OFFSETS_INVALID = Code(
    "DOC_OFFSETS_INVALID", "error",
    "The compact form's `doc_offsets` do not rise from 0 to the number of vectors.",
    "doc_offsets[d]:doc_offsets[d + 1] must be document d's rows: start at 0, never decrease, "
    "end at len(vectors).")
ZERO_VECTORS = Code(
    "ZERO_VECTORS", "error",
    "All-zero vectors: usually padding or a failed encoding; a model learns to predict them.",
    "Drop the padded samples or re-encode the chunks named in the examples.")
DUPLICATE_TARGETS = Code(
    "DUPLICATE_TARGETS", "error",
    "One target vector makes up a large share of all targets: the model can lower its loss by "
    "predicting that vector (the batch 'average vector' trap).",
    "Deduplicate the chunks (boilerplate lines, empty texts) before building sequences.")
TEXTS_INVALID = Code(
    "TEXTS_INVALID", "error",
    "A list of texts cannot be decoded: its offsets do not rise from 0 to the number of UTF-8 "
    "bytes, an offset falls inside a character, or the bytes are not UTF-8.",
    "Write texts with `uncollapse build sequences` or "
    "`uncollapse.data.sequences.contract.utf8_texts`: `<name>_utf8` holds the UTF-8 bytes of "
    "every text one after another and text i is `<name>_utf8[<name>_offsets[i]:"
    "<name>_offsets[i + 1]]`.")
SEQUENCES_EMPTY = Code(
    "SEQUENCES_EMPTY", "error",
    "The file holds no samples: nothing to train or evaluate on.",
    "Rebuild it with `uncollapse build sequences` and a --context shorter than the documents "
    "(a document of n chunks gives n - C samples).")
UNIT_NORM_VECTORS = Code(
    "UNIT_NORM_VECTORS", "warning",
    "Every vector has norm 1: they were L2-normalised. A decoder trained on raw encoder "
    "outputs will not accept them.",
    "Encode without normalisation if the consumer expects raw vectors; ignore this if it "
    "expects unit vectors.")

BLOCK_VALUES = 1 << 22  # values per block of a scan: 16 MB of float32
UNIT_NORM_TOLERANCE = 1e-3


def validate_sequences(source: str | Path | Mapping[str, np.ndarray], *,
                       max_duplicate_share: float = 0.01, min_duplicates: int = 3) -> Report:
    """Check a sequence NPZ (or its arrays) against the contract; return a Report.

    Args:
        source: path of the NPZ, or a mapping of its arrays.
        max_duplicate_share: DUPLICATE_TARGETS when one target vector makes up more than this
            share of all targets ...
        min_duplicates: ... and occurs at least this many times.

    Example:
        >>> report = validate_sequences("sequences.npz")
        >>> report.ok, report.codes()
    """
    if isinstance(source, Mapping):
        target, arrays = "arrays", dict(source)
    else:
        target, arrays = str(source), open_npz(source)
    check = _Check(arrays, max_duplicate_share, min_duplicates)
    form = sequence_form(arrays)
    if form == "compact":
        check.compact()
    elif form == "dense":
        check.dense()
    else:
        check.add(MISSING_ARRAYS.finding(
            f"neither the dense keys ({CONTEXT_SEQUENCES}, {TARGET_VECTORS}) nor the compact "
            f"keys ({VECTORS}, {DOC_OFFSETS}) are present; the file has "
            f"{sorted(arrays) or 'no arrays'}", count=1, examples=sorted(arrays)))
    if check.stats.get("samples") == 0 or check.stats.get("rows") == 0:
        check.add(SEQUENCES_EMPTY.finding(
            f"no samples ({check.stats.get('rows', 0)} vectors, "
            f"{check.stats.get('documents', 0)} documents, context length "
            f"{check.stats.get('context_length', '?')})", count=1, examples=[check.stats]))
    return Report(target, "sequences", check.findings, check.stats)


def _blocks(n: int, values_per_row: int) -> Iterator[slice]:
    """Slices of ``n`` rows holding about BLOCK_VALUES values each: bounded memory."""
    step = max(1, BLOCK_VALUES // max(1, values_per_row))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _dtype_ok(dtype: np.dtype, expected: str) -> bool:
    """Whether ``dtype`` fits a contract dtype: floats exactly, integers of any width."""
    if expected == "unicode":
        return dtype.kind == "U"
    if expected.startswith("int"):
        return np.issubdtype(dtype, np.integer)
    return dtype == np.dtype(expected)


class _Check:
    def __init__(self, arrays: dict, max_duplicate_share: float, min_duplicates: int):
        self.arrays = arrays
        self.max_duplicate_share = max_duplicate_share
        self.min_duplicates = min_duplicates
        self.findings = []
        self.stats: dict = {}
        self.specs = DENSE_ARRAYS

    def add(self, finding) -> None:
        self.findings.append(finding)

    # contract -------------------------------------------------------------------------------
    def _require(self, names: tuple[str, ...]) -> bool:
        missing = [n for n in names if n not in self.arrays]
        if missing:
            self.add(MISSING_ARRAYS.finding(
                f"missing {', '.join(missing)} ({self.stats['form']} form)",
                count=len(missing), examples=missing))
        return not missing

    def _dtype(self, name: str) -> bool:
        if name not in self.arrays:
            return True
        dtype, expected = self.arrays[name].dtype, self.specs[name].dtype
        ok = _dtype_ok(dtype, expected)
        if not ok:
            wanted = {"unicode": "unicode (<U)", "int64": "an integer type",
                      "int32": "an integer type"}.get(expected, expected)
            self.add(ARRAY_DTYPE.finding(f"{name} has dtype {dtype}, expected {wanted}",
                                         examples=[{"array": name, "dtype": str(dtype)}]))
        return ok

    def _ndim(self, name: str) -> bool:
        spec = self.specs[name]
        if name not in self.arrays or self.arrays[name].ndim == spec_ndim(spec):
            return True
        self.add(ARRAY_SHAPE.finding(
            f"{name} has shape {self.arrays[name].shape}, expected {spec.shape}",
            examples=[{"array": name, "shape": list(self.arrays[name].shape)}]))
        return False

    def _typed_and_shaped(self, names) -> tuple[bool, bool]:
        typed = all([self._dtype(name) for name in names])
        shaped = all([self._ndim(name) for name in names])
        return typed, shaped

    def _length(self, name: str) -> int | None:
        """The number of items ``name`` describes: its length, or a text list's count. None
        for a 0-d array, which has no length (its ARRAY_SHAPE finding names it)."""
        if name in self.arrays:
            return len(self.arrays[name]) if self.arrays[name].ndim else None
        offsets = self.arrays.get(TextKeys(name).offsets)
        if offsets is not None and offsets.ndim:
            return max(len(offsets) - 1, 0)
        return None

    def _lengths(self, names: tuple[str, ...], what: str) -> bool:
        present = {n: k for n in names if (k := self._length(n)) is not None}
        if len(set(present.values())) > 1:
            self.add(LENGTH_MISMATCH.finding(
                f"the per-{what} arrays have different lengths: "
                + ", ".join(f"{n} {k}" for n, k in present.items()),
                count=len(present), examples=[{"array": n, "length": k}
                                              for n, k in present.items()]))
            return False
        return True

    def _texts(self, keys: TextKeys) -> bool:
        """Both arrays of a UTF-8 text list present together, offsets within bounds and
        rising, bytes UTF-8; returns whether the texts can be decoded (True if absent)."""
        a = self.arrays
        pair = (keys.utf8, keys.offsets)
        if not any(k in a for k in pair):
            return True
        if not self._require(pair):
            return False
        typed, shaped = self._typed_and_shaped(pair)
        if not (typed and shaped):
            return False
        utf8, offsets = a[keys.utf8], np.asarray(a[keys.offsets], dtype=np.int64)
        problems = []
        if offsets.size == 0:
            problems.append((f"{keys.offsets} is empty (it holds one entry more than there "
                             "are texts)", None))
        else:
            if offsets[0] != 0:
                problems.append((f"{keys.offsets} starts at {offsets[0]}, not 0", 0))
            if offsets[-1] != len(utf8):
                problems.append((f"{keys.offsets} ends at {offsets[-1]}, not at the "
                                 f"{len(utf8)} bytes of {keys.utf8}", len(offsets) - 2))
            falls = np.flatnonzero(np.diff(offsets) < 0)
            if falls.size:
                problems.append((f"{keys.offsets} decreases at {falls.size} place(s), first "
                                 f"after text {falls[0]}", int(falls[0])))
            if not problems:
                problems.extend(utf8_problems(utf8, offsets))
        if problems:
            self.add(TEXTS_INVALID.finding(
                f"{keys.name} cannot be decoded: " + "; ".join(p for p, _ in problems),
                count=len(problems),
                examples=[{"array": keys.name, "problem": p, "text": i} for p, i in problems]))
        return not problems

    def _text_lists(self, text_lists: tuple[TextKeys, ...]) -> set[str]:
        """The names of the text lists that decode (older ``<U`` arrays always do)."""
        ok = set()
        for keys in text_lists:
            if keys.utf8 in self.arrays or keys.offsets in self.arrays:
                if self._texts(keys):
                    ok.add(keys.name)
            elif keys.legacy in self.arrays and self._dtype(keys.legacy) and \
                    self._ndim(keys.legacy):
                ok.add(keys.name)
        return ok

    # forms ----------------------------------------------------------------------------------
    def dense(self) -> None:
        a = self.arrays
        self.specs = DENSE_ARRAYS
        self.stats["form"] = "dense"
        has_doc_ids = DOC_IDS in a
        if not has_doc_ids:
            self.add(MISSING_DOC_IDS.finding(
                f"no {DOC_IDS} array: samples cannot be traced to their documents"))
        required = self._require(tuple(k for k in required_keys(DENSE_ARRAYS) if k != DOC_IDS))
        typed, shaped = self._typed_and_shaped(
            (CONTEXT_SEQUENCES, TARGET_VECTORS, DOC_IDS, TARGET_POSITIONS))
        decodable = self._text_lists(DENSE_TEXTS)
        if shaped and CONTEXT_SEQUENCES in a and TARGET_VECTORS in a and \
                a[CONTEXT_SEQUENCES].shape[2] != a[TARGET_VECTORS].shape[1]:
            shaped = False
            self.add(ARRAY_SHAPE.finding(
                f"contexts have D={a[CONTEXT_SEQUENCES].shape[2]} but targets "
                f"D={a[TARGET_VECTORS].shape[1]}"))
        aligned = shaped and self._lengths((CONTEXT_SEQUENCES, TARGET_VECTORS, DOC_IDS,
                                            TARGET_POSITIONS, CONCEPT_TEXTS.name), "sample")
        if not (shaped and aligned and TARGET_VECTORS in a):
            return
        targets = a[TARGET_VECTORS]
        self.stats.update(samples=len(targets), dim=int(targets.shape[1]))
        if not self._has_width(TARGET_VECTORS):
            return
        if CONTEXT_SEQUENCES in a:
            self.stats["context_length"] = int(a[CONTEXT_SEQUENCES].shape[1])
        if has_doc_ids:
            self.stats["documents"] = int(np.unique(np.asarray(a[DOC_IDS])).size)
        if not typed:
            return
        self._values([n for n in (CONTEXT_SEQUENCES, TARGET_VECTORS) if n in a])
        texts = read_texts(a, CONCEPT_TEXTS) if CONCEPT_TEXTS.name in decodable else None
        self._duplicates(targets, texts)
        if required and has_doc_ids:
            self._context_boundaries()

    def compact(self) -> None:
        a = self.arrays
        self.specs = COMPACT_ARRAYS
        self.stats["form"] = "compact"
        if DOC_OFFSETS not in a:
            self.add(MISSING_DOC_IDS.finding(
                f"compact file without {DOC_OFFSETS}: rows cannot be traced to their documents"))
        self._require(tuple(k for k in required_keys(COMPACT_ARRAYS) if k != DOC_OFFSETS))
        typed, shaped = self._typed_and_shaped((VECTORS, DOC_OFFSETS, CONTEXT_LENGTH))
        if CONTEXT_LENGTH in a and np.asarray(a[CONTEXT_LENGTH]).size != 1:
            shaped = False
            self.add(ARRAY_SHAPE.finding(
                f"{CONTEXT_LENGTH} has shape {a[CONTEXT_LENGTH].shape}, expected a scalar"))
        decodable = self._text_lists(COMPACT_TEXTS)
        if not (shaped and VECTORS in a):
            return
        vectors = a[VECTORS]
        self.stats.update(rows=len(vectors), dim=int(vectors.shape[1]))
        if not self._has_width(VECTORS):
            return
        self._lengths((VECTORS, TEXTS.name), "row")
        offsets_ok = DOC_OFFSETS in a and typed and self._offsets(len(vectors))
        keys = self._length(DOC_KEYS.name)
        if offsets_ok and keys is not None and keys != len(a[DOC_OFFSETS]) - 1:
            self.add(LENGTH_MISMATCH.finding(
                f"{keys} {DOC_KEYS.name} for {len(a[DOC_OFFSETS]) - 1} documents "
                f"({DOC_OFFSETS} has one entry more than there are documents)",
                count=2, examples=[{"array": DOC_KEYS.name, "length": keys},
                                   {"array": DOC_OFFSETS, "length": len(a[DOC_OFFSETS])}]))
        if not typed:
            return
        self._values([VECTORS])
        if offsets_ok and CONTEXT_LENGTH in a:
            c = int(np.asarray(a[CONTEXT_LENGTH]).reshape(()))
            if c < 1:
                self.add(ARRAY_SHAPE.finding(f"{CONTEXT_LENGTH} is {c}, expected 1 or more"))
                return
            windows = sequence_windows(np.asarray(a[DOC_OFFSETS]), c)
            self.stats.update(context_length=c, documents=len(a[DOC_OFFSETS]) - 1,
                              samples=int(windows.target_rows.size),
                              short_documents=windows.short_documents)
            texts = read_texts(a, TEXTS) if TEXTS.name in decodable and \
                self._length(TEXTS.name) == len(vectors) else None
            self._duplicates(vectors, texts, rows=windows.target_rows)

    def _has_width(self, name: str) -> bool:
        """Vectors of 0 dimensions carry nothing; every later check would divide by D."""
        if self.arrays[name].shape[-1] > 0:
            return True
        self.add(ARRAY_SHAPE.finding(
            f"{name} has shape {self.arrays[name].shape}: vectors of 0 dimensions",
            examples=[{"array": name, "shape": list(self.arrays[name].shape)}],
            hint="Encode the chunks again: the vectors file was written without its columns."))
        return False

    def _offsets(self, rows: int) -> bool:
        offsets = np.asarray(self.arrays[DOC_OFFSETS], dtype=np.int64)
        problems = []
        if offsets.size == 0:
            problems.append("it is empty")
        else:
            if offsets[0] != 0:
                problems.append(f"it starts at {offsets[0]}, not 0")
            if offsets[-1] != rows:
                problems.append(f"it ends at {offsets[-1]}, not at the {rows} vectors")
            falls = np.flatnonzero(np.diff(offsets) < 0)
            if falls.size:
                problems.append(f"it decreases at {falls.size} place(s), first at document "
                                f"{falls[0]}")
        if problems:
            self.add(DOC_OFFSETS_INVALID.finding(
                f"{DOC_OFFSETS} is invalid: " + "; ".join(problems),
                count=len(problems), examples=problems))
        return not problems

    # values ---------------------------------------------------------------------------------
    def _values(self, names: list[str]) -> None:
        nonfinite: dict[str, int] = {}  # per array, so a message names only arrays that hold one
        zero: dict[str, int] = {}
        nonfinite_examples, zero_examples = [], []
        unit, finite_rows = True, 0
        for name in names:
            array = self.arrays[name]
            for rows in _blocks(len(array), int(np.prod(array.shape[1:]))):
                block = np.asarray(array[rows])
                bad = ~np.isfinite(block)
                if bad.any():
                    nonfinite[name] = nonfinite.get(name, 0) + int(bad.sum())
                    for position in np.argwhere(bad)[:MAX_EXAMPLES - len(nonfinite_examples)]:
                        index = [int(position[0]) + rows.start, *map(int, position[1:])]
                        nonfinite_examples.append({"array": name, "index": index,
                                                   "value": float(block[tuple(position)])})
                flat = block.reshape(-1, block.shape[-1])
                norms = np.sqrt(np.einsum("ij,ij->i", flat, flat, dtype=np.float64))
                is_zero = ~(flat != 0).any(axis=1)
                if is_zero.any():
                    zero[name] = zero.get(name, 0) + int(is_zero.sum())
                    where = np.argwhere(is_zero.reshape(block.shape[:-1]))
                    for position in where[:MAX_EXAMPLES - len(zero_examples)]:
                        zero_examples.append({"array": name, "index": [
                            int(position[0]) + rows.start, *map(int, position[1:])]})
                finite = np.isfinite(norms)
                finite_rows += int(finite.sum())
                unit = unit and bool(np.all(np.abs(norms[finite] - 1) < UNIT_NORM_TOLERANCE))
        if nonfinite:
            total = sum(nonfinite.values())
            self.add(NONFINITE_VALUES.finding(
                f"{total} NaN or infinite value(s): " + _per_array(nonfinite),
                count=total, examples=nonfinite_examples))
        if zero:
            total = sum(zero.values())
            self.add(ZERO_VECTORS.finding(f"{total} all-zero vector(s): " + _per_array(zero),
                                          count=total, examples=zero_examples))
        if unit and finite_rows:
            self.add(UNIT_NORM_VECTORS.finding(
                f"all {finite_rows} finite vectors have norm 1 (within {UNIT_NORM_TOLERANCE})",
                count=finite_rows))

    def _duplicates(self, vectors: np.ndarray, texts, *, rows: np.ndarray | None = None) -> None:
        """Exact duplicate target vectors, found by a 64-bit hash of each row's bytes."""
        n = len(vectors) if rows is None else len(rows)
        if n == 0:
            return
        dim = vectors.shape[1]
        multipliers = np.random.default_rng(0x5EC).integers(1, 2**63, size=dim, dtype=np.uint64)
        multipliers |= np.uint64(1)
        hashes = np.empty(n, dtype=np.uint64)
        for part in _blocks(n, dim * 2):  # the hash works on uint64 copies
            block = np.asarray(vectors[part] if rows is None else vectors[rows[part]],
                               dtype=np.float32)
            words = np.ascontiguousarray(block).view(np.uint32).astype(np.uint64)
            hashes[part] = (words * multipliers).sum(axis=1) ^ np.uint64(dim)
        unique, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
        largest = int(counts.max())
        self.stats.update(unique_targets=int(unique.size), largest_duplicate_group=largest)
        if largest < self.min_duplicates or largest <= self.max_duplicate_share * n:
            return
        heavy = np.flatnonzero(counts >= max(self.min_duplicates,
                                             int(self.max_duplicate_share * n) + 1))
        heavy = heavy[np.argsort(-counts[heavy], kind="stable")][:MAX_EXAMPLES]
        order = np.argsort(inverse, kind="stable")
        starts = np.r_[0, np.cumsum(counts)]
        examples = []
        for group in heavy:  # at most MAX_EXAMPLES groups, for the report only
            members = order[starts[group]:starts[group] + 5]
            example = {"count": int(counts[group]), "samples": members.tolist()}
            if texts is not None:
                text_rows = members if rows is None else rows[members]
                example["text"] = str(texts[int(text_rows[0])])[:120]
            examples.append(example)
        repeated = int(counts[heavy].sum())
        self.add(DUPLICATE_TARGETS.finding(
            f"one target vector is {largest} of {n} targets ({largest / n:.1%}, more than "
            f"{self.max_duplicate_share:.1%})", count=repeated, examples=examples))

    # documents ------------------------------------------------------------------------------
    def _context_boundaries(self) -> None:
        a = self.arrays
        c = a[CONTEXT_SEQUENCES].shape[1]
        docs = np.asarray(a[DOC_IDS], dtype=np.int64)
        positions = np.asarray(a[TARGET_POSITIONS], dtype=np.int64)
        crossing = np.flatnonzero(positions < c)
        if crossing.size:
            self.add(CONTEXT_CROSSES_DOC.finding(
                f"{crossing.size} sample(s) have a target at position < C={c} of its document, "
                "so their contexts reach before the document's first chunk",
                count=crossing.size,
                examples=[{"sample": int(i), "doc_id": int(docs[i]),
                           "target_position": int(positions[i])}
                          for i in crossing[:MAX_EXAMPLES]]))
        # consecutive targets of one document: the later one's last context vector must be
        # the earlier one's target
        order = np.lexsort((positions, docs))
        follows = (docs[order][1:] == docs[order][:-1]) & \
                  (positions[order][1:] == positions[order][:-1] + 1)
        earlier, later = order[:-1][follows], order[1:][follows]
        mismatched = []
        for part in _blocks(earlier.size, 2 * a[TARGET_VECTORS].shape[1]):
            last_context = np.asarray(a[CONTEXT_SEQUENCES][later[part], c - 1])
            previous_target = np.asarray(a[TARGET_VECTORS][earlier[part]])
            differs = ~np.all((last_context == previous_target)
                              | (np.isnan(last_context) & np.isnan(previous_target)), axis=1)
            mismatched.append(later[part][differs])
        bad = np.concatenate(mismatched) if mismatched else np.zeros(0, dtype=np.int64)
        if bad.size:
            self.add(CONTEXT_MISALIGNED.finding(
                f"{bad.size} of {earlier.size} checked sample(s) have a last context vector "
                "that is not the target vector one position earlier in the same document",
                count=bad.size,
                examples=[{"sample": int(i), "doc_id": int(docs[i]),
                           "target_position": int(positions[i])} for i in bad[:MAX_EXAMPLES]]))


def _per_array(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} in {name}" for name, count in counts.items())
