"""Sampler audit: replay what a batch sampler yields and check each batch's guarantees.

The guarantees are one pandera model, ``BatchAssignment`` (one row per placed row: ``epoch``,
``rank``, ``batch``, ``row``, and ``group`` and/or ``doc``), whose dataframe-level checks are
polars expressions named after the rule they enforce; ``batch_assignment_model(per_group=...,
max_per_doc=..., n_rows=...)`` gives the model for one sampler's settings. ``audit_batches``
replays a sampler, builds that frame (``batch_assignment_frame``), validates it with
``lazy=True`` and turns each failed check into its finding code. What the model cannot see in
one frame (``len(sampler)``, epochs identical, ranks of different lengths, rows an epoch leaves
out) is measured beside it.

Building the samplers a table's ids call for and auditing them (``uncollapse validate batches``)
is ``uncollapse.validators.batches_table``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.constants import CHECK_OUTPUT_KEY

from uncollapse.report import MAX_EXAMPLES, Code, Finding, Report

NO_BATCHES = Code(
    "NO_BATCHES", "error",
    "The sampler yielded no batch in an epoch, so training would do nothing.",
    "Lower the batch size or use fewer ranks; check that the table is not empty.")
BATCH_INDEX_OUT_OF_RANGE = Code(
    "BATCH_INDEX_OUT_OF_RANGE", "error",
    "A batch holds a row index outside the table, so the loader would fail or read other data.",
    "Build the sampler from the same table the dataset reads.")
DUPLICATE_INDEX_IN_BATCH = Code(
    "DUPLICATE_INDEX_IN_BATCH", "error",
    "The same row appears twice in one batch: it becomes its own false positive (or a padded "
    "fake positive) and the batch holds fewer distinct rows than its size says.",
    "Sample each batch without replacement; never pad small groups with repeated rows "
    "(GroupedBatchSampler drops or rejects them instead).")
BATCH_WITHOUT_POSITIVES = Code(
    "BATCH_WITHOUT_POSITIVES", "error",
    "A batch in which no row has another row of its group: a contrastive loss over groups has "
    "no positive pair in it.",
    "Use a group-aware sampler (GroupedBatchSampler, --sampler grouped) and check that match_id "
    "really groups the captions of one image.")
ROWS_WITHOUT_POSITIVE = Code(
    "ROWS_WITHOUT_POSITIVE", "warning",
    "Rows whose group has no other row in their batch: as anchors of a multi-positive loss "
    "they have no positive.",
    "Use GroupedBatchSampler with per_group >= 2 so every row brings its positives along.")
GROUP_SIZE_IN_BATCH = Code(
    "GROUP_SIZE_IN_BATCH", "error",
    "A group appears in a batch with a number of rows other than per_group.",
    "Use GroupedBatchSampler(per_group=...), which puts exactly per_group rows of each group "
    "in a batch.")
DOC_OVER_CAP = Code(
    "DOC_OVER_CAP", "error",
    "A batch holds more than max_per_doc rows of one document, so one document dominates it.",
    "Use DiverseBatchSampler(max_per_doc=...).")
ROW_REPEATED_IN_EPOCH = Code(
    "ROW_REPEATED_IN_EPOCH", "warning",
    "A row appears in more than one batch of one epoch on one rank: the sampler draws with "
    "replacement, so some rows are seen more often than others.",
    "Use a sampler that uses each row at most once per epoch (the uncollapse samplers do).")
RANKS_OVERLAP = Code(
    "RANKS_OVERLAP", "error",
    "The same row goes to two ranks in one epoch: ranks train on duplicated data (typically "
    "padding, or each rank shuffling on its own).",
    "Give every rank its own slice of one global plan: pass rank/world_size, or initialise "
    "torch.distributed before building the sampler.")
RANK_LENGTHS_DIFFER = Code(
    "RANK_LENGTHS_DIFFER", "error",
    "Ranks get different numbers of batches in one epoch: DDP hangs at the first collective "
    "the shorter rank never reaches.",
    "Use a sampler that truncates every rank to the same number of batches.")
SAMPLER_LEN_WRONG = Code(
    "SAMPLER_LEN_WRONG", "error",
    "len(sampler) differs from the number of batches iterating it yields: schedulers, progress "
    "bars and DDP step counts built on len() are wrong.",
    "Make __len__ count exactly what __iter__ yields.")
EPOCHS_IDENTICAL = Code(
    "EPOCHS_IDENTICAL", "warning",
    "Two epochs yielded exactly the same batches: set_epoch does not reach the sampler, so "
    "every epoch repeats the first.",
    "Call set_epoch on the batch sampler itself every epoch, or use a sampler that advances "
    "its epoch after each pass.")


ROWS_NOT_PLACED = Code(
    "ROWS_NOT_PLACED", "warning",
    "Rows of the table are in no batch of any rank in an epoch: training never sees them that "
    "epoch (rows over the per-document cap, rows of groups too small for per_group, the part of "
    "a batch drop_last drops, batches left out so that ranks get equal numbers). A warning when "
    "more than 5% of the rows are left out, info below.",
    "Lower batch_size (more batches, so more rows of each document fit), raise max_per_doc, or "
    "keep the smaller last batch (drop_last=False); the finding gives the most rows any plan of "
    "that many batches can place.")

ROWS_NOT_PLACED_WARN_SHARE = 0.05
"""Share of the table an epoch may leave out before ROWS_NOT_PLACED becomes a warning."""

_BATCH = ["epoch", "rank", "batch"]


class _Keys:
    """One value per distinct combination of integer columns of one frame.

    Windows and distinct tests over one int64 are several times faster than over several
    columns, so the columns are packed into one int64 (mixed radix over their ranges) when their
    ranges allow it, else a struct of them. The ranges are read once, in one pass.
    """

    def __init__(self, data: PolarsData):
        self.names = data.lazyframe.collect_schema().names()
        columns = [c for c in ("epoch", "rank", "batch", "row", "group", "doc")
                   if c in self.names]
        bounds = data.lazyframe.select(
            *[pl.col(c).min().name.suffix(".min") for c in columns],
            *[pl.col(c).max().name.suffix(".max") for c in columns]).collect().row(0)
        self.low = {c: bounds[i] or 0 for i, c in enumerate(columns)}
        self.span = {c: (bounds[len(columns) + i] or 0) - self.low[c] + 1
                     for i, c in enumerate(columns)}

    def __call__(self, *columns: str) -> pl.Expr:
        if float(np.prod([float(self.span[c]) for c in columns])) >= 2.0 ** 62:
            return pl.struct(columns)
        key = pl.lit(0, dtype=pl.Int64)
        for column in columns:
            key = key * self.span[column] + (pl.col(column).cast(pl.Int64) - self.low[column])
        return key


def _first_of(key: pl.Expr) -> pl.Expr:
    """True on the first row of each distinct ``key``: a rule broken by a whole batch or group
    fails once, on that row, so a failure case counts the batch or group it names."""
    return key.is_first_distinct()


def _distinct_rows(key: pl.Expr) -> pl.Expr:
    """Distinct rows of each ``key`` (a batch and a group or document)."""
    return pl.col("row").n_unique().over(key)


def _repeated_across(keys: _Keys, within: list[str], across: str) -> pl.Expr:
    """True once for each row found in more than one ``across`` within one ``within`` (a row
    in two batches of an epoch, or on two ranks), repeats within one ``across`` aside."""
    row = keys(*within, "row")
    return (pl.len().over(row) > pl.len().over(keys(*within, across, "row"))) & _first_of(row)


class BatchAssignment(pa.DataFrameModel):
    """Where a sampler put each row: one row per placed row, and the batch guarantees as checks.

    Columns: ``epoch``, ``rank``, ``batch`` (the batch's position in that rank's epoch), ``row``
    (the row index into the table), and optionally ``group`` (e.g. ``match_id``, as integers) and
    ``doc`` (document id, as integers). The checks, each a polars expression:

    - ``no_duplicate_index_in_batch``: no row twice in one batch (fails on each repeat);
    - ``every_batch_has_positives``: every batch holds two distinct rows of some group (fails
      once per batch; needs ``group``);
    - ``every_row_has_a_positive``: each row's group has another row in its batch (``group``);
    - ``groups_have_per_group_rows``: each group in a batch has exactly ``per_group`` distinct
      rows (fails once per batch and group; only in ``batch_assignment_model(per_group=k)``);
    - ``docs_within_cap``: at most ``max_per_doc`` distinct rows of a document per batch (once
      per batch and document; ``batch_assignment_model(max_per_doc=m)``, needs ``doc``);
    - ``no_row_twice_in_an_epoch``: a row is in at most one batch per epoch and rank (fails
      once per repeated row);
    - ``ranks_are_disjoint``: a row goes to at most one rank per epoch (once per shared row);
    - ``rows_in_table``: ``row`` is ``>= 0`` (and ``< n_rows`` with
      ``batch_assignment_model(n_rows=n)``).

    This class has no ``per_group``/``max_per_doc``/``n_rows``: use
    :func:`batch_assignment_model` for those. ``audit_batches`` builds the frame from a sampler
    (:func:`batch_assignment_frame`) and maps each failed check to its finding code.

    Example:
        >>> frame = pl.DataFrame({"epoch": [0, 0, 0, 0], "rank": [0, 0, 0, 0],
        ...                       "batch": [0, 0, 1, 1], "row": [0, 1, 2, 2],
        ...                       "group": [7, 7, 8, 8]})
        >>> try:
        ...     batch_assignment_model(per_group=2).validate(frame, lazy=True)
        ... except pandera.errors.SchemaErrors as exc:
        ...     print(sorted(error.check.name for error in exc.schema_errors))
        ['every_batch_has_positives', 'every_row_has_a_positive', 'groups_have_per_group_rows',
         'no_duplicate_index_in_batch']
    """

    epoch: int = pa.Field(ge=0)
    rank: int = pa.Field(ge=0)
    batch: int = pa.Field(ge=0)
    row: int
    group: int | None = pa.Field(nullable=False)
    doc: int | None = pa.Field(nullable=False)

    _per_group = None
    _max_per_doc = None
    _n_rows = None

    class Config:
        name = "BatchAssignment"

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def rows_in_table(cls, data: PolarsData):
        row = pl.col("row")
        inside = row >= 0 if cls._n_rows is None else row.is_between(0, cls._n_rows - 1)
        return data.lazyframe.select(inside)

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def no_duplicate_index_in_batch(cls, data: PolarsData):
        return data.lazyframe.select(_first_of(_Keys(data)(*_BATCH, "row")))

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def every_batch_has_positives(cls, data: PolarsData):
        keys = _Keys(data)
        if "group" not in keys.names:
            return True
        # a batch with more distinct rows than distinct groups has two rows of one group
        batch = keys(*_BATCH)
        with_positive = pl.col("row").n_unique().over(batch) > pl.col("group").n_unique().over(
            batch)
        return data.lazyframe.select(with_positive | ~_first_of(batch))

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def every_row_has_a_positive(cls, data: PolarsData):
        keys = _Keys(data)
        if "group" not in keys.names:
            return True
        return data.lazyframe.select(_distinct_rows(keys(*_BATCH, "group")) >= 2)

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def groups_have_per_group_rows(cls, data: PolarsData):
        keys = _Keys(data)
        if cls._per_group is None or "group" not in keys.names:
            return True
        group = keys(*_BATCH, "group")
        return data.lazyframe.select((_distinct_rows(group) == cls._per_group)
                                     | ~_first_of(group))

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def docs_within_cap(cls, data: PolarsData):
        keys = _Keys(data)
        if cls._max_per_doc is None or "doc" not in keys.names:
            return True
        doc = keys(*_BATCH, "doc")
        return data.lazyframe.select((_distinct_rows(doc) <= cls._max_per_doc)
                                     | ~_first_of(doc))

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def no_row_twice_in_an_epoch(cls, data: PolarsData):
        keys = _Keys(data)
        if keys.span.get("batch", 1) == 1:
            return True  # one batch per epoch and rank: nowhere to repeat a row
        return data.lazyframe.select(~_repeated_across(keys, ["epoch", "rank"], "batch"))

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def ranks_are_disjoint(cls, data: PolarsData):
        keys = _Keys(data)
        if keys.span.get("rank", 1) == 1:
            return True  # a single rank cannot share rows with another
        return data.lazyframe.select(~_repeated_across(keys, ["epoch"], "rank"))


@functools.lru_cache(maxsize=64)
def batch_assignment_model(per_group: int | None = None, max_per_doc: int | None = None,
                           n_rows: int | None = None) -> type[BatchAssignment]:
    """``BatchAssignment`` with the settings of one sampler.

    Args:
        per_group: rows each group must have in a batch (``groups_have_per_group_rows``).
        max_per_doc: most rows of one document a batch may hold (``docs_within_cap``).
        n_rows: rows in the table; ``row`` must be below it (``rows_in_table``).

    Example:
        >>> model = batch_assignment_model(per_group=5)
        >>> model.validate(frame, lazy=True)  # SchemaErrors lists every broken rule at once
    """
    for name, value in (("per_group", per_group), ("max_per_doc", max_per_doc),
                        ("n_rows", n_rows)):
        if value is not None and int(value) < (0 if name == "n_rows" else 1):
            raise ValueError(f"{name} must be at least {0 if name == 'n_rows' else 1}, "
                             f"got {value}")
    return type("BatchAssignment", (BatchAssignment,), {
        "__doc__": BatchAssignment.__doc__,
        "_per_group": None if per_group is None else int(per_group),
        "_max_per_doc": None if max_per_doc is None else int(max_per_doc),
        "_n_rows": None if n_rows is None else int(n_rows)})


def batch_assignment_frame(rows: np.ndarray, batch_sizes: np.ndarray, *,
                           batch_epoch: np.ndarray | None = None,
                           batch_rank: np.ndarray | None = None,
                           batch_in_pass: np.ndarray | None = None, group=None,
                           doc=None) -> pl.DataFrame:
    """The ``BatchAssignment`` frame of flattened batches.

    Args:
        rows: the row indices of all batches, one batch after the other.
        batch_sizes: rows in each batch.
        batch_epoch, batch_rank, batch_in_pass: per batch, its epoch, rank and position in that
            rank's epoch (default: epoch 0, rank 0, batches numbered in order).
        group, doc: optional id per row of the table (integers), looked up by ``rows``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    sizes = np.asarray(batch_sizes, dtype=np.int64)
    n_batches = len(sizes)
    zeros = np.zeros(n_batches, dtype=np.int64)
    columns = {
        "epoch": np.repeat(zeros if batch_epoch is None else batch_epoch, sizes),
        "rank": np.repeat(zeros if batch_rank is None else batch_rank, sizes),
        "batch": np.repeat(np.arange(n_batches, dtype=np.int64) if batch_in_pass is None
                           else batch_in_pass, sizes),
        "row": rows,
    }
    for name, ids in (("group", group), ("doc", doc)):
        if ids is not None:
            columns[name] = np.asarray(ids, dtype=np.int64)[rows]
    return pl.DataFrame(columns)


