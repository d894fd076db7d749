"""The rules of next-vector sequence files, dense or compact, against the contract of
``uncollapse.data.sequences.contract`` (docs/data-contracts.md, "Sequence file").

Each rule is declared once with its finding code (``RULES``) and tests one thing of a
``SequenceFile``; ``validate_sequences`` applies them in order, form by form (``_dense``,
``_compact``), a rule running only where the ones before it say its arrays can be read.
Arrays are read memory-mapped and scanned in blocks of rows (``scan``), so a file larger than
memory can be checked. Nothing is unpickled: an object array makes the check a tool error
(exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uncollapse.data.npz import open_npz
from uncollapse.data.sequences.contract import (
    CHUNK_DOC_ID,
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
from uncollapse.validators.rules import Failed, Rules, Run
from uncollapse.validators.sequences.scan import (
    UNIT_NORM_TOLERANCE,
    DuplicateGroups,
    ValueScan,
    blocks,
)

__all__ = ["RULES", "SequenceFile", "validate_sequences"]


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


@dataclass
class SequenceFile:
    """The arrays of one sequence file, the thresholds of its rules and what was measured.

    ``form`` is ``"dense"``, ``"compact"`` or None (neither form's keys); ``specs`` the
    contract of that form.
    """

    arrays: Mapping[str, np.ndarray]
    max_duplicate_share: float = 0.01
    min_duplicates: int = 3
    stats: dict = field(default_factory=dict)
    form: str | None = None
    scans: dict = field(default_factory=dict)

    @property
    def specs(self) -> dict:
        return COMPACT_ARRAYS if self.form == "compact" else DENSE_ARRAYS

    def length(self, name: str) -> int | None:
        """The number of items ``name`` describes: its length, or a text list's count. None
        for a 0-d array, which has no length (its ARRAY_SHAPE finding names it)."""
        if name in self.arrays:
            return len(self.arrays[name]) if self.arrays[name].ndim else None
        offsets = self.arrays.get(TextKeys(name).offsets)
        if offsets is not None and offsets.ndim:
            return max(len(offsets) - 1, 0)
        return None

    def values(self, names: tuple[str, ...]) -> ValueScan:
        """One scan of the vectors of ``names``, shared by the rules on their values."""
        if names not in self.scans:
            self.scans[names] = ValueScan.of(self.arrays, list(names))
        return self.scans[names]


def _dtype_ok(dtype: np.dtype, expected: str) -> bool:
    """Whether ``dtype`` fits a contract dtype: floats exactly, integers of any width."""
    if expected == "unicode":
        return dtype.kind == "U"
    if expected.startswith("int"):
        return np.issubdtype(dtype, np.integer)
    return dtype == np.dtype(expected)


def _per_array(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} in {name}" for name, count in counts.items())


RULES = Rules()
"""The sequence file rules. Each tests a ``SequenceFile`` (and what it names) and returns None
when it holds."""


# The contract: keys, dtypes, shapes, lengths -----------------------------------------------

@RULES.rule(MISSING_ARRAYS)
def file_has_a_form(f: SequenceFile) -> Failed | None:
    """The file holds the keys of the dense or of the compact form."""
    if f.form is not None:
        return None
    return Failed(f"neither the dense keys ({CONTEXT_SEQUENCES}, {TARGET_VECTORS}) nor the "
                  f"compact keys ({VECTORS}, {DOC_OFFSETS}) are present; the file has "
                  f"{sorted(f.arrays) or 'no arrays'}", count=1, examples=sorted(f.arrays))


@RULES.rule(MISSING_DOC_IDS)
def samples_name_their_documents(f: SequenceFile) -> Failed | None:
    """Dense: ``doc_ids``; compact: ``doc_offsets``."""
    if f.form == "compact":
        return None if DOC_OFFSETS in f.arrays else Failed(
            f"compact file without {DOC_OFFSETS}: rows cannot be traced to their documents")
    return None if DOC_IDS in f.arrays else Failed(
        f"no {DOC_IDS} array: samples cannot be traced to their documents")


@RULES.rule(MISSING_ARRAYS)
def arrays_present(f: SequenceFile, names: tuple[str, ...]) -> Failed | None:
    """Every array of ``names`` is in the file."""
    missing = [n for n in names if n not in f.arrays]
    if not missing:
        return None
    return Failed(f"missing {', '.join(missing)} ({f.form} form)", count=len(missing),
                  examples=missing)


@RULES.rule(ARRAY_DTYPE)
def array_has_contract_dtype(f: SequenceFile, name: str) -> Failed | None:
    """``name`` (where present) has the contract's dtype: floats exactly, integers of any
    width."""
    if name not in f.arrays:
        return None
    dtype, expected = f.arrays[name].dtype, f.specs[name].dtype
    if _dtype_ok(dtype, expected):
        return None
    wanted = {"unicode": "unicode (<U)", "int64": "an integer type",
              "int32": "an integer type"}.get(expected, expected)
    return Failed(f"{name} has dtype {dtype}, expected {wanted}",
                  examples=[{"array": name, "dtype": str(dtype)}])


@RULES.rule(ARRAY_SHAPE)
def array_has_contract_dimensions(f: SequenceFile, name: str) -> Failed | None:
    """``name`` (where present) has the contract's number of dimensions."""
    spec = f.specs[name]
    if name not in f.arrays or f.arrays[name].ndim == spec_ndim(spec):
        return None
    return Failed(f"{name} has shape {f.arrays[name].shape}, expected {spec.shape}",
                  examples=[{"array": name, "shape": list(f.arrays[name].shape)}])


@RULES.rule(ARRAY_SHAPE)
def contexts_and_targets_share_width(f: SequenceFile) -> Failed | None:
    """Dense: context vectors and target vectors have the same D."""
    a = f.arrays
    if CONTEXT_SEQUENCES not in a or TARGET_VECTORS not in a or \
            a[CONTEXT_SEQUENCES].shape[2] == a[TARGET_VECTORS].shape[1]:
        return None
    return Failed(f"contexts have D={a[CONTEXT_SEQUENCES].shape[2]} but targets "
                  f"D={a[TARGET_VECTORS].shape[1]}")


@RULES.rule(ARRAY_SHAPE)
def context_length_is_a_scalar(f: SequenceFile) -> Failed | None:
    """Compact: ``context_length`` holds one number."""
    if CONTEXT_LENGTH not in f.arrays or np.asarray(f.arrays[CONTEXT_LENGTH]).size == 1:
        return None
    return Failed(f"{CONTEXT_LENGTH} has shape {f.arrays[CONTEXT_LENGTH].shape}, expected a "
                  "scalar")


@RULES.rule(ARRAY_SHAPE)
def vectors_have_width(f: SequenceFile, name: str) -> Failed | None:
    """Vectors of 0 dimensions carry nothing; every later rule would divide by D."""
    if f.arrays[name].shape[-1] > 0:
        return None
    return Failed(f"{name} has shape {f.arrays[name].shape}: vectors of 0 dimensions",
                  examples=[{"array": name, "shape": list(f.arrays[name].shape)}],
                  hint="Encode the chunks again: the vectors file was written without its "
                       "columns.")


@RULES.rule(LENGTH_MISMATCH)
def arrays_align(f: SequenceFile, names: tuple[str, ...], what: str) -> Failed | None:
    """The arrays of ``names`` that describe one ``what`` each (sample, row) agree in length."""
    present = {n: k for n in names if (k := f.length(n)) is not None}
    if len(set(present.values())) <= 1:
        return None
    return Failed(f"the per-{what} arrays have different lengths: "
                  + ", ".join(f"{n} {k}" for n, k in present.items()),
                  count=len(present), examples=[{"array": n, "length": k}
                                                for n, k in present.items()])


@RULES.rule(TEXTS_INVALID)
def texts_decode(f: SequenceFile, keys: TextKeys) -> Failed | None:
    """A UTF-8 text list's offsets rise from 0 to the number of bytes, and its bytes are
    UTF-8 (its arrays are present, typed and shaped)."""
    utf8, offsets = f.arrays[keys.utf8], np.asarray(f.arrays[keys.offsets], dtype=np.int64)
    problems = []
    if offsets.size == 0:
        problems.append((f"{keys.offsets} is empty (it holds one entry more than there are "
                         "texts)", None))
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
    if not problems:
        return None
    return Failed(f"{keys.name} cannot be decoded: " + "; ".join(p for p, _ in problems),
                  count=len(problems),
                  examples=[{"array": keys.name, "problem": p, "text": i} for p, i in problems])


@RULES.rule(DOC_OFFSETS_INVALID)
def doc_offsets_rise(f: SequenceFile, rows: int) -> Failed | None:
    """Compact: ``doc_offsets`` rise from 0 to the number of vectors."""
    offsets = np.asarray(f.arrays[DOC_OFFSETS], dtype=np.int64)
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
    if not problems:
        return None
    return Failed(f"{DOC_OFFSETS} is invalid: " + "; ".join(problems), count=len(problems),
                  examples=problems)


@RULES.rule(LENGTH_MISMATCH)
def doc_keys_name_every_document(f: SequenceFile) -> Failed | None:
    """Compact: one ``doc_keys`` entry per document."""
    keys, offsets = f.length(DOC_KEYS.name), f.arrays[DOC_OFFSETS]
    if keys is None or keys == len(offsets) - 1:
        return None
    return Failed(f"{keys} {DOC_KEYS.name} for {len(offsets) - 1} documents ({DOC_OFFSETS} has "
                  "one entry more than there are documents)", count=2,
                  examples=[{"array": DOC_KEYS.name, "length": keys},
                            {"array": DOC_OFFSETS, "length": len(offsets)}])


@RULES.rule(ARRAY_SHAPE)
def context_length_is_positive(f: SequenceFile, c: int) -> Failed | None:
    """Compact: a context of at least one vector."""
    return None if c >= 1 else Failed(f"{CONTEXT_LENGTH} is {c}, expected 1 or more")


# The values -----------------------------------------------------------------------------------

@RULES.rule(NONFINITE_VALUES)
def values_are_finite(f: SequenceFile, names: tuple[str, ...]) -> Failed | None:
    """No NaN or infinite value in the vectors of ``names``."""
    scan = f.values(names)
    if not scan.nonfinite:
        return None
    total = sum(scan.nonfinite.values())
    return Failed(f"{total} NaN or infinite value(s): " + _per_array(scan.nonfinite),
                  count=total, examples=scan.nonfinite_examples)


@RULES.rule(ZERO_VECTORS)
def no_zero_vectors(f: SequenceFile, names: tuple[str, ...]) -> Failed | None:
    """No all-zero vector in ``names``."""
    scan = f.values(names)
    if not scan.zero:
        return None
    total = sum(scan.zero.values())
    return Failed(f"{total} all-zero vector(s): " + _per_array(scan.zero), count=total,
                  examples=scan.zero_examples)


@RULES.rule(UNIT_NORM_VECTORS)
def vectors_are_not_all_unit_norm(f: SequenceFile, names: tuple[str, ...]) -> Failed | None:
    """Not every finite vector of ``names`` has norm 1."""
    scan = f.values(names)
    if not (scan.unit and scan.finite_rows):
        return None
    return Failed(f"all {scan.finite_rows} finite vectors have norm 1 (within "
                  f"{UNIT_NORM_TOLERANCE})", count=scan.finite_rows)


@RULES.rule(DUPLICATE_TARGETS)
def targets_are_not_one_vector(f: SequenceFile, groups: DuplicateGroups, texts,
                               rows: np.ndarray | None = None) -> Failed | None:
    """No target vector is more than max_duplicate_share of the targets (and at least
    min_duplicates of them)."""
    counts = groups.counts
    n, largest = len(groups.inverse), int(counts.max())
    if largest < f.min_duplicates or largest <= f.max_duplicate_share * n:
        return None
    heavy = np.flatnonzero(counts >= max(f.min_duplicates,
                                         int(f.max_duplicate_share * n) + 1))
    heavy = heavy[np.argsort(-counts[heavy], kind="stable")][:MAX_EXAMPLES]
    examples = []
    for group in heavy:  # at most MAX_EXAMPLES groups, for the report only
        members = groups.members(group, 5)
        example = {"count": int(counts[group]), "samples": members.tolist()}
        if texts is not None:
            text_rows = members if rows is None else rows[members]
            example["text"] = str(texts[int(text_rows[0])])[:120]
        examples.append(example)
    return Failed(f"one target vector is {largest} of {n} targets ({largest / n:.1%}, more than "
                  f"{f.max_duplicate_share:.1%})", count=int(counts[heavy].sum()),
                  examples=examples)


# The documents --------------------------------------------------------------------------------

@RULES.rule(CONTEXT_CROSSES_DOC)
def contexts_stay_in_their_document(f: SequenceFile) -> Failed | None:
    """Dense: every target sits at least C chunks into its document."""
    a = f.arrays
    c = a[CONTEXT_SEQUENCES].shape[1]
    docs = np.asarray(a[DOC_IDS], dtype=np.int64)
    positions = np.asarray(a[TARGET_POSITIONS], dtype=np.int64)
    crossing = np.flatnonzero(positions < c)
    if not crossing.size:
        return None
    return Failed(f"{crossing.size} sample(s) have a target at position < C={c} of its document, "
                  "so their contexts reach before the document's first chunk",
                  count=crossing.size,
                  examples=[{"sample": int(i), CHUNK_DOC_ID: int(docs[i]),
                             "target_position": int(positions[i])}
                            for i in crossing[:MAX_EXAMPLES]])


@RULES.rule(CONTEXT_MISALIGNED)
def contexts_end_before_their_target(f: SequenceFile) -> Failed | None:
    """Dense: of consecutive targets of one document, the later one's last context vector is
    the earlier one's target."""
    a = f.arrays
    c = a[CONTEXT_SEQUENCES].shape[1]
    docs = np.asarray(a[DOC_IDS], dtype=np.int64)
    positions = np.asarray(a[TARGET_POSITIONS], dtype=np.int64)
    order = np.lexsort((positions, docs))
    follows = (docs[order][1:] == docs[order][:-1]) & \
              (positions[order][1:] == positions[order][:-1] + 1)
    earlier, later = order[:-1][follows], order[1:][follows]
    mismatched = []
    for part in blocks(earlier.size, 2 * a[TARGET_VECTORS].shape[1]):
        last_context = np.asarray(a[CONTEXT_SEQUENCES][later[part], c - 1])
        previous_target = np.asarray(a[TARGET_VECTORS][earlier[part]])
        differs = ~np.all((last_context == previous_target)
                          | (np.isnan(last_context) & np.isnan(previous_target)), axis=1)
        mismatched.append(later[part][differs])
    bad = np.concatenate(mismatched) if mismatched else np.zeros(0, dtype=np.int64)
    if not bad.size:
        return None
    return Failed(f"{bad.size} of {earlier.size} checked sample(s) have a last context vector "
                  "that is not the target vector one position earlier in the same document",
                  count=bad.size,
                  examples=[{"sample": int(i), CHUNK_DOC_ID: int(docs[i]),
                             "target_position": int(positions[i])} for i in bad[:MAX_EXAMPLES]])


@RULES.rule(SEQUENCES_EMPTY)
def file_has_samples(f: SequenceFile) -> Failed | None:
    """The file holds samples (dense) or vectors (compact)."""
    stats = f.stats
    if stats.get("samples") != 0 and stats.get("rows") != 0:
        return None
    return Failed(f"no samples ({stats.get('rows', 0)} vectors, {stats.get('documents', 0)} "
                  f"documents, context length {stats.get(CONTEXT_LENGTH, '?')})", count=1,
                  examples=[stats])


# The forms: which rules run, in order, and on what -------------------------------------------

def _typed_and_shaped(run: Run, f: SequenceFile, names) -> tuple[bool, bool]:
    typed = all([run.check(array_has_contract_dtype, f, name) for name in names])
    shaped = all([run.check(array_has_contract_dimensions, f, name) for name in names])
    return typed, shaped


def _text_lists(run: Run, f: SequenceFile, text_lists: tuple[TextKeys, ...]) -> set[str]:
    """The names of the text lists that decode (older ``<U`` arrays always do)."""
    ok = set()
    for keys in text_lists:
        pair = (keys.utf8, keys.offsets)
        if any(k in f.arrays for k in pair):
            if run.check(arrays_present, f, pair) and \
                    all(_typed_and_shaped(run, f, pair)) and run.check(texts_decode, f, keys):
                ok.add(keys.name)
        elif keys.legacy in f.arrays and run.check(array_has_contract_dtype, f, keys.legacy) \
                and run.check(array_has_contract_dimensions, f, keys.legacy):
            ok.add(keys.name)
    return ok


def _duplicates(run: Run, f: SequenceFile, vectors: np.ndarray, texts,
                rows: np.ndarray | None = None) -> None:
    groups = DuplicateGroups.of(vectors, rows)
    if groups is not None:
        f.stats.update(unique_targets=int(groups.counts.size),
                       largest_duplicate_group=int(groups.counts.max()))
        run.check(targets_are_not_one_vector, f, groups, texts, rows)


def _values(run: Run, f: SequenceFile, names: tuple[str, ...]) -> None:
    for rule in (values_are_finite, no_zero_vectors, vectors_are_not_all_unit_norm):
        run.check(rule, f, names)


def _dense(run: Run, f: SequenceFile) -> None:
    a = f.arrays
    f.stats["form"] = "dense"
    has_doc_ids = run.check(samples_name_their_documents, f)
    required = run.check(arrays_present, f,
                         tuple(k for k in required_keys(DENSE_ARRAYS) if k != DOC_IDS))
    typed, shaped = _typed_and_shaped(run, f, (CONTEXT_SEQUENCES, TARGET_VECTORS, DOC_IDS,
                                               TARGET_POSITIONS))
    decodable = _text_lists(run, f, DENSE_TEXTS)
    shaped = shaped and run.check(contexts_and_targets_share_width, f)
    aligned = shaped and run.check(arrays_align, f, (CONTEXT_SEQUENCES, TARGET_VECTORS, DOC_IDS,
                                                     TARGET_POSITIONS, CONCEPT_TEXTS.name),
                                   "sample")
    if not (shaped and aligned and TARGET_VECTORS in a):
        return
    targets = a[TARGET_VECTORS]
    f.stats.update(samples=len(targets), dim=int(targets.shape[1]))
    if not run.check(vectors_have_width, f, TARGET_VECTORS):
        return
    if CONTEXT_SEQUENCES in a:
        f.stats[CONTEXT_LENGTH] = int(a[CONTEXT_SEQUENCES].shape[1])
    if has_doc_ids:
        f.stats["documents"] = int(np.unique(np.asarray(a[DOC_IDS])).size)
    if not typed:
        return
    _values(run, f, tuple(n for n in (CONTEXT_SEQUENCES, TARGET_VECTORS) if n in a))
    texts = read_texts(a, CONCEPT_TEXTS) if CONCEPT_TEXTS.name in decodable else None
    _duplicates(run, f, targets, texts)
    if required and has_doc_ids:
        run.check(contexts_stay_in_their_document, f)
        run.check(contexts_end_before_their_target, f)


def _compact(run: Run, f: SequenceFile) -> None:
    a = f.arrays
    f.stats["form"] = "compact"
    run.check(samples_name_their_documents, f)
    run.check(arrays_present, f,
              tuple(k for k in required_keys(COMPACT_ARRAYS) if k != DOC_OFFSETS))
    typed, shaped = _typed_and_shaped(run, f, (VECTORS, DOC_OFFSETS, CONTEXT_LENGTH))
    shaped = run.check(context_length_is_a_scalar, f) and shaped
    decodable = _text_lists(run, f, COMPACT_TEXTS)
    if not (shaped and VECTORS in a):
        return
    vectors = a[VECTORS]
    f.stats.update(rows=len(vectors), dim=int(vectors.shape[1]))
    if not run.check(vectors_have_width, f, VECTORS):
        return
    run.check(arrays_align, f, (VECTORS, TEXTS.name), "row")
    offsets_ok = DOC_OFFSETS in a and typed and run.check(doc_offsets_rise, f, len(vectors))
    if offsets_ok:
        run.check(doc_keys_name_every_document, f)
    if not typed:
        return
    _values(run, f, (VECTORS,))
    if offsets_ok and CONTEXT_LENGTH in a:
        c = int(np.asarray(a[CONTEXT_LENGTH]).reshape(()))
        if not run.check(context_length_is_positive, f, c):
            return
        windows = sequence_windows(np.asarray(a[DOC_OFFSETS]), c)
        f.stats.update({CONTEXT_LENGTH: c, "documents": len(a[DOC_OFFSETS]) - 1},
                       samples=int(windows.target_rows.size),
                       short_documents=windows.short_documents)
        texts = read_texts(a, TEXTS) if TEXTS.name in decodable and \
            f.length(TEXTS.name) == len(vectors) else None
        _duplicates(run, f, vectors, texts, rows=windows.target_rows)


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
    f = SequenceFile(arrays, max_duplicate_share, min_duplicates, form=sequence_form(arrays))
    run = Run()
    if f.form == "compact":
        _compact(run, f)
    elif f.form == "dense":
        _dense(run, f)
    else:
        run.check(file_has_a_form, f)
    run.check(file_has_samples, f)
    return Report(target, "sequences", run.findings, f.stats)
