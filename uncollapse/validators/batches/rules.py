"""The guarantees of a batch sampler as rules, and the pandera model they make: ``BatchAssignment``.

The batch guarantees are checks of one pandera model, ``BatchAssignment`` (one row per placed
row: ``epoch``, ``rank``, ``batch``, ``row``, and ``group`` and/or ``doc``), each a polars
expression named after the rule it enforces; ``batch_assignment_model(per_group=...,
max_per_doc=..., n_rows=...)`` gives the model for one sampler's settings. What one frame cannot
show (``len(sampler)``, epochs identical, ranks of different lengths, rows an epoch leaves out)
are rules on the replay itself (``Replay``). ``RULES`` lists them all, in the order of their
findings; ``uncollapse.validators.batches.audit.audit_batches`` replays a sampler and runs them.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from uncollapse.report import MAX_EXAMPLES, Code
from uncollapse.validators.bridge import rules_model
from uncollapse.validators.rules import Failed, Rules

__all__ = ["BATCH", "DOC", "EPOCH", "GROUP", "RANK", "ROW", "RULES", "BatchAssignment",
           "Replay", "batch_assignment_frame", "batch_assignment_model"]

EPOCH, RANK, BATCH, ROW, GROUP, DOC = "epoch", "rank", "batch", "row", "group", "doc"
"""The columns of a ``BatchAssignment`` frame."""
_BATCH = [EPOCH, RANK, BATCH]

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


@dataclass
class Replay:
    """What an audit replayed, and the settings its rules check against.

    Attributes:
        rows_parts, sizes_parts: per pass (epoch-major, then rank), the rows of its batches one
            batch after the other, and the batch sizes; ``sizes``, ``batch_epoch``: every
            batch's size and epoch, pass after pass.
        len_mismatch: the passes whose ``len(sampler)`` was not the number of batches yielded.
        frame: the ``BatchAssignment`` frame of every pass.
        group_values, doc_values: the group and document id of each table row, where the group
            (document) rules run; ``group``, ``doc``: the same as integer codes.
        in_table: every row index is inside the table (else only the row rules can run).
        covered: per epoch, the distinct rows placed on any rank (None outside the table).
    """

    rows_parts: list[np.ndarray]
    sizes_parts: list[np.ndarray]
    len_mismatch: list[dict]
    sizes: np.ndarray
    batch_epoch: np.ndarray
    epochs: int
    world_size: int
    n_rows: int
    frame: pl.DataFrame
    per_group: int | None = None
    max_per_doc: int | None = None
    group_values: np.ndarray | None = None
    doc_values: np.ndarray | None = None
    group: np.ndarray | None = None
    doc: np.ndarray | None = None
    in_table: bool = True
    covered: np.ndarray | None = None

    def per_pass(self) -> np.ndarray:
        """[epochs, world_size] batches of each pass."""
        return np.array([len(s) for s in self.sizes_parts]).reshape(self.epochs, self.world_size)

    def counted(self, cases: pl.DataFrame, keys: list[str], column: str,
                name: str) -> list[dict]:
        """The failure cases' ``keys``, each with the number of distinct ``column`` values the
        frame holds for them (the rows of a group in a batch, the batches of a row, ...)."""
        wanted = cases.select(keys).unique(maintain_order=True)
        counts = (self.frame.join(wanted, on=keys, how="semi").group_by(keys)
                  .agg(pl.col(column).n_unique().alias(name)))
        return wanted.join(counts, on=keys, how="left", maintain_order="left").to_dicts()


RULES = Rules()
"""The batch rules, in the order their findings are listed. A rule declared with
``RULES.check`` is a dataframe check of ``BatchAssignment`` (``model``, ``data``) that fails once
per thing it names (a batch, a group in a batch, a repeated row), so its failure cases count
them; the others test the ``Replay``."""


# What one frame cannot show: the passes themselves -----------------------------------------

@RULES.rule(SAMPLER_LEN_WRONG)
def len_counts_the_batches(replay: Replay) -> Failed | None:
    """``len(sampler)`` is the number of batches a pass yields."""
    mismatch = replay.len_mismatch
    if not mismatch:
        return None
    return Failed(f"len(sampler) was not the number of batches yielded in {len(mismatch)} "
                  f"passes", count=len(mismatch), examples=mismatch)


@RULES.rule(NO_BATCHES)
def every_pass_yields_batches(replay: Replay) -> Failed | None:
    """Every pass (epoch x rank) yields a batch."""
    per_pass = replay.per_pass()
    empty = np.flatnonzero(per_pass.reshape(-1) == 0)
    if not len(empty):
        return None
    return Failed(f"{len(empty)} of {per_pass.size} passes (epoch x rank) yielded no batch",
                  count=len(empty), examples=[{EPOCH: int(i // replay.world_size),
                                               RANK: int(i % replay.world_size)}
                                              for i in empty])


@RULES.rule(RANK_LENGTHS_DIFFER)
def ranks_get_equal_batches(replay: Replay) -> Failed | None:
    """Every rank gets the same number of batches in an epoch."""
    per_pass = replay.per_pass()
    uneven = np.flatnonzero(per_pass.min(axis=1) != per_pass.max(axis=1))
    if not len(uneven):
        return None
    return Failed(f"ranks got different numbers of batches in {len(uneven)} epochs "
                  f"(epoch {int(uneven[0])}: {per_pass[uneven[0]].tolist()})", count=len(uneven),
                  examples=[{EPOCH: int(e), "batches_per_rank": per_pass[e].tolist()}
                            for e in uneven])


# The BatchAssignment checks -----------------------------------------------------------------

class _Keys:
    """One value per distinct combination of integer columns of one frame.

    Windows and distinct tests over one int64 are several times faster than over several
    columns, so the columns are packed into one int64 (mixed radix over their ranges) when their
    ranges allow it, else a struct of them. The ranges are read once, in one pass.
    """

    def __init__(self, data: PolarsData):
        self.names = data.lazyframe.collect_schema().names()
        columns = [c for c in (EPOCH, RANK, BATCH, ROW, GROUP, DOC) if c in self.names]
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
    return pl.col(ROW).n_unique().over(key)


def _repeated_across(keys: _Keys, within: list[str], across: str) -> pl.Expr:
    """True once for each row found in more than one ``across`` within one ``within`` (a row
    in two batches of an epoch, or on two ranks), repeats within one ``across`` aside."""
    row = keys(*within, ROW)
    return (pl.len().over(row) > pl.len().over(keys(*within, across, ROW))) & _first_of(row)


@RULES.check(BATCH_INDEX_OUT_OF_RANGE)
def rows_in_table(model, data: PolarsData):
    """``row`` is ``>= 0`` (and ``< n_rows`` with ``batch_assignment_model(n_rows=n)``)."""
    row = pl.col(ROW)
    inside = row >= 0 if model._n_rows is None else row.is_between(0, model._n_rows - 1)
    return data.lazyframe.select(inside)


@rows_in_table.reports
def _(failures, replay: Replay) -> Failed:
    (failure,) = failures
    return Failed(f"{failure.count} row indices are outside 0..{replay.n_rows - 1}",
                  count=failure.count, examples=failure.cases.select(*_BATCH, ROW).to_dicts())


@RULES.check(DUPLICATE_INDEX_IN_BATCH)
def no_duplicate_index_in_batch(model, data: PolarsData):
    """No row twice in one batch (fails on each repeat)."""
    return data.lazyframe.select(_first_of(_Keys(data)(*_BATCH, ROW)))


@no_duplicate_index_in_batch.reports
def _(failures, replay: Replay) -> Failed:
    (failure,) = failures
    batches = replay.frame.filter(pl.struct(*_BATCH, ROW).is_duplicated()).select(
        _BATCH).n_unique()
    return Failed(f"{failure.count} repeated row indices in {batches} batches",
                  count=failure.count, examples=failure.cases.select(*_BATCH, ROW).to_dicts())


@RULES.check(ROW_REPEATED_IN_EPOCH)
def no_row_twice_in_an_epoch(model, data: PolarsData):
    """A row is in at most one batch per epoch and rank (fails once per repeated row)."""
    keys = _Keys(data)
    if keys.span.get(BATCH, 1) == 1:
        return True  # one batch per epoch and rank: nowhere to repeat a row
    return data.lazyframe.select(~_repeated_across(keys, [EPOCH, RANK], BATCH))


@no_row_twice_in_an_epoch.reports
def _(failures, replay: Replay) -> Failed:
    (failure,) = failures
    return Failed(f"{failure.count} rows appear in more than one batch of an epoch on one rank",
                  count=failure.count,
                  examples=replay.counted(failure.cases, [EPOCH, RANK, ROW], BATCH, "batches"))


@RULES.check(RANKS_OVERLAP)
def ranks_are_disjoint(model, data: PolarsData):
    """A row goes to at most one rank per epoch (fails once per shared row)."""
    keys = _Keys(data)
    if keys.span.get(RANK, 1) == 1:
        return True  # a single rank cannot share rows with another
    return data.lazyframe.select(~_repeated_across(keys, [EPOCH], RANK))


@ranks_are_disjoint.reports
def _(failures, replay: Replay) -> Failed:
    (failure,) = failures
    return Failed(f"{failure.count} rows went to more than one rank in the same epoch",
                  count=failure.count,
                  examples=replay.counted(failure.cases, [EPOCH, ROW], RANK, "ranks"))


@RULES.check(BATCH_WITHOUT_POSITIVES)
def every_batch_has_positives(model, data: PolarsData):
    """Every batch holds two distinct rows of some group (fails once per batch; needs
    ``group``)."""
    keys = _Keys(data)
    if GROUP not in keys.names:
        return True
    # a batch with more distinct rows than distinct groups has two rows of one group
    batch = keys(*_BATCH)
    with_positive = pl.col(ROW).n_unique().over(batch) > pl.col(GROUP).n_unique().over(batch)
    return data.lazyframe.select(with_positive | ~_first_of(batch))


@every_batch_has_positives.reports
def _(failures, replay: Replay) -> Failed:
    (failure,) = failures
    return Failed(f"{failure.count} of {len(replay.sizes)} batches hold no two rows of one "
                  "group", count=failure.count, examples=failure.cases.select(_BATCH).to_dicts())


@RULES.check(ROWS_WITHOUT_POSITIVE)
def every_row_has_a_positive(model, data: PolarsData):
    """Each row's group has another row in its batch (needs ``group``)."""
    keys = _Keys(data)
    if GROUP not in keys.names:
        return True
    return data.lazyframe.select(_distinct_rows(keys(*_BATCH, GROUP)) >= 2)