def model_failures(model: type[BatchAssignment], frame: pl.DataFrame) -> dict:
    """``{check name: (count, failure cases)}`` of every check of ``model`` that ``frame`` fails.

    ``count`` is the number of failing rows (one per batch, group or row the rule names);
    failure cases are the first rows, at most ``MAX_EXAMPLES``.
    """
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        failures = {}
        for error in exc.schema_errors:
            if error.check is None or error.check_output is None or \
                    not isinstance(error.failure_cases, pl.DataFrame):
                raise
            count = int((~error.check_output[CHECK_OUTPUT_KEY]).sum())
            failures[error.check.name] = (count, error.failure_cases)
        return failures
    return {}

def _flatten(batches: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, batch sizes)`` of one pass over ``batches``."""
    if isinstance(batches, np.ndarray) and batches.ndim == 2:
        return (batches.astype(np.int64).reshape(-1),
                np.full(len(batches), batches.shape[1], dtype=np.int64))
    batch_list = [np.asarray(b, dtype=np.int64).reshape(-1) for b in batches]
    sizes = np.fromiter(map(len, batch_list), dtype=np.int64, count=len(batch_list))
    if not batch_list:
        return np.zeros(0, dtype=np.int64), sizes
    return np.concatenate(batch_list), sizes


def _codes(values) -> np.ndarray:
    return np.unique(np.asarray(values), return_inverse=True)[1].reshape(-1).astype(np.int64)


def _unique_pairs(a: np.ndarray, b: np.ndarray, *, return_inverse: bool = False):
    """``np.unique`` of the pairs ``(a[i], b[i])`` of non-negative ints, through one int64 key.

    Returns ``(first, second, counts)`` of the distinct pairs (sorted), plus the inverse if asked.
    """
    base = int(b.max()) + 1 if len(b) else 1
    key = a * base + b
    if return_inverse:
        keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        return keys // base, keys % base, counts, inverse.reshape(-1)
    keys, counts = np.unique(key, return_counts=True)
    return keys // base, keys % base, counts


def _summary(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": int(values.min()), "mean": round(float(values.mean()), 3),
            "max": int(values.max())}


def audit_batches(batches=None, *, ranks: Sequence | None = None, group_ids=None, doc_ids=None,
                  per_group: int | None = None, max_per_doc: int | None = None,
                  n_rows: int | None = None, epochs: int = 1,
                  target: str = "batch sampler") -> Report:
    """Replay a batch sampler and report what its batches hold.

    Args:
        batches: a batch sampler, or any iterable of batches (lists or arrays of row indices,
            or a 2-d array with one batch per row). A one-shot iterable only allows
            ``epochs=1``.
        ranks: instead of ``batches``: one batch sampler per rank, in rank order.
        group_ids: one group id per row (e.g. ``match_id``): enables the positive checks.
        doc_ids: one document id per row: enables the per-document checks.
        per_group: rows each group should have in a batch (checked when given).
        max_per_doc: most rows of one document a batch may hold (checked when given).
        n_rows: rows in the table (default: the length of ``group_ids`` or ``doc_ids``).
        epochs: epochs to replay; ``set_epoch(e)`` is called first where the sampler has it.
        target: what the report names as audited.

    Returns:
        A ``Report`` of kind ``batches``; its stats hold the measurements. The batch
        guarantees are the checks of ``batch_assignment_model(per_group, max_per_doc,
        n_rows)``, run on the replayed batches; rows an epoch leaves out are
        ``ROWS_NOT_PLACED`` (a warning above ``ROWS_NOT_PLACED_WARN_SHARE`` of the table).

    Example:
        >>> sampler = GroupedBatchSampler(match_id, batch_size=250, per_group=5)
        >>> audit_batches(sampler, group_ids=match_id, per_group=5, epochs=2).ok
        True
    """
    if (batches is None) == (ranks is None):
        raise ValueError("pass either batches (one sampler) or ranks (one sampler per rank)")
    samplers = [batches] if ranks is None else list(ranks)
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if epochs > 1 and any(iter(s) is s for s in samplers):
        raise ValueError("a one-shot iterator of batches can only be replayed for one epoch; "
                         "pass the sampler itself")
    for ids in (group_ids, doc_ids):
        if ids is not None and n_rows is None:
            n_rows = len(ids)
    world_size = len(samplers)

    findings: list[Finding] = []
    rows_parts, sizes_parts, epoch_of_batch, rank_of_batch = [], [], [], []
    len_mismatch = []
    for epoch in range(epochs):
        for rank, sampler in enumerate(samplers):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            expected = len(sampler) if hasattr(sampler, "__len__") else None
            rows, sizes = _flatten(sampler)
            if expected is not None and expected != len(sizes):
                len_mismatch.append({"epoch": epoch, "rank": rank, "len": expected,
                                     "yielded": len(sizes)})
            rows_parts.append(rows)
            sizes_parts.append(sizes)
            epoch_of_batch.append(np.full(len(sizes), epoch, dtype=np.int64))
            rank_of_batch.append(np.full(len(sizes), rank, dtype=np.int64))

    sizes = np.concatenate(sizes_parts)
    rows = np.concatenate(rows_parts)
    batch_epoch = np.concatenate(epoch_of_batch)
    batch_rank = np.concatenate(rank_of_batch)
    batch_in_pass = np.concatenate([np.arange(len(s), dtype=np.int64) for s in sizes_parts])
    if n_rows is None:
        n_rows = int(rows.max()) + 1 if len(rows) else 0

    per_pass = np.array([len(s) for s in sizes_parts]).reshape(epochs, world_size)
    stats: dict = {"epochs": epochs, "world_size": world_size, "rows": int(n_rows),
                   "batches_per_rank": per_pass[0].tolist() if world_size > 1
                   else int(per_pass[0, 0]),
                   "batch_size": _summary(sizes)}
    if len_mismatch:
        findings.append(SAMPLER_LEN_WRONG.finding(
            f"len(sampler) was not the number of batches yielded in {len(len_mismatch)} "
            f"passes", count=len(len_mismatch), examples=len_mismatch))
    empty = np.flatnonzero(per_pass.reshape(-1) == 0)
    if len(empty):
        findings.append(NO_BATCHES.finding(
            f"{len(empty)} of {per_pass.size} passes (epoch x rank) yielded no batch",
            count=len(empty),
            examples=[{"epoch": int(i // world_size), "rank": int(i % world_size)}
                      for i in empty]))
    uneven = np.flatnonzero(per_pass.min(axis=1) != per_pass.max(axis=1))
    if len(uneven):
        findings.append(RANK_LENGTHS_DIFFER.finding(
            f"ranks got different numbers of batches in {len(uneven)} epochs "
            f"(epoch {int(uneven[0])}: {per_pass[uneven[0]].tolist()})", count=len(uneven),
            examples=[{"epoch": int(e), "batches_per_rank": per_pass[e].tolist()}
                      for e in uneven]))

    in_table = bool(len(rows) == 0 or (rows.min() >= 0 and rows.max() < n_rows))
    # Ids are looked up by row: with a row outside the table only the row checks can run.
    group = _codes(group_ids) if group_ids is not None and in_table else None
    doc = _codes(doc_ids) if doc_ids is not None and in_table else None
    frame = batch_assignment_frame(rows, sizes, batch_epoch=batch_epoch, batch_rank=batch_rank,
                                   batch_in_pass=batch_in_pass, group=group, doc=doc)
    model = batch_assignment_model(per_group if group is not None else None,
                                   max_per_doc if doc is not None else None, int(n_rows))
    failures = model_failures(model, frame)
    findings += _findings(failures, frame, stats, n_rows=n_rows, per_group=per_group,
                          max_per_doc=max_per_doc, world_size=world_size,
                          group_values=None if group is None else np.asarray(group_ids),
                          doc_values=None if doc is None else np.asarray(doc_ids),
                          n_batches=len(sizes))
    if not in_table:
        return Report(target, "batches", findings, stats)

    _check_identical_epochs(findings, rows_parts, sizes_parts, epochs, world_size)
    # measurements beside the rules: numpy sorts beat polars' hashing for these
    batch = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    distinct = _unique_pairs(batch, rows)[:2]  # one entry per distinct (batch, row)
    covered = _coverage(stats, distinct, batch_epoch, n_rows, epochs)
    if len(rows):
        findings += _rows_not_placed(covered, n_rows, sizes, batch_epoch, group, doc,
                                     per_group, max_per_doc)
    if group is not None:
        _group_stats(stats, distinct, group, len(sizes))
    if doc is not None:
        _doc_stats(stats, distinct, doc)
    for sampler in samplers[:1]:
        if isinstance(getattr(sampler, "stats", None), dict):
            stats["sampler"] = dict(sampler.stats)
    return Report(target, "batches", findings, stats)


def _counted(frame: pl.DataFrame, cases: pl.DataFrame, keys: list[str], column: str,
             name: str) -> list[dict]:
    """The failure cases' ``keys``, each with the number of distinct ``column`` values the frame
    holds for them (the rows of a group in a batch, the batches of a row, ...)."""
    wanted = cases.select(keys).unique(maintain_order=True)
    counts = (frame.join(wanted, on=keys, how="semi").group_by(keys)
              .agg(pl.col(column).n_unique().alias(name)))
    return wanted.join(counts, on=keys, how="left", maintain_order="left").to_dicts()


def _findings(failures: dict, frame: pl.DataFrame, stats: dict, *, n_rows: int,
              per_group, max_per_doc, world_size: int, group_values, doc_values,
              n_batches: int) -> list:
    """The findings of the model's failed checks, and the counts ``stats`` reports."""
    def count(check: str) -> int:
        return failures.get(check, (0, None))[0]

    def cases(check: str, *columns: str) -> list[dict]:
        return failures[check][1].select(columns).to_dicts()

    findings = []
    if "rows_in_table" in failures:
        n = count("rows_in_table")
        findings.append(BATCH_INDEX_OUT_OF_RANGE.finding(
            f"{n} row indices are outside 0..{n_rows - 1}", count=n,
            examples=cases("rows_in_table", "epoch", "rank", "batch", "row")))
    stats["duplicate_indices_in_batches"] = count("no_duplicate_index_in_batch")
    if "no_duplicate_index_in_batch" in failures:
        n = count("no_duplicate_index_in_batch")
        batches = frame.filter(pl.struct(*_BATCH, "row").is_duplicated()).select(
            _BATCH).n_unique()
        findings.append(DUPLICATE_INDEX_IN_BATCH.finding(
            f"{n} repeated row indices in {batches} batches", count=n,
            examples=cases("no_duplicate_index_in_batch", "epoch", "rank", "batch", "row")))
    stats["rows_repeated_within_epoch"] = count("no_row_twice_in_an_epoch")
    if "no_row_twice_in_an_epoch" in failures:
        n = count("no_row_twice_in_an_epoch")
        findings.append(ROW_REPEATED_IN_EPOCH.finding(
            f"{n} rows appear in more than one batch of an epoch on one rank", count=n,
            examples=_counted(frame, failures["no_row_twice_in_an_epoch"][1],
                              ["epoch", "rank", "row"], "batch", "batches")))
    if world_size > 1:
        stats["rows_on_several_ranks"] = count("ranks_are_disjoint")
    if "ranks_are_disjoint" in failures:
        n = count("ranks_are_disjoint")
        findings.append(RANKS_OVERLAP.finding(
            f"{n} rows went to more than one rank in the same epoch", count=n,
            examples=_counted(frame, failures["ranks_are_disjoint"][1], ["epoch", "row"],
                              "rank", "ranks")))
    if group_values is not None:
        stats["batches_without_positives"] = count("every_batch_has_positives")
        if "every_batch_has_positives" in failures:
            n = count("every_batch_has_positives")
            findings.append(BATCH_WITHOUT_POSITIVES.finding(
                f"{n} of {n_batches} batches hold no two rows of one group", count=n,
                examples=cases("every_batch_has_positives", *_BATCH)))
        if "every_row_has_a_positive" in failures:
            n = count("every_row_has_a_positive")
            examples = [{**case, "group": group_values[case["row"]].item()} for case in
                        cases("every_row_has_a_positive", *_BATCH, "row")]
            findings.append(ROWS_WITHOUT_POSITIVE.finding(
                f"{n} of {frame.height} rows in batches have no other row of their group in "
                f"the batch", count=n, examples=examples))
        if "groups_have_per_group_rows" in failures:
            n = count("groups_have_per_group_rows")
            examples = _counted(frame, failures["groups_have_per_group_rows"][1],
                                [*_BATCH, "group"], "row", "rows_of_group")
            findings.append(GROUP_SIZE_IN_BATCH.finding(
                f"{n} times a group had other than per_group={per_group} rows in a batch",
                count=n, examples=[{k: e[k] for k in (*_BATCH, "rows_of_group")}
                                   for e in examples]))
    if doc_values is not None and max_per_doc is not None:
        stats["doc_over_cap"] = count("docs_within_cap")
        if "docs_within_cap" in failures:
            n = count("docs_within_cap")
            over = failures["docs_within_cap"][1]
            first_row = dict(zip(over["doc"].to_list(), over["row"].to_list(), strict=True))
            examples = [{**{k: e[k] for k in _BATCH}, "doc": doc_values[first_row[e["doc"]]].item(),
                         "rows": e["rows"]}
                        for e in _counted(frame, over, [*_BATCH, "doc"], "row", "rows")]
            most = frame.group_by([*_BATCH, "doc"]).agg(pl.col("row").n_unique())["row"].max()
            findings.append(DOC_OVER_CAP.finding(
                f"{n} times a batch held more than max_per_doc={max_per_doc} rows of one "
                f"document (up to {most})", count=n, examples=examples))
    return findings


