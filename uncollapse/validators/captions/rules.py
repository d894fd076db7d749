"""The rules of a caption table, and the pandera model they make: ``CaptionTable``.

Each rule is declared once with its finding code (``RULES``): its test, run by pandera as a
dataframe check of ``CaptionTable``, and the finding it reports when it fails. The model's
fields come from ``CAPTION_SCHEMA``::

    CaptionTable.validate(frame, lazy=True)            # SchemaErrors lists every failed rule
    caption_table_model(min_group=5, max_group=7).validate(frame, lazy=True)

Rules with severity ``warning`` are checks with ``raise_warning=True``: they emit a pandera
``SchemaWarning`` and let the frame pass. ``validate_caption_frame`` runs the same model and
turns each failed rule into its finding, with its count and examples.

Speed: the checks of one ``validate`` call share one measurement of the frame
(``uncollapse.validators.captions.measure``); a check that fails then marks its rows for
pandera's failure cases.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandera.polars as pa
import polars as pl

from uncollapse.data.captions.contract import (
    CAPTION,
    IMAGE_ID,
    IMAGE_PATH,
    MATCH_ID,
    NON_NULL,
    OPTIONAL_COLUMNS,
    SOURCE_ROW,
    SPLIT,
    expected_columns,
)
from uncollapse.data.captions.table import (
    CAPTION_SCHEMA,
    PARQUET_MAGIC,
    read_caption_table,
    scan_caption_shards,
    schema_problems,
    to_caption_frame,
)
from uncollapse.data.polars_read import parquet_reading
from uncollapse.data.readable import PARQUET, check_input_file, missing
from uncollapse.data.shards import is_sharded, shard_files
from uncollapse.errors import InputError
from uncollapse.report import MAX_EXAMPLES, Code, Report
from uncollapse.validators.bridge import (
    data_checks_always,
    pandera_failures,
    rules_model,
    short_warnings,
)
from uncollapse.validators.captions.match_ids import CAPTION_TABLE_EMPTY, GROUPS_ALL_UNIQUE
from uncollapse.validators.captions.measure import (
    CONTROL_CHARACTERS,
    KEY,
    RECORD_KEY,
    ROW,
    CaptionLimits,
    CaptionMeasurements,
    collect,
    implausible_length,
    measure_on,
    row_number,
)
from uncollapse.validators.rules import Failed, Rule, Rules

__all__ = ["CaptionTable", "CaptionTableRules", "caption_table_model", "validate_caption_frame",
           "validate_caption_measurements", "validate_captions"]

NULL_VALUES = Code(
    "NULL_VALUES", "error",
    "A column that may not hold nulls (image_id, match_id, caption_idx, source_row) has nulls.",
    "Rebuild the table with `uncollapse build captions`.")
EMPTY_CAPTION = Code(
    "EMPTY_CAPTION", "error",
    "A caption is null or empty after stripping whitespace.",
    "Drop or fix the rows in the source; rebuild with `uncollapse build captions`.")
IMAGE_ID_POSITIONAL = Code(
    "IMAGE_ID_POSITIONAL", "error",
    "image_id values are row numbers or a running counter, not the source's identifiers.",
    "Rebuild the table with `uncollapse build captions`, which takes ids from the source.")
GROUP_SIZE_OUT_OF_RANGE = Code(
    "GROUP_SIZE_OUT_OF_RANGE", "warning",
    "Groups with fewer or more rows than the expected range.",
    "Check the listed groups in the source; adjust --min-group/--max-group if the sizes are "
    "legitimate (COCO has 5 to 7 captions per image).")
MATCH_ID_INCONSISTENT = Code(
    "MATCH_ID_INCONSISTENT", "error",
    "One image_id appears under several match_ids, or one match_id covers several image_ids.",
    "Derive match_id from image_id (one group per image), as `uncollapse build captions` does.")
SPLIT_LEAKAGE = Code(
    "SPLIT_LEAKAGE", "error",
    "An image appears in more than one split, so evaluation sees training images.",
    "Assign each image to exactly one split (fix the split lists of the source).")
CAPTION_DUPLICATE_IN_GROUP = Code(
    "CAPTION_DUPLICATE_IN_GROUP", "warning",
    "The same normalised caption appears twice in one group (a wasted positive).",
    "Deduplicate the captions of the group in the source.")
CAPTION_SHARED_ACROSS_GROUPS = Code(
    "CAPTION_SHARED_ACROSS_GROUPS", "warning",
    "The same normalised caption appears under different groups: InfoNCE treats each as the "
    "other's negative (a false negative).",
    "Keep them out of one batch (GroupedBatchSampler(exclude_duplicates=...)) or merge groups.")
CAPTION_CONTROL_CHARACTER = Code(
    "CAPTION_CONTROL_CHARACTER", "warning",
    "A caption holds a control character (TAB, newline, carriage return, NUL, ...): usually "
    "two records or fields of the source run together.",
    "Look at the source line of each listed row (source_row); split or clean the record and "
    "rebuild with `uncollapse build captions`.")
CAPTION_HOLDS_RECORD_KEY = Code(
    "CAPTION_HOLDS_RECORD_KEY", "error",
    "A caption contains a second record key (a Flickr token such as `1000092795.jpg#2`): two "
    "records of the source were read as one, so one caption is lost and a foreign image's "
    "words sit in this one.",
    "Fix the source line (each record on its own line) and rebuild with "
    "`uncollapse build captions`.")
CAPTION_LENGTH_IMPLAUSIBLE = Code(
    "CAPTION_LENGTH_IMPLAUSIBLE", "warning",
    "A caption is implausibly short (fewer than min_caption_chars characters, 2 by default: "
    "a single character) or long (more than max_caption_chars, 1,000 by default).",
    "Check the listed rows in the source: a truncated or merged record; adjust "
    "--min-caption-chars/--max-caption-chars if such captions are legitimate.")



@dataclass(frozen=True)
class CaptionCheck:
    """What the findings of one validation are written from: the table (scanned again only
    for the examples of failing rules, by polars' streaming engine), its name (``target``) and
    the measurements its rules shared."""

    frame: pl.LazyFrame
    target: str
    m: CaptionMeasurements

    def where(self, condition: pl.Expr, *columns, n: int = MAX_EXAMPLES) -> list[dict]:
        """The first ``n`` rows where ``condition`` holds: their row number and ``columns``."""
        return collect(self.frame.with_row_index(ROW).filter(condition).head(n)
                       .select(pl.col(ROW).cast(pl.Int64), *columns)).to_dicts()

    def rows(self, rows: pl.Series, *columns) -> list[dict]:
        """The first ``MAX_EXAMPLES`` of ``rows`` (ascending): their row number and
        ``columns``."""
        wanted = rows.head(MAX_EXAMPLES).cast(pl.Int64)
        return self.where(pl.col(ROW).cast(pl.Int64).is_in(wanted.implode()), *columns)

    def first_rows(self, n: int, *columns) -> list[dict]:
        return collect(self.frame.head(n).with_row_index(ROW)
                       .select(pl.col(ROW).cast(pl.Int64), *columns)).to_dicts()


FAILURE_CASES = 100
"""The failing rows pandera keeps per check (``SchemaErrors.failure_cases``)."""

RULES = Rules()
"""The caption rules, in the order their findings are listed. A rule declared with
``RULES.check`` takes the measurements and returns None when it holds, else the expression of
the rows that satisfy it (pandera's failure cases are the others)."""

# The contract's fields ----------------------------------------------------------------------

values_are_not_null = RULES.builtin("values_are_not_null", NULL_VALUES, "not_nullable")


@values_are_not_null.reports
def _(failures, table: CaptionCheck) -> Failed:
    nulls = table.m.null_counts()
    return Failed(f"nulls in {', '.join(f'{k} ({v})' for k, v in nulls.items())}",
                  count=sum(nulls.values()),
                  examples=table.where(pl.any_horizontal(pl.col(NON_NULL).is_null()),
                                       *NON_NULL))


@RULES.rule(CAPTION_TABLE_EMPTY)
def table_has_rows(table: CaptionCheck) -> Failed | None:
    """The table holds rows (an empty table passes every other rule, and trains nothing)."""
    if table.m.rows == 0:
        return Failed(f"{table.target} holds no caption rows", count=0)
    return None


# The rules ----------------------------------------------------------------------------------

@RULES.check(EMPTY_CAPTION)
def captions_are_not_empty(m: CaptionMeasurements) -> pl.Expr | None:
    """No caption is null or whitespace only."""
    blank = m.blank_rows()
    return None if blank.len() == 0 else ~row_number().is_in(blank.implode())


@captions_are_not_empty.reports
def _(failures, table: CaptionCheck) -> Failed:
    blank = table.m.blank_rows()
    return Failed(f"{blank.len()} empty caption(s)", count=blank.len(),
                  examples=table.rows(blank, IMAGE_ID, SOURCE_ROW))


@RULES.check(GROUPS_ALL_UNIQUE)
def groups_are_not_all_unique(m: CaptionMeasurements) -> pl.Expr | None:
    """Fewer than max_singleton_share of the groups hold one row."""
    if m.groups.height == 0 or m.singleton_share() < m.limits.max_singleton_share:
        return None
    return pl.len().over(MATCH_ID) > 1


@groups_are_not_all_unique.reports
def _(failures, table: CaptionCheck) -> Failed:
    groups = table.m.groups
    single = groups.filter(pl.col("size") == 1)[MATCH_ID]
    shown = pl.col(MATCH_ID).fill_null(-1).is_in(single.head(5).implode())
    return Failed(f"{single.len()} of {groups.height} groups ({single.len() / groups.height:.1%})"
                  " hold a single row: a contrastive batch built from this table has no "
                  "positive pairs", count=single.len(),
                  examples=table.where(shown, MATCH_ID, IMAGE_ID, CAPTION, n=5))


@RULES.check(IMAGE_ID_POSITIONAL)
def image_ids_are_not_row_numbers(m: CaptionMeasurements) -> pl.Expr | None:
    """image_id is not a counter with one number per row, nor the row number (0- or 1-based,
    or source_row) in 90% of rows."""
    why = m.positional()
    if why is None:
        return None
    if "counter" in why:
        return pl.repeat(False, pl.len())
    number = pl.col(IMAGE_ID).cast(pl.Int64, strict=False)
    return ~((number == row_number()) | (number == row_number() + 1)
             | (number == pl.col(SOURCE_ROW)))


@image_ids_are_not_row_numbers.reports
def _(failures, table: CaptionCheck) -> Failed:
    return Failed(table.m.positional(), count=table.m.rows,
                  examples=table.first_rows(5, IMAGE_ID, SOURCE_ROW))


@RULES.check(IMAGE_ID_POSITIONAL, severity="warning")
def image_ids_are_not_an_image_counter(m: CaptionMeasurements) -> pl.Expr | None:
    """image_id is not 0,0,0,0,0,1,1,...: such ids group correctly but name no image of the
    source."""
    if m.positional() is not None or not m.per_image_counter():
        return None
    return pl.repeat(False, pl.len())


@image_ids_are_not_an_image_counter.reports
def _(failures, table: CaptionCheck) -> Failed:
    low, high = table.m.counts["number_min"], table.m.counts["number_max"]
    return Failed(f"image_id runs from {low} to {high} without a gap, one number per image: a "
                  "counter, not the source's identifiers (file name stems, COCO ids)",
                  count=table.m.n_images, examples=table.first_rows(5, IMAGE_ID, CAPTION))


@RULES.check(GROUP_SIZE_OUT_OF_RANGE)
def groups_have_expected_size(m: CaptionMeasurements) -> pl.Expr | None:
    """Every group has min_group..max_group rows."""
    bad = m.groups_out_of_range()
    if bad.height == 0:
        return None
    return ~pl.col(MATCH_ID).fill_null(-1).is_in(bad[MATCH_ID].implode())


@groups_have_expected_size.reports
def _(failures, table: CaptionCheck) -> Failed:
    bad = table.m.groups_out_of_range()
    histogram = dict(bad.group_by("size").len().sort("size").iter_rows())
    shown = bad.select(MATCH_ID, "size").head(10)
    # The image id traces a group back to the source; looked up for the shown groups only.
    match_id = pl.col(MATCH_ID).fill_null(-1)
    image_of = collect(table.frame.filter(match_id.is_in(shown[MATCH_ID].implode()))
                       .group_by(match_id).agg(pl.col(IMAGE_ID).first()))
    examples = shown.join(image_of, on=MATCH_ID, how="left", maintain_order="left")
    return Failed(f"{bad.height} group(s) outside the expected size "
                  f"{table.m.limits.group_range()} (sizes: {histogram})", count=bad.height,
                  examples=examples.select(MATCH_ID, IMAGE_ID, "size").to_dicts())


@RULES.check(MATCH_ID_INCONSISTENT)
def one_match_id_per_image(m: CaptionMeasurements) -> pl.Expr | None:
    """image_id and match_id map one to one."""
    if m.one_to_one() or m.inconsistent()[2] == 0:
        return None
    return ((pl.col(MATCH_ID).n_unique().over(IMAGE_ID) == 1)
            & (pl.col(IMAGE_ID).n_unique().over(MATCH_ID) == 1))


@one_match_id_per_image.reports
def _(failures, table: CaptionCheck) -> Failed:
    per_image, per_group, count = table.m.inconsistent()
    return Failed(f"{per_image.height} image_id(s) under several match_ids, {per_group.height} "
                  "match_id(s) covering several image_ids", count=count,
                  examples=per_image.head(5).to_dicts() + per_group.head(5).with_columns(
                      pl.col("image_ids").list.head(5)).to_dicts())


@RULES.check(SPLIT_LEAKAGE)
def no_image_in_two_splits(m: CaptionMeasurements) -> pl.Expr | None:
    """Every image sits in one split (null splits are ignored)."""
    if (m.one_to_one() and not m.groups["splits_differ"].any()) or m.leaked().height == 0:
        return None
    return pl.col(SPLIT).drop_nulls().n_unique().over(IMAGE_ID) <= 1


@no_image_in_two_splits.reports
def _(failures, table: CaptionCheck) -> Failed:
    leaked = table.m.leaked()
    return Failed(f"{leaked.height} image(s) appear in more than one split", count=leaked.height,
                  examples=leaked.head(10).to_dicts())


@RULES.check(CAPTION_DUPLICATE_IN_GROUP)
def no_duplicate_caption_in_group(m: CaptionMeasurements) -> pl.Expr | None:
    """No normalised caption twice in one group."""
    repeated = m.repeated_in_group()
    return None if repeated.height == 0 else ~row_number().is_in(repeated[ROW].implode())


@no_duplicate_caption_in_group.reports
def _(failures, table: CaptionCheck) -> Failed:
    in_group = table.m.repeated_in_group()
    extra = in_group.height - in_group.select(pl.struct(KEY, MATCH_ID).n_unique()).item()
    return Failed(f"{extra} caption(s) repeat another caption of the same group", count=extra,
                  examples=table.rows(in_group[ROW], MATCH_ID, CAPTION))


@RULES.check(CAPTION_SHARED_ACROSS_GROUPS)
def no_caption_shared_across_groups(m: CaptionMeasurements) -> pl.Expr | None:
    """A normalised caption belongs to one group only."""
    shared = m.shared_keys()
    if shared.height == 0:
        return None
    rows = m.repeated.filter(pl.col(KEY).is_in(shared[KEY].implode()))[ROW]
    return ~row_number().is_in(rows.implode())


@no_caption_shared_across_groups.reports
def _(failures, table: CaptionCheck) -> Failed:
    shared = table.m.shared_keys()
    texts = [row[CAPTION] for row in table.rows(shared[ROW].head(10), CAPTION)]
    examples = [{CAPTION: text, "match_ids": ids[:5]} for text, ids in
                zip(texts, shared["match_ids"].head(10).to_list(), strict=True)]
    return Failed(f"{shared.height} normalised caption(s) occur under more than one group: "
                  "false negatives for InfoNCE", count=shared.height, examples=examples)


@RULES.check(CAPTION_CONTROL_CHARACTER)
def captions_have_no_control_characters(m: CaptionMeasurements) -> pl.Expr | None:
    """No TAB, newline or other control character."""
    if m.counts["control"] == 0:
        return None
    return ~pl.col(CAPTION).str.contains_any(CONTROL_CHARACTERS).fill_null(False)


@captions_have_no_control_characters.reports
def _(failures, table: CaptionCheck) -> Failed:
    count = table.m.counts["control"]
    examples = table.where(pl.col(CAPTION).str.contains_any(CONTROL_CHARACTERS).fill_null(False),
                           IMAGE_ID, SOURCE_ROW, CAPTION)
    for example in examples:
        example["characters"] = sorted({f"U+{ord(c):04X}" for c in example[CAPTION]
                                        if ord(c) < 32 or ord(c) == 127})
    return Failed(f"{count} caption(s) hold a control character (TAB, newline, ...)",
                  count=count, examples=examples)


@RULES.check(CAPTION_HOLDS_RECORD_KEY)
def captions_hold_no_record_key(m: CaptionMeasurements) -> pl.Expr | None:
    """No caption holds a second record key (`name.jpg#2`)."""
    if m.counts["record_key"] == 0:
        return None
    return ~pl.col(CAPTION).str.contains(RECORD_KEY).fill_null(False)


@captions_hold_no_record_key.reports
def _(failures, table: CaptionCheck) -> Failed:
    count = table.m.counts["record_key"]
    examples = table.where(pl.col(CAPTION).str.contains(RECORD_KEY).fill_null(False),
                           IMAGE_ID, SOURCE_ROW, CAPTION)
    for example in examples:
        example["record_key"] = (pl.Series([example[CAPTION]])
                                 .str.extract(f"({RECORD_KEY})").item())
    return Failed(f"{count} caption(s) hold a second record key (two records read as one)",
                  count=count, examples=examples)


@RULES.check(CAPTION_LENGTH_IMPLAUSIBLE)
def captions_have_plausible_length(m: CaptionMeasurements) -> pl.Expr | None:
    """min_caption_chars..max_caption_chars characters (blank captions are EMPTY_CAPTION's)."""
    if m.counts["too_short"] + m.counts["too_long"] == 0:
        return None
    return ~implausible_length(m.limits)


@captions_have_plausible_length.reports
def _(failures, table: CaptionCheck) -> Failed:
    limits, counts = table.m.limits, table.m.counts
    examples = table.where(implausible_length(limits), IMAGE_ID, SOURCE_ROW,
                           pl.col(CAPTION).str.head(80),
                           pl.col(CAPTION).str.len_chars().alias("length"), n=10)
    return Failed(f"{counts['too_short']} caption(s) shorter than {limits.min_caption_chars} "
                  f"characters, {counts['too_long']} longer than {limits.max_caption_chars}",
                  count=counts["too_short"] + counts["too_long"], examples=examples)


# The model ------------------------------------------------------------------------------------

class Measure:
    """The measurements of the frame one validation checks, taken by the first rule that asks
    and shared by the others (pandera hands every check the same frame)."""

    def __init__(self, limits: CaptionLimits, taken: CaptionMeasurements | None = None, *,
                 frame: pl.DataFrame | None = None):
        self.limits = limits
        self.taken = taken
        self.frame = frame  # the table in memory, where it is: measured without a scan

    def __call__(self, frame: pl.LazyFrame) -> CaptionMeasurements:
        if self.taken is None:
            self.taken = CaptionMeasurements.of(
                self.frame if self.frame is not None else frame, self.limits)
        return self.taken


def _outcome(rule: Rule, measure, data) -> bool | pl.LazyFrame:
    """What a rule's check returns to pandera: True, or (failing) a per-row mask of the rows
    that satisfy the rule (pandera cannot report a scalar False beside row failures)."""
    rows_ok = rule.test(measure(data.lazyframe))
    return True if rows_ok is None else data.lazyframe.select(rows_ok.fill_null(False)
                                                              .alias(rule.name))


def _check(rule: Rule):
    """The rule as a method of the model; called by itself, it measures the frame itself."""
    def check(model, data) -> bool | pl.LazyFrame:
        return _outcome(rule, lambda frame: CaptionMeasurements.of(frame, model._limits), data)
    return check


def measured_schema(model: type[CaptionTableRules], measure: Measure) -> pa.DataFrameSchema:
    """The schema of ``model`` whose rules measure the frame once, through ``measure``."""
    schema = copy.copy(model.to_schema())
    # pandera collects a failing check's rows whole unless told otherwise: on a table of
    # shards larger than memory that would be the table; the findings count from the masks
    schema.checks = [pa.Check(functools.partial(_outcome, rule, measure), name=rule.name,
                              raise_warning=rule.severity == "warning",
                              description=rule.__doc__, n_failure_cases=FAILURE_CASES)
                     for rule in RULES if rule.test is not None and rule.pandera]
    return schema


class CaptionTableRules(rules_model("CaptionTableChecks", RULES, __name__, adapt=_check)):
    """The rules of a caption table (dataframe-level checks); ``CaptionTable`` adds the fields.

    Every check measures the frame (once per ``validate`` call, shared by all the checks) and,
    when it fails, returns the mask of the rows that satisfy it, so pandera's failure cases are
    the offending rows.
    """

    _limits: ClassVar[CaptionLimits] = CaptionLimits()

    class Config:
        name = "CaptionTable"
        strict = False
        coerce = False

    @classmethod
    def validate(cls, check_obj, *args, **kwargs):
        """pandera's validation, with the frame measured once for all the checks.

        A LazyFrame (a scan of Parquet shards) is checked in full too, schema and data, by
        polars' streaming engine: pandera alone would check only its schema and let a broken
        table pass (a check that cannot run never counts as a pass). A failed warning rule is a
        one-line SchemaWarning naming the rule and its code, not pandera's, which holds every
        failure case.
        """
        measure = Measure(cls._limits, frame=check_obj if isinstance(check_obj, pl.DataFrame)
                          else None)
        with data_checks_always(), short_warnings(
                "CaptionTable", RULES, "validate_caption_frame(frame) gives its count, rows and "
                "fix"):
            return measured_schema(cls, measure).validate(check_obj, *args, **kwargs)


def _contract_model(name: str, rules: type[CaptionTableRules]) -> type[CaptionTableRules]:
    """A model class with one field per ``CAPTION_SCHEMA`` column on top of ``rules``."""
    fields = {column: pa.Field(nullable=column not in NON_NULL,
                               required=column not in OPTIONAL_COLUMNS)
              for column in CAPTION_SCHEMA}
    return type(name, (rules,), {
        "__annotations__": dict(CAPTION_SCHEMA), **fields, "__module__": __name__,
        "__doc__": CAPTION_TABLE_DOC})


CAPTION_TABLE_DOC = """The caption table contract and its rules, as a pandera (polars) model.

Fields: one per column of ``CAPTION_SCHEMA`` (image_id, match_id, caption_idx and source_row
may not hold nulls; image_path may be absent). Checks: every rule of `validate captions`, one
method each, named after the rule. Thresholds: ``caption_table_model(...)``.

Example:
    >>> CaptionTable.validate(frame, lazy=True)   # raises SchemaErrors listing every failure
"""

CaptionTable = _contract_model("CaptionTable", CaptionTableRules)


def caption_table_model(min_group: int = 2, max_group: int | None = None, *,
                        max_singleton_share: float = 0.9, min_caption_chars: int = 2,
                        max_caption_chars: int = 1000,
                        group_size: int | None = None) -> type[CaptionTable]:
    """``CaptionTable`` with other thresholds.

    Args:
        min_group, max_group: the accepted group sizes (``group_size`` sets both).
        max_singleton_share: GROUPS_ALL_UNIQUE when at least this share of groups has one row.
        min_caption_chars, max_caption_chars: captions outside this length (in characters,
            surrounding whitespace ignored for the minimum) are implausible.

    Example:
        >>> model = caption_table_model(min_group=5, max_group=7)
        >>> model.validate(frame, lazy=True)
    """
    if group_size is not None:
        min_group = max_group = group_size
    limits = CaptionLimits(min_group=min_group, max_group=max_group,
                           max_singleton_share=max_singleton_share,
                           min_caption_chars=min_caption_chars,
                           max_caption_chars=max_caption_chars)
    return _model_with(limits)


@functools.cache
def _model_with(limits: CaptionLimits) -> type[CaptionTable]:
    """One class per set of thresholds (pandera keeps a schema per class)."""
    if limits == CaptionTable._limits:
        return CaptionTable
    return type("CaptionTable", (CaptionTable,), {"_limits": limits, "__module__": __name__})


# Validation: the model's failures as findings -------------------------------------------------

def validate_caption_frame(frame, target: str = "<table>", *, min_group: int = 2,
                           max_group: int | None = None, max_singleton_share: float = 0.9,
                           min_caption_chars: int = 2, max_caption_chars: int = 1000,
                           coerce: bool = False, partitions: list[pl.LazyFrame] | None = None,
                           measure=None) -> Report:
    """Run ``CaptionTable`` (every check) on a table; failures become findings.

    ``frame`` is a table in memory, or a LazyFrame (a scan of Parquet shards larger than
    memory), measured and checked by polars' streaming engine; ``partitions`` (the scans of
    its shards, in row order) have it measured a shard at a time, in less memory;
    ``measure(frame, limits)`` measures it elsewhere (an engine's ``measure_on``).

    Args:
        frame: a polars DataFrame or LazyFrame, or a ``datasets.Dataset`` (always read with
            ``to_caption_frame``: ``load_dataset`` picks its own dtypes).
        coerce: convert a frame of another library's dtypes (an Int64 ``image_id``, an int64
            ``caption_idx``) to the contract's first, where no value changes
            (``uncollapse.data.captions.table.to_caption_frame``).

    Raises:
        InputError: a column is missing or has another dtype than the contract's (every
            mismatch named, with the expected columns), or, coercing, a value does not fit.

    Example:
        >>> from datasets import load_dataset
        >>> report = validate_caption_frame(load_dataset("csv", data_files="c.csv")["train"])
    """
    if coerce or not isinstance(frame, (pl.DataFrame, pl.LazyFrame)):
        frame = to_caption_frame(frame, name=target)
    with parquet_reading(target):
        schema = frame.collect_schema()
    if problems := schema_problems(schema):
        raise InputError(target, "does not match the caption table contract: "
                         f"{'; '.join(problems)}. Expected columns {expected_columns()}; "
                         "coerce=True converts other integer widths and integer image ids")
    limits = caption_table_model(min_group, max_group, max_singleton_share=max_singleton_share,
                                 min_caption_chars=min_caption_chars,
                                 max_caption_chars=max_caption_chars)._limits
    with parquet_reading(target):
        if measure is not None:
            measured = measure(frame, limits)
        elif partitions is None:
            measured = CaptionMeasurements.of(frame, limits)
        else:
            measured = CaptionMeasurements.of_partitions(partitions, frame, limits)
        return validate_caption_measurements(
            measured, target, frame=frame if isinstance(frame, pl.DataFrame) else None)


def validate_caption_measurements(m: CaptionMeasurements, target: str, *,
                                  frame: pl.DataFrame | None = None) -> Report:
    """The findings of ``validate captions`` on a measured table: the pandera model
    ``CaptionTable`` checks ``m.frame`` (every check: its schema and its data) with the
    measurements taken, and each failed rule becomes its finding.

    Args:
        m: the table's measurements (``CaptionMeasurements.of``, or merged partials).
        target: the table's name in the report.
        frame: the table, where it is in memory (else ``m.frame`` is scanned).
    """
    model = _model_with(m.limits)
    failures = pandera_failures(measured_schema(model, Measure(m.limits, m)),
                                frame if frame is not None else m.frame)
    if unexpected := set(failures) - RULES.check_names():
        # a dtype or column problem schema_problems did not foresee
        raise InputError(target, "does not match the caption table contract: "
                                 f"{', '.join(sorted(unexpected))} failed")
    findings = RULES.findings(failures, CaptionCheck(m.frame, target, m))
    sizes = m.groups["size"]
    stats = {"rows": m.rows, "images": m.n_images, "groups": m.groups.height,
             "group_size_min": int(sizes.min()) if sizes.len() else 0,
             "group_size_max": int(sizes.max()) if sizes.len() else 0,
             "singleton_groups": int((sizes == 1).sum())}
    return Report(target=target, kind="captions", findings=findings, stats=stats)


def validate_captions(path: str | Path, *, min_group: int = 2, max_group: int | None = None,
                      max_singleton_share: float = 0.9, min_caption_chars: int = 2,
                      max_caption_chars: int = 1000, engine=None) -> Report:
    """Validate a caption table: a file (Parquet or CSV; ``"-"`` reads standard input), or a
    folder or glob of Parquet shards, checked by polars' streaming engine in bounded memory
    (a table larger than memory); rows are numbered across the shards in name order.

    ``engine``: where the table is measured (``uncollapse.engines.ray.RayEngine``: Ray tasks
    read its rows, Ray Data groups them by a stable hash of ``match_id`` and runs
    ``check_captions_partition`` on each partition); by default in this process. The report
    is the same either way.

    Example:
        >>> report = validate_captions("captions.parquet", min_group=5, max_group=7)
        >>> report = validate_captions("captions/")    # part-00000.parquet, ...
        >>> report.ok, report.codes()
    """
    # image_path is part of the contract but no rule reads its values: skip its bytes
    columns = [c for c in CAPTION_SCHEMA if c != IMAGE_PATH]
    target = "<stdin>" if str(path) == "-" else str(path)
    partitions = measure = None
    if str(path) != "-" and is_sharded(path):
        frame = scan_caption_shards(path, columns=columns)
        files = shard_files(path)
        partitions = [scan_caption_shards(shard, columns=columns) for shard in files]
    elif engine is not None:
        if str(path) == "-" or not _is_parquet(Path(path)):
            raise InputError(path, "another engine reads Parquet caption tables from files "
                                   "its workers can read (each reads its own rows); write the "
                                   "table as Parquet, or use the local engine")
        frame, files = scan_caption_shards(path, columns=columns), [Path(path)]
    else:
        if str(path) != "-" and not os.path.lexists(path):
            raise missing(path, "a regular file or directory")  # a folder of shards is read too
        if str(path) != "-" and _is_parquet_file(Path(path)):
            # one Parquet file: scanned, and measured a slice of row groups at a time
            frame = scan_caption_shards(path, columns=columns)
            measure = functools.partial(_measure_parquet, path)
        else:
            frame = read_caption_table(path, columns=columns)
    if engine is not None:
        measure = functools.partial(measure_on, engine, files, columns)
    return validate_caption_frame(frame, target, min_group=min_group, max_group=max_group,
                                  max_singleton_share=max_singleton_share,
                                  min_caption_chars=min_caption_chars,
                                  max_caption_chars=max_caption_chars, partitions=partitions,
                                  measure=measure)


def _is_parquet_file(path: Path) -> bool:
    check_input_file(path, "a caption table (Parquet or CSV)",
                     "build one with `uncollapse build captions`", accept=(PARQUET,))
    return _is_parquet(path)


def _measure_parquet(path, frame: pl.LazyFrame, limits: CaptionLimits) -> CaptionMeasurements:
    return CaptionMeasurements.of_parquet(path, frame, limits)


def _is_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == PARQUET_MAGIC
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
