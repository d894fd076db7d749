"""Checks of next-vector sequence files, dense or compact (DESIGN.md, "Sequence file").

Arrays are read memory-mapped and scanned in blocks of rows, so a file larger than memory can
be checked. Nothing is unpickled: an object array makes the check a tool error (exit 2).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from uncollapse.report import MAX_EXAMPLES, Code, Report

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
    "Write the keys of DESIGN.md: dense `context_sequences`, `target_vectors`, `doc_ids`, "
    "`target_positions`; compact `vectors`, `doc_offsets`, `context_length`.")
ARRAY_DTYPE = Code(
    "ARRAY_DTYPE", "error",
    "An array has the wrong dtype (vectors must be float32, ids and offsets integers, texts "
    "unicode).",
    "Cast before saving, e.g. `vectors.astype(np.float32)`; store text as a `<U` array.")
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
    from uncollapse.data.npz import open_npz

    if isinstance(source, Mapping):
        target, arrays = "arrays", dict(source)
    else:
        target, arrays = str(source), open_npz(source)
    check = _Check(arrays, max_duplicate_share, min_duplicates)
    if "vectors" in arrays or "doc_offsets" in arrays:
        check.compact()
    elif "context_sequences" in arrays or "target_vectors" in arrays:
        check.dense()
    else:
        check.add(MISSING_ARRAYS.finding(
            f"neither the dense keys (context_sequences, target_vectors) nor the compact keys "
            f"(vectors, doc_offsets) are present; the file has {sorted(arrays) or 'no arrays'}",
            count=1, examples=sorted(arrays)))
    return Report(target, "sequences", check.findings, check.stats)


def _blocks(n: int, values_per_row: int) -> Iterator[slice]:
    """Slices of ``n`` rows holding about BLOCK_VALUES values each: bounded memory."""
    step = max(1, BLOCK_VALUES // max(1, values_per_row))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


class _Check:
    def __init__(self, arrays: dict, max_duplicate_share: float, min_duplicates: int):
        self.arrays = arrays
        self.max_duplicate_share = max_duplicate_share
        self.min_duplicates = min_duplicates
        self.findings = []
        self.stats: dict = {}

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

    def _dtype(self, name: str, kind: str) -> bool:
        """kind: 'f32' float32, 'int' any integer, 'str' unicode."""
        if name not in self.arrays:
            return True
        dtype = self.arrays[name].dtype
        ok = {"f32": dtype == np.float32, "int": np.issubdtype(dtype, np.integer),
              "str": dtype.kind == "U"}[kind]
        if not ok:
            expected = {"f32": "float32", "int": "an integer type", "str": "unicode (<U)"}[kind]
            self.add(ARRAY_DTYPE.finding(f"{name} has dtype {dtype}, expected {expected}",
                                         examples=[{"array": name, "dtype": str(dtype)}]))
        return ok

    def _ndim(self, name: str, ndim: int, shape_text: str) -> bool:
        if name not in self.arrays or self.arrays[name].ndim == ndim:
            return True
        self.add(ARRAY_SHAPE.finding(
            f"{name} has shape {self.arrays[name].shape}, expected {shape_text}",
            examples=[{"array": name, "shape": list(self.arrays[name].shape)}]))
        return False

    def _lengths(self, names: tuple[str, ...], what: str) -> bool:
        present = {n: len(self.arrays[n]) for n in names if n in self.arrays}
        if len(set(present.values())) > 1:
            self.add(LENGTH_MISMATCH.finding(
                f"the per-{what} arrays have different lengths: "
                + ", ".join(f"{n} {k}" for n, k in present.items()),
                count=len(present), examples=[{"array": n, "length": k}
                                              for n, k in present.items()]))
            return False
        return True

    # forms ----------------------------------------------------------------------------------
    def dense(self) -> None:
        a = self.arrays
        self.stats["form"] = "dense"
        has_doc_ids = "doc_ids" in a
        if not has_doc_ids:
            self.add(MISSING_DOC_IDS.finding(
                "no doc_ids array: samples cannot be traced to their documents"))
        required = self._require(("context_sequences", "target_vectors", "target_positions"))
        typed = all([self._dtype("context_sequences", "f32"), self._dtype("target_vectors", "f32"),
                     self._dtype("doc_ids", "int"), self._dtype("target_positions", "int"),
                     self._dtype("concept_texts", "str")])
        shaped = all([self._ndim("context_sequences", 3, "[N, C, D]"),
                      self._ndim("target_vectors", 2, "[N, D]"),
                      self._ndim("doc_ids", 1, "[N]"), self._ndim("target_positions", 1, "[N]"),
                      self._ndim("concept_texts", 1, "[N]")])
        if shaped and "context_sequences" in a and "target_vectors" in a and \
                a["context_sequences"].shape[2] != a["target_vectors"].shape[1]:
            shaped = False
            self.add(ARRAY_SHAPE.finding(
                f"contexts have D={a['context_sequences'].shape[2]} but targets "
                f"D={a['target_vectors'].shape[1]}"))
        aligned = shaped and self._lengths(("context_sequences", "target_vectors", "doc_ids",
                                            "target_positions", "concept_texts"), "sample")
        if not (shaped and aligned and "target_vectors" in a):
            return
        targets = a["target_vectors"]
        self.stats.update(samples=len(targets), dim=int(targets.shape[1]))
        if "context_sequences" in a:
            self.stats["context_length"] = int(a["context_sequences"].shape[1])
        if has_doc_ids:
            self.stats["documents"] = int(np.unique(np.asarray(a["doc_ids"])).size)
        if not typed:
            return
        vector_arrays = [n for n in ("context_sequences", "target_vectors") if n in a]
        self._values(vector_arrays)
        self._duplicates(targets, a.get("concept_texts"))
        if required and has_doc_ids:
            self._context_boundaries()

    def compact(self) -> None:
        a = self.arrays
        self.stats["form"] = "compact"
        if "doc_offsets" not in a:
            self.add(MISSING_DOC_IDS.finding(
                "compact file without doc_offsets: rows cannot be traced to their documents"))
        self._require(("vectors", "context_length"))
        typed = all([self._dtype("vectors", "f32"), self._dtype("doc_offsets", "int"),
                     self._dtype("context_length", "int"), self._dtype("texts", "str"),
                     self._dtype("doc_keys", "str")])
        shaped = all([self._ndim("vectors", 2, "[M, D]"), self._ndim("doc_offsets", 1,
                                                                    "[n_docs + 1]"),
                      self._ndim("texts", 1, "[M]"), self._ndim("doc_keys", 1, "[n_docs]")])
        if "context_length" in a and np.asarray(a["context_length"]).size != 1:
            shaped = False
            self.add(ARRAY_SHAPE.finding(
                f"context_length has shape {a['context_length'].shape}, expected a scalar"))
        if not (shaped and "vectors" in a):
            return
        vectors = a["vectors"]
        self.stats.update(rows=len(vectors), dim=int(vectors.shape[1]))
        if "texts" in a:
            self._lengths(("vectors", "texts"), "row")
        offsets_ok = "doc_offsets" in a and typed and self._offsets(len(vectors))
        if offsets_ok and "doc_keys" in a and len(a["doc_keys"]) != len(a["doc_offsets"]) - 1:
            self.add(LENGTH_MISMATCH.finding(
                f"{len(a['doc_keys'])} doc_keys for {len(a['doc_offsets']) - 1} documents "
                "(doc_offsets has one entry more than there are documents)",
                count=2, examples=[{"array": "doc_keys", "length": len(a["doc_keys"])},
                                   {"array": "doc_offsets", "length": len(a["doc_offsets"])}]))
        if not typed:
            return
        self._values(["vectors"])
        if offsets_ok and "context_length" in a:
            from uncollapse.data.sequences.contract import sequence_windows

            c = int(np.asarray(a["context_length"]).reshape(()))
            if c < 1:
                self.add(ARRAY_SHAPE.finding(f"context_length is {c}, expected 1 or more"))
                return
            windows = sequence_windows(np.asarray(a["doc_offsets"]), c)
            self.stats.update(context_length=c, documents=len(a["doc_offsets"]) - 1,
                              samples=int(windows.target_rows.size),
                              short_documents=windows.short_documents)
            texts = a.get("texts")
            self._duplicates(vectors, texts, rows=windows.target_rows)

    def _offsets(self, rows: int) -> bool:
        offsets = np.asarray(self.arrays["doc_offsets"], dtype=np.int64)
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
            self.add(DOC_OFFSETS_INVALID.finding("doc_offsets is invalid: " + "; ".join(problems),
                                                 count=len(problems), examples=problems))
        return not problems

    # values ---------------------------------------------------------------------------------
    def _values(self, names: list[str]) -> None:
        nonfinite, nonfinite_examples = 0, []
        zero, zero_examples = 0, []
        unit, finite_rows = True, 0
        for name in names:
            array = self.arrays[name]
            for rows in _blocks(len(array), int(np.prod(array.shape[1:]))):
                block = np.asarray(array[rows])
                bad = ~np.isfinite(block)
                if bad.any():
                    nonfinite += int(bad.sum())
                    for position in np.argwhere(bad)[:MAX_EXAMPLES - len(nonfinite_examples)]:
                        index = [int(position[0]) + rows.start, *map(int, position[1:])]
                        nonfinite_examples.append({"array": name, "index": index,
                                                   "value": float(block[tuple(position)])})
                flat = block.reshape(-1, block.shape[-1])
                norms = np.sqrt(np.einsum("ij,ij->i", flat, flat, dtype=np.float64))
                is_zero = ~(flat != 0).any(axis=1)
                if is_zero.any():
                    zero += int(is_zero.sum())
                    where = np.argwhere(is_zero.reshape(block.shape[:-1]))
                    for position in where[:MAX_EXAMPLES - len(zero_examples)]:
                        zero_examples.append({"array": name, "index": [
                            int(position[0]) + rows.start, *map(int, position[1:])]})
                finite = np.isfinite(norms)
                finite_rows += int(finite.sum())
                unit = unit and bool(np.all(np.abs(norms[finite] - 1) < UNIT_NORM_TOLERANCE))
        if nonfinite:
            self.add(NONFINITE_VALUES.finding(
                f"{nonfinite} NaN or infinite value(s) in {', '.join(names)}",
                count=nonfinite, examples=nonfinite_examples))
        if zero:
            self.add(ZERO_VECTORS.finding(f"{zero} all-zero vector(s) in {', '.join(names)}",
                                          count=zero, examples=zero_examples))
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
        c = a["context_sequences"].shape[1]
        docs = np.asarray(a["doc_ids"], dtype=np.int64)
        positions = np.asarray(a["target_positions"], dtype=np.int64)
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
        for part in _blocks(earlier.size, 2 * a["target_vectors"].shape[1]):
            last_context = np.asarray(a["context_sequences"][later[part], c - 1])
            previous_target = np.asarray(a["target_vectors"][earlier[part]])
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