@every_row_has_a_positive.reports
def _(failures, replay: Replay) -> Failed:
    (failure,) = failures
    examples = [{**case, GROUP: replay.group_values[case[ROW]].item()}
                for case in failure.cases.select(*_BATCH, ROW).to_dicts()]
    return Failed(f"{failure.count} of {replay.frame.height} rows in batches have no other row "
                  "of their group in the batch", count=failure.count, examples=examples)


@RULES.check(GROUP_SIZE_IN_BATCH)
def groups_have_per_group_rows(model, data: PolarsData):
    """Each group in a batch has exactly ``per_group`` distinct rows (fails once per batch and
    group; only in ``batch_assignment_model(per_group=k)``)."""
    keys = _Keys(data)
    if model._per_group is None or GROUP not in keys.names:
        return True
    group = keys(*_BATCH, GROUP)
    return data.lazyframe.select((_distinct_rows(group) == model._per_group)
                                 | ~_first_of(group))


@groups_have_per_group_rows.reports
def _(failures, replay: Replay) -> Failed:
    (failure,) = failures
    examples = replay.counted(failure.cases, [*_BATCH, GROUP], ROW, "rows_of_group")
    return Failed(f"{failure.count} times a group had other than per_group={replay.per_group} "
                  "rows in a batch", count=failure.count,
                  examples=[{k: e[k] for k in (*_BATCH, "rows_of_group")} for e in examples])