def _check_identical_epochs(findings, rows_parts, sizes_parts, epochs, world_size):
    same = [(e, r) for e, r in itertools.product(range(1, epochs), range(world_size))
            if np.array_equal(rows_parts[e * world_size + r], rows_parts[(e - 1) * world_size + r])
            and np.array_equal(sizes_parts[e * world_size + r],
                               sizes_parts[(e - 1) * world_size + r])
            and len(rows_parts[e * world_size + r])]
    if same:
        findings.append(EPOCHS_IDENTICAL.finding(
            f"{len(same)} epochs repeated the previous epoch's batches exactly",
            count=len(same), examples=[{"epoch": e, "rank": r} for e, r in same]))


def _coverage(stats, distinct, batch_epoch, n_rows, epochs) -> np.ndarray:
    """Distinct rows each epoch placed on any rank."""
    batch, rows = distinct
    row_epoch = _unique_pairs(batch_epoch[batch], rows)[0]
    covered = np.bincount(row_epoch, minlength=epochs)
    stats["rows_covered_per_epoch"] = covered.tolist() if epochs > 1 else int(covered[0])
    stats["coverage"] = round(float(covered.min()) / max(n_rows, 1), 4)
    missing = n_rows - covered
    stats["rows_not_placed"] = missing.tolist() if epochs > 1 else int(missing[0])
    return covered


def _rows_not_placed(covered: np.ndarray, n_rows: int, sizes: np.ndarray,
                     batch_epoch: np.ndarray, group, doc, per_group, max_per_doc) -> list:
    """ROWS_NOT_PLACED for the epoch that leaves the most rows out, with the bound the
    documents' (or groups') sizes set on any plan of that many full batches."""
    missing = n_rows - covered
    epoch = int(np.argmax(missing))
    n = int(missing[epoch])
    if n <= 0:
        return []
    share = n / max(n_rows, 1)
    full_size = int(sizes.max())
    full = int(((batch_epoch == epoch) & (sizes == full_size)).sum())
    example = {"epoch": epoch, "rows_not_placed": n, "share": round(share, 4),
               "full_batches": full, "batch_size": full_size}
    message = (f"epoch {epoch} left {n} of {n_rows} rows ({share:.1%}) in no batch of any "
               f"rank")
    hint = None
    if doc is not None and max_per_doc is not None:
        bound = int(np.minimum(np.bincount(doc), max_per_doc * full).sum())
        example["bound"] = bound
        message += (f"; {full} full batches with at most {max_per_doc} rows of a document "
                    f"each can hold at most {bound} rows (the sum over documents of min(rows, "
                    f"{max_per_doc} x {full})): {n_rows - bound} rows are over the cap")
        hint = (f"Lower batch_size (more batches, so more rows of each large document fit) or "
                f"raise max_per_doc above {max_per_doc}; drop_last=False keeps the rows of the "
                f"last, smaller batch.")
    elif group is not None and per_group is not None:
        slots = np.minimum(np.bincount(group) // per_group, full)
        bound = int(slots.sum()) * per_group
        example["bound"] = bound
        message += (f"; {full} full batches with {per_group} rows of a group each can hold at "
                    f"most {bound} rows (per group, {per_group} x min(rows // {per_group}, "
                    f"{full})): {n_rows - bound} rows are in groups too small or too large for "
                    f"them")
        hint = (f"Lower batch_size or per_group (a group gives per_group rows to at most one "
                f"slot per batch; groups of fewer than {per_group} rows are dropped); "
                f"drop_last=False keeps the rows of the last, smaller batch.")
    if "bound" in example and n > n_rows - example["bound"]:
        message += (f", {n - (n_rows - example['bound'])} are in no full batch (the last, "
                    f"smaller batch: dropped by drop_last, or limited by the cap) or in "
                    f"batches left out so that ranks get equal numbers")
    severity = "warning" if share > ROWS_NOT_PLACED_WARN_SHARE else "info"
    return [ROWS_NOT_PLACED.finding(message, count=n, examples=[example], hint=hint,
                                    severity=severity)]


def _group_stats(stats, distinct, group, n_batches):
    batch, rows = distinct
    pair_batch, _, counts, inverse = _unique_pairs(batch, group[rows], return_inverse=True)
    positives_per_row = counts[inverse] - 1
    positives_in_batch = np.bincount(batch, weights=positives_per_row > 0, minlength=n_batches)
    stats["groups_per_batch"] = _summary(np.bincount(pair_batch, minlength=n_batches))
    stats["rows_per_group_in_batch"] = _summary(counts)
    stats["positives_per_row"] = _summary(positives_per_row)
    stats["rows_with_a_positive_per_batch"] = _summary(positives_in_batch.astype(np.int64))


def _doc_stats(stats, distinct, doc):
    batch, rows = distinct
    pair_batch, _, counts = _unique_pairs(batch, doc[rows])
    max_in_batch = np.zeros(int(batch.max()) + 1 if len(batch) else 0, dtype=np.int64)
    np.maximum.at(max_in_batch, pair_batch, counts)
    stats["max_rows_per_doc_in_batch"] = _summary(max_in_batch)
    stats["docs_per_batch"] = _summary(np.bincount(pair_batch))