@RULES.check(DOC_OVER_CAP)
def docs_within_cap(model, data: PolarsData):
    """At most ``max_per_doc`` distinct rows of a document per batch (fails once per batch and
    document; ``batch_assignment_model(max_per_doc=m)``, needs ``doc``)."""
    keys = _Keys(data)
    if model._max_per_doc is None or DOC not in keys.names:
        return True
    doc = keys(*_BATCH, DOC)
    return data.lazyframe.select((_distinct_rows(doc) <= model._max_per_doc) | ~_first_of(doc))


@docs_within_cap.reports
def _(failures, replay: Replay) -> Failed:
    (failure,) = failures
    over = failure.cases
    first_row = dict(zip(over[DOC].to_list(), over[ROW].to_list(), strict=True))
    examples = [{**{k: e[k] for k in _BATCH}, DOC: replay.doc_values[first_row[e[DOC]]].item(),
                 "rows": e["rows"]} for e in replay.counted(over, [*_BATCH, DOC], ROW, "rows")]
    most = replay.frame.group_by([*_BATCH, DOC]).agg(pl.col(ROW).n_unique())[ROW].max()
    return Failed(f"{failure.count} times a batch held more than max_per_doc="
                  f"{replay.max_per_doc} rows of one document (up to {most})",
                  count=failure.count, examples=examples)


# After the frame: the epochs, and the rows they leave out --------------------------------------

@RULES.rule(EPOCHS_IDENTICAL)
def epochs_differ(replay: Replay) -> Failed | None:
    """No epoch repeats the previous epoch's batches exactly (``set_epoch`` reaches the
    sampler)."""
    if not replay.in_table:
        return None
    rows, sizes, ranks = replay.rows_parts, replay.sizes_parts, replay.world_size
    same = [(e, r) for e, r in itertools.product(range(1, replay.epochs), range(ranks))
            if np.array_equal(rows[e * ranks + r], rows[(e - 1) * ranks + r])
            and np.array_equal(sizes[e * ranks + r], sizes[(e - 1) * ranks + r])
            and len(rows[e * ranks + r])]
    if not same:
        return None
    return Failed(f"{len(same)} epochs repeated the previous epoch's batches exactly",
                  count=len(same), examples=[{EPOCH: e, RANK: r} for e, r in same])


@RULES.rule(ROWS_NOT_PLACED)
def every_row_is_placed(replay: Replay) -> Failed | None:
    """Every row of the table is in some batch of some rank, every epoch. Reported for the epoch
    that leaves the most rows out, with the bound the documents' (or groups') sizes set on any
    plan of that many full batches; a warning above ``ROWS_NOT_PLACED_WARN_SHARE``, else info."""
    if not replay.in_table or replay.frame.height == 0 or replay.covered is None:
        return None
    n_rows, sizes = replay.n_rows, replay.sizes
    missing = n_rows - replay.covered
    epoch = int(np.argmax(missing))
    n = int(missing[epoch])
    if n <= 0:
        return None
    share = n / max(n_rows, 1)
    full_size = int(sizes.max())
    full = int(((replay.batch_epoch == epoch) & (sizes == full_size)).sum())
    example = {EPOCH: epoch, "rows_not_placed": n, "share": round(share, 4),
               "full_batches": full, "batch_size": full_size}
    message = (f"epoch {epoch} left {n} of {n_rows} rows ({share:.1%}) in no batch of any "
               f"rank")
    hint = None
    per_group, max_per_doc = replay.per_group, replay.max_per_doc
    if replay.doc is not None and max_per_doc is not None:
        bound = int(np.minimum(np.bincount(replay.doc), max_per_doc * full).sum())
        example["bound"] = bound
        message += (f"; {full} full batches with at most {max_per_doc} rows of a document "
                    f"each can hold at most {bound} rows (the sum over documents of min(rows, "
                    f"{max_per_doc} x {full})): {n_rows - bound} rows are over the cap")
        hint = (f"Lower batch_size (more batches, so more rows of each large document fit) or "
                f"raise max_per_doc above {max_per_doc}; drop_last=False keeps the rows of the "
                f"last, smaller batch.")
    elif replay.group is not None and per_group is not None:
        slots = np.minimum(np.bincount(replay.group) // per_group, full)
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
    return Failed(message, count=n, examples=[example], hint=hint, severity=severity)


# The model ------------------------------------------------------------------------------------

class BatchAssignment(rules_model("BatchAssignmentRules", RULES, __name__, warnings_warn=False,
                                  n_failure_cases=MAX_EXAMPLES)):
    """Where a sampler put each row: one row per placed row, and the batch guarantees as checks.

    Columns: ``epoch``, ``rank``, ``batch`` (the batch's position in that rank's epoch), ``row``
    (the row index into the table), and optionally ``group`` (e.g. ``match_id``, as integers) and
    ``doc`` (document id, as integers). The checks, each a polars expression (``RULES``):

    - ``rows_in_table``: ``row`` is ``>= 0`` (and ``< n_rows`` with
      ``batch_assignment_model(n_rows=n)``);
    - ``no_duplicate_index_in_batch``: no row twice in one batch (fails on each repeat);
    - ``no_row_twice_in_an_epoch``: a row is in at most one batch per epoch and rank (fails
      once per repeated row);
    - ``ranks_are_disjoint``: a row goes to at most one rank per epoch (once per shared row);
    - ``every_batch_has_positives``: every batch holds two distinct rows of some group (fails
      once per batch; needs ``group``);
    - ``every_row_has_a_positive``: each row's group has another row in its batch (``group``);
    - ``groups_have_per_group_rows``: each group in a batch has exactly ``per_group`` distinct
      rows (fails once per batch and group; only in ``batch_assignment_model(per_group=k)``);
    - ``docs_within_cap``: at most ``max_per_doc`` distinct rows of a document per batch (once
      per batch and document; ``batch_assignment_model(max_per_doc=m)``, needs ``doc``).

    Every check fails the frame, the warning rules' too (a sampler is held to every guarantee;
    the audit reports ``every_row_has_a_positive`` and ``no_row_twice_in_an_epoch`` as
    warnings). This class has no ``per_group``/``max_per_doc``/``n_rows``: use
    :func:`batch_assignment_model` for those. ``audit_batches`` builds the frame from a sampler
    (:func:`batch_assignment_frame`) and reports each failed check under its finding code.

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
        EPOCH: np.repeat(zeros if batch_epoch is None else batch_epoch, sizes),
        RANK: np.repeat(zeros if batch_rank is None else batch_rank, sizes),
        BATCH: np.repeat(np.arange(n_batches, dtype=np.int64) if batch_in_pass is None
                         else batch_in_pass, sizes),
        ROW: rows,
    }
    for name, ids in ((GROUP, group), (DOC, doc)):
        if ids is not None:
            columns[name] = np.asarray(ids, dtype=np.int64)[rows]
    return pl.DataFrame(columns)
