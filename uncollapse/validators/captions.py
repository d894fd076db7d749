"""The caption table as a pandera model: its fields are the contract, its checks are the rules.

``CaptionTable`` is a ``pandera.polars.DataFrameModel`` whose fields come from
``CAPTION_SCHEMA`` and whose dataframe-level checks are every rule of
``uncollapse validate captions``, written as polars expressions::

    CaptionTable.validate(frame, lazy=True)            # SchemaErrors lists every failed rule
    caption_table_model(min_group=5, max_group=7).validate(frame, lazy=True)

Rules with severity ``warning`` are checks with ``raise_warning=True``: they emit a pandera
``SchemaWarning`` and let the frame pass. ``validate_caption_frame`` runs the same model and
turns each failed check into a finding code with its count and examples.

Speed: the checks share one measurement of the frame (per-row flags and hashes in one parallel
pass, per-group aggregates once, repeated captions found by one hash grouping), made once per
``validate`` call; a check that fails then marks its rows for pandera's failure cases.
"""

from __future__ import annotations

import functools
import warnings
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors, SchemaWarning

from uncollapse.data.captions.contract import NON_NULL, OPTIONAL_COLUMNS, expected_columns
from uncollapse.data.captions.table import CAPTION_SCHEMA, read_caption_table, schema_problems
from uncollapse.errors import InputError, ToolError
from uncollapse.report import Code, Finding, Report
from uncollapse.validators.match_ids import CAPTION_TABLE_EMPTY, GROUPS_ALL_UNIQUE

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
EMPTY_CAPTION = Code(
    "EMPTY_CAPTION", "error",
    "A caption is null or empty after stripping whitespace.",
    "Drop or fix the rows in the source; rebuild with `uncollapse build captions`.")
NULL_VALUES = Code(
    "NULL_VALUES", "error",
    "A column that may not hold nulls (image_id, match_id, caption_idx, source_row) has nulls.",
    "Rebuild the table with `uncollapse build captions`.")
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

PUNCTUATION_AND_SPACE = ".,;:!?'\"()[]{}-_ \t\r\n"
CONTROL_CHARACTERS = [chr(code) for code in range(32)] + ["\x7f"]
"""The ASCII control characters, TAB and newline included (a caption is one line of text)."""
RECORD_KEY = r"(?i)[^\s#]+\.(?:jpe?g|png|gif|bmp|webp)#\d+"
"""A Flickr-style record key, ``<image file>#<caption number>``."""
RECORD_KEY_MARK = "#"
"""A literal every record key contains: the regular expression runs only where it occurs."""


def normalised_caption(caption: pl.Expr) -> pl.Expr:
    """Lower case, surrounding punctuation and whitespace ignored: 'A dog.' == 'a dog'.

    Plain string operations rather than a regular expression: this runs on every row of
    tables with tens of millions of captions.
    """
    return caption.str.to_lowercase().str.strip_chars(PUNCTUATION_AND_SPACE)


@dataclass(frozen=True)
class CaptionLimits:
    """The thresholds of the rules (see ``caption_table_model``)."""

    min_group: int = 2
    max_group: int | None = None
    max_singleton_share: float = 0.9
    min_caption_chars: int = 2
    max_caption_chars: int = 1000

    def __post_init__(self):
        if self.min_group < 1:
            raise ToolError(f"min_group must be >= 1, got {self.min_group}")
        if self.max_group is not None and self.max_group < self.min_group:
            raise ToolError(f"max_group ({self.max_group}) must be >= min_group "
                            f"({self.min_group})")
        if not 0 < self.max_singleton_share <= 1:
            raise ToolError("max_singleton_share must be in (0, 1], got "
                            f"{self.max_singleton_share}")
        if self.min_caption_chars < 1:
            raise ToolError(f"min_caption_chars must be >= 1, got {self.min_caption_chars}")
        if self.max_caption_chars < self.min_caption_chars:
            raise ToolError(f"max_caption_chars ({self.max_caption_chars}) must be >= "
                            f"min_caption_chars ({self.min_caption_chars})")

    def group_range(self) -> str:
        return (f"{self.min_group}..{self.max_group}" if self.max_group is not None
                else f">= {self.min_group}")


# Measuring a frame once for all the checks ----------------------------------------------------

def _group_stats(lean: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """One row per match_id (size, whether its images or its non-null splits differ), and each
    group's first image hash.

    Built tables are sorted by match_id: their groups are runs, reduced with numpy segment
    operations instead of a hash grouping.
    """
    match_id = lean.get_column("match_id")
    if not match_id.is_sorted() or lean.height == 0:
        groups = (lean.group_by("match_id").agg(
            size=pl.len(),
            images_differ=pl.col("image").min() != pl.col("image").max(),
            splits_differ=(pl.col("split").min() != pl.col("split").max()).fill_null(False),
            image=pl.col("image").first()).sort("match_id"))
        return groups.drop("image"), groups.get_column("image")
    ids = match_id.to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    image = lean.get_column("image").to_numpy()
    split = lean.get_column("split")
    big = np.iinfo(np.uint64).max
    groups = pl.DataFrame({
        "match_id": ids[starts],
        "size": np.diff(np.r_[starts, len(ids)]),
        "images_differ": np.minimum.reduceat(image, starts) != np.maximum.reduceat(image, starts),
        "splits_differ": np.minimum.reduceat(split.fill_null(big).to_numpy(), starts)
        < np.maximum.reduceat(split.fill_null(0).to_numpy(), starts),
    }, schema_overrides={"size": pl.UInt32})
    return groups, pl.Series(image[starts])


def _row_number() -> pl.Expr:
    return pl.int_range(pl.len(), dtype=pl.Int64)


def _split_code() -> pl.Expr:
    """The split as a number (a hash), null where the split is null."""
    return pl.when(pl.col("split").is_not_null()).then(pl.col("split").hash())


@dataclass
class CaptionMeasurements:
    """What the checks of one frame share: per-row hashes, per-group aggregates and counts.

    ``lean`` holds one row per caption (``match_id``, image and normalised-caption hashes,
    split code); ``groups`` one row per ``match_id`` (size, whether its images or
    splits differ); ``repeated`` the rows whose normalised caption occurs more than once
    (usually a small share), with their row number.
    """

    limits: CaptionLimits
    lean: pl.DataFrame
    counts: dict
    groups: pl.DataFrame
    repeated: pl.DataFrame
    n_images: int
    cache: dict = field(default_factory=dict)

    @classmethod
    def of(cls, frame: pl.LazyFrame, limits: CaptionLimits) -> CaptionMeasurements:
        caption = pl.col("caption")
        # Cheap passes pick the few candidate rows; the exact tests run on those alone: one
        # scan for control characters and "#", byte lengths (a character is 1 to 4 bytes).
        flagged = caption.filter(pl.col("control_or_mark"))
        size = caption.str.len_bytes()
        number = pl.col("image_number")
        lean_plan = frame.select(
            match_id=pl.col("match_id").fill_null(-1),
            image=pl.col("image_id").hash(),
            split=_split_code(),
            key=normalised_caption(caption).hash(),
        )
        counts_plan = frame.with_columns(
            image_number=pl.col("image_id").cast(pl.Int64, strict=False),
            control_or_mark=caption.str.contains_any(CONTROL_CHARACTERS + [RECORD_KEY_MARK]),
        ).select(
            rows=pl.len(),
            **{f"nulls_{c}": pl.col(c).null_count() for c in NON_NULL},
            control=flagged.str.contains_any(CONTROL_CHARACTERS).sum(),
            record_key=flagged.str.contains(RECORD_KEY).sum(),
            too_short=caption.filter(size < 4 * limits.min_caption_chars)
            .str.strip_chars().str.len_chars().is_between(1, limits.min_caption_chars - 1).sum(),
            too_long=(caption.filter(size > limits.max_caption_chars).str.len_chars()
                      > limits.max_caption_chars).sum(),
            number_nulls=number.null_count(),
            number_min=number.min(),
            number_max=number.max(),
            number_is_row=((number - _row_number()).is_between(0, 1)
                           | (number == pl.col("source_row"))).mean(),
        )
        lean, counts = pl.collect_all([lean_plan, counts_plan])
        groups, group_image = _group_stats(lean)
        # one image per group: the images are the groups' images (2M values, not 10M rows)
        n_images = (group_image.n_unique() if not groups["images_differ"].any()
                    else lean.get_column("image").n_unique())
        # equal keys are neighbours once sorted: cheaper than a hash grouping of 10M keys
        keys = lean.get_column("key").sort()
        repeated_keys = keys.filter(keys == keys.shift(1)).unique()
        repeated = (lean.with_row_index("row")
                    .filter(pl.col("key").is_in(repeated_keys.implode())))
        return cls(limits=limits, lean=lean, counts=counts.row(0, named=True), groups=groups,
                   repeated=repeated, n_images=int(n_images))

    def once(self, name: str, compute):
        if name not in self.cache:
            self.cache[name] = compute()
        return self.cache[name]

    # The measured outcome of the rules, each computed once, on first use.

    def singleton_share(self) -> float:
        n_groups = self.groups.height
        return float((self.groups["size"] == 1).sum()) / n_groups if n_groups else 0.0

    def groups_out_of_range(self) -> pl.DataFrame:
        size = pl.col("size")
        too_big = (size > self.limits.max_group if self.limits.max_group is not None
                   else pl.lit(False))
        return self.once("out_of_range", lambda: self.groups.filter(
            (size < self.limits.min_group) | too_big))

    def one_to_one(self) -> bool:
        """image_id -> match_id is one-to-one (the fast path of two rules)."""
        return not self.groups["images_differ"].any() and self.n_images == self.groups.height

    def blank_rows(self, frame: pl.LazyFrame) -> pl.Series:
        """Rows whose caption is null or whitespace; punctuation alone ("?") is a caption."""
        def compute():
            empty = pl.DataFrame({"caption": ["", None]}, schema={"caption": pl.String}).select(
                normalised_caption(pl.col("caption")).hash()).to_series()
            # a hash collision only adds a candidate: the text itself decides below
            candidates = self.lean.get_column("key").is_in(empty.implode()).arg_true()
            if candidates.len() == 0:
                return candidates
            text = (frame.select("caption").collect().get_column("caption").gather(candidates))
            return candidates.filter(text.str.strip_chars().fill_null("") == "")
        return self.once("blank", compute)

    def repeated_in_group(self) -> pl.DataFrame:
        return self.once("in_group", lambda: self.repeated.filter(
            pl.len().over("key", "match_id") > 1))

    def shared_keys(self) -> pl.DataFrame:
        return self.once("shared", lambda: (
            self.repeated.group_by("key")
            .agg(match_ids=pl.col("match_id").unique().sort(), row=pl.col("row").min())
            .filter(pl.col("match_ids").list.len() > 1).sort("row")))


_RUN: ContextVar[dict | None] = ContextVar("caption_table_run", default=None)


def measure(model: type[CaptionTable], frame: pl.LazyFrame) -> CaptionMeasurements:
    """The measurements of ``frame``, made once per ``validate`` call and shared by its checks.

    pandera hands every dataframe check the same LazyFrame within one call, so the frame's
    identity is the key; outside a ``CaptionTable.validate`` call nothing is kept.
    """
    run = _RUN.get()
    if run is not None and run.get("frame") is frame and run["model"] is model:
        return run["measurements"]
    measurements = CaptionMeasurements.of(frame, model._limits)
    if run is not None:
        run.update(frame=frame, model=model, measurements=measurements)
    return measurements


def _record(check: str, passed: bool) -> None:
    run = _RUN.get()
    if run is not None:
        run.setdefault("failed", set())
        if not passed:
            run["failed"].add(check)


def _outcome(check: str, passed: bool, frame: pl.LazyFrame, rows_ok: pl.Expr):
    """What a check returns to pandera: True, or (failing) a per-row mask of the good rows.

    A failing check always returns rows: pandera cannot report a scalar False beside them.
    """
    _record(check, passed)
    if passed:
        return True
    return frame.select(rows_ok.fill_null(False).alias(check))


# The model ------------------------------------------------------------------------------------

class CaptionTableRules(pa.DataFrameModel):
    """The rules of a caption table (dataframe-level checks); ``CaptionTable`` adds the fields.

    Every check measures the frame through ``measure`` (shared by all checks of one
    ``validate`` call) and, when it fails, returns the mask of the rows that satisfy it, so
    pandera's failure cases are the offending rows.
    """

    _limits: ClassVar[CaptionLimits] = CaptionLimits()

    class Config:
        name = "CaptionTable"
        strict = False
        coerce = False

    @classmethod
    def validate(cls, check_obj, *args, **kwargs):
        """``pandera`` validation, with the frame measured once for all checks."""
        if _RUN.get() is not None:
            return super().validate(check_obj, *args, **kwargs)
        token = _RUN.set({})
        try:
            return super().validate(check_obj, *args, **kwargs)
        finally:
            _RUN.reset(token)

    @pa.dataframe_check
    def captions_are_not_empty(cls, data) -> bool | pl.LazyFrame:
        """EMPTY_CAPTION: no caption is null or whitespace only."""
        blank = measure(cls, data.lazyframe).blank_rows(data.lazyframe)
        return _outcome("captions_are_not_empty", blank.len() == 0, data.lazyframe,
                        ~_row_number().is_in(blank.implode()))

    @pa.dataframe_check
    def groups_are_not_all_unique(cls, data) -> bool | pl.LazyFrame:
        """GROUPS_ALL_UNIQUE: fewer than max_singleton_share of the groups hold one row."""
        m = measure(cls, data.lazyframe)
        passed = m.groups.height == 0 or m.singleton_share() < cls._limits.max_singleton_share
        return _outcome("groups_are_not_all_unique", passed, data.lazyframe,
                        pl.len().over("match_id") > 1)

    @pa.dataframe_check
    def image_ids_are_not_row_numbers(cls, data) -> bool | pl.LazyFrame:
        """IMAGE_ID_POSITIONAL: image_id is not a counter with one number per row, nor the
        row number (0- or 1-based, or source_row) in 90% of rows."""
        why = _positional(measure(cls, data.lazyframe), data.lazyframe)
        number = pl.col("image_id").cast(pl.Int64, strict=False)
        at_row = ((number == _row_number()) | (number == _row_number() + 1)
                  | (number == pl.col("source_row")))
        return _outcome("image_ids_are_not_row_numbers", why is None, data.lazyframe,
                        pl.repeat(False, pl.len()) if why and "counter" in why else ~at_row)

    @pa.dataframe_check(raise_warning=True)
    def image_ids_are_not_an_image_counter(cls, data) -> bool | pl.LazyFrame:
        """IMAGE_ID_POSITIONAL (warning): image_id is not 0,0,0,0,0,1,1,...: such ids group
        correctly but name no image of the source."""
        m = measure(cls, data.lazyframe)
        return _outcome("image_ids_are_not_an_image_counter",
                        _positional(m, data.lazyframe) is not None
                        or not _per_image_counter(m, data.lazyframe), data.lazyframe,
                        pl.repeat(False, pl.len()))

    @pa.dataframe_check(raise_warning=True)
    def groups_have_expected_size(cls, data) -> bool | pl.LazyFrame:
        """GROUP_SIZE_OUT_OF_RANGE: every group has min_group..max_group rows."""
        bad = measure(cls, data.lazyframe).groups_out_of_range()
        return _outcome("groups_have_expected_size", bad.height == 0, data.lazyframe,
                        ~pl.col("match_id").fill_null(-1).is_in(bad["match_id"].implode()))

    @pa.dataframe_check
    def one_match_id_per_image(cls, data) -> bool | pl.LazyFrame:
        """MATCH_ID_INCONSISTENT: image_id and match_id map one to one."""
        m = measure(cls, data.lazyframe)
        passed = m.one_to_one() or _inconsistent(m, data.lazyframe)[2] == 0
        return _outcome("one_match_id_per_image", passed, data.lazyframe,
                        (pl.col("match_id").n_unique().over("image_id") == 1)
                        & (pl.col("image_id").n_unique().over("match_id") == 1))

    @pa.dataframe_check
    def no_image_in_two_splits(cls, data) -> bool | pl.LazyFrame:
        """SPLIT_LEAKAGE: every image sits in one split (null splits are ignored)."""
        m = measure(cls, data.lazyframe)
        passed = ((m.one_to_one() and not m.groups["splits_differ"].any())
                  or _leaked(m, data.lazyframe).height == 0)
        return _outcome("no_image_in_two_splits", passed, data.lazyframe,
                        pl.col("split").drop_nulls().n_unique().over("image_id") <= 1)

    @pa.dataframe_check(raise_warning=True)
    def no_duplicate_caption_in_group(cls, data) -> bool | pl.LazyFrame:
        """CAPTION_DUPLICATE_IN_GROUP: no normalised caption twice in one group."""
        repeated = measure(cls, data.lazyframe).repeated_in_group()
        return _outcome("no_duplicate_caption_in_group", repeated.height == 0, data.lazyframe,
                        ~_row_number().is_in(repeated["row"].implode()))

    @pa.dataframe_check(raise_warning=True)
    def no_caption_shared_across_groups(cls, data) -> bool | pl.LazyFrame:
        """CAPTION_SHARED_ACROSS_GROUPS: a normalised caption belongs to one group only."""
        m = measure(cls, data.lazyframe)
        shared = m.shared_keys()
        rows = m.repeated.filter(pl.col("key").is_in(shared["key"].implode()))["row"]
        return _outcome("no_caption_shared_across_groups", shared.height == 0, data.lazyframe,
                        ~_row_number().is_in(rows.implode()))

    @pa.dataframe_check(raise_warning=True)
    def captions_have_no_control_characters(cls, data) -> bool | pl.LazyFrame:
        """CAPTION_CONTROL_CHARACTER: no TAB, newline or other control character."""
        passed = measure(cls, data.lazyframe).counts["control"] == 0
        return _outcome("captions_have_no_control_characters", passed, data.lazyframe,
                        ~pl.col("caption").str.contains_any(CONTROL_CHARACTERS).fill_null(False))

    @pa.dataframe_check
    def captions_hold_no_record_key(cls, data) -> bool | pl.LazyFrame:
        """CAPTION_HOLDS_RECORD_KEY: no caption holds a second record key (`name.jpg#2`)."""
        passed = measure(cls, data.lazyframe).counts["record_key"] == 0
        return _outcome("captions_hold_no_record_key", passed, data.lazyframe,
                        ~pl.col("caption").str.contains(RECORD_KEY).fill_null(False))

    @pa.dataframe_check(raise_warning=True)
    def captions_have_plausible_length(cls, data) -> bool | pl.LazyFrame:
        """CAPTION_LENGTH_IMPLAUSIBLE: min_caption_chars..max_caption_chars characters (blank
        captions are EMPTY_CAPTION's)."""
        counts = measure(cls, data.lazyframe).counts
        return _outcome("captions_have_plausible_length",
                        counts["too_short"] + counts["too_long"] == 0, data.lazyframe,
                        ~_implausible_length(cls._limits))


def _implausible_length(limits: CaptionLimits) -> pl.Expr:
    stripped = pl.col("caption").str.strip_chars().str.len_chars()
    return ((stripped.is_between(1, limits.min_caption_chars - 1))
            | (pl.col("caption").str.len_chars() > limits.max_caption_chars)).fill_null(False)


def _positional(m: CaptionMeasurements, frame: pl.LazyFrame) -> str | None:
    """Why image_id is a row counter or row number, or None."""
    def compute():
        counts = m.counts
        rows = counts["rows"]
        if counts["number_nulls"] or rows < 2:
            return None
        low, high = counts["number_min"], counts["number_max"]
        span = high - low + 1
        if span == rows and _unique_numbers(m, frame) == rows:
            return f"image_id is a running counter from {low} to {high}, one per row"
        if counts["number_is_row"] >= 0.9:
            return "image_id equals the row number in at least 90% of rows"
        return None
    return m.once("positional", compute)


def _per_image_counter(m: CaptionMeasurements, frame: pl.LazyFrame) -> bool:
    counts = m.counts
    if counts["number_nulls"] or counts["rows"] < 2 or m.n_images < 2:
        return False
    low, high = counts["number_min"], counts["number_max"]
    # distinct numbers <= distinct ids: a span wider than the images rules a counter out cheaply
    return (low in (0, 1) and high - low + 1 <= m.n_images
            and high - low + 1 == _unique_numbers(m, frame))


def _unique_numbers(m: CaptionMeasurements, frame: pl.LazyFrame) -> int:
    return m.once("unique_numbers", lambda: frame.select(
        pl.col("image_id").cast(pl.Int64, strict=False).n_unique()).collect().item())


def _inconsistent(m: CaptionMeasurements, frame: pl.LazyFrame):
    """(images under several match_ids, match_ids over several images, total)."""
    def compute():
        with_row = frame.select("image_id", "match_id").with_row_index("row")
        per_image = (with_row.group_by("image_id")
                     .agg(match_ids=pl.col("match_id").unique().sort(),
                          first=pl.col("row").min())
                     .filter(pl.col("match_ids").list.len() > 1).sort("first").drop("first")
                     .collect())
        per_group = (with_row.group_by("match_id")
                     .agg(image_ids=pl.col("image_id").unique().sort())
                     .filter(pl.col("image_ids").list.len() > 1).sort("match_id").collect())
        return per_image, per_group, per_image.height + per_group.height
    return m.once("inconsistent", compute)


def _leaked(m: CaptionMeasurements, frame: pl.LazyFrame) -> pl.DataFrame:
    return m.once("leaked", lambda: (
        frame.filter(pl.col("split").is_not_null())
        .group_by("image_id").agg(splits=pl.col("split").unique().sort())
        .filter(pl.col("splits").list.len() > 1).sort("image_id").collect()))


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


# From failed checks to findings ---------------------------------------------------------------

def _rows(frame: pl.DataFrame, rows: pl.Series, *columns: str) -> list[dict]:
    return (frame.with_row_index("row")[rows.head(10).cast(pl.Int64)]
            .select("row", *columns).to_dicts())


def _nulls_finding(frame: pl.DataFrame, m: CaptionMeasurements) -> Finding | None:
    bad = {c: m.counts[f"nulls_{c}"] for c in NON_NULL if m.counts[f"nulls_{c}"]}
    if not bad:
        return None
    rows = frame.select(pl.any_horizontal(pl.col(NON_NULL).is_null())).to_series().arg_true()
    return NULL_VALUES.finding(f"nulls in {', '.join(f'{k} ({v})' for k, v in bad.items())}",
                               count=sum(bad.values()), examples=_rows(frame, rows, *NON_NULL))


def _findings(check: str, frame: pl.DataFrame, m: CaptionMeasurements) -> Finding:
    """The finding of one failed check, with its count and examples."""
    lazy, limits = frame.lazy(), m.limits
    if check == "captions_are_not_empty":
        blank = m.blank_rows(lazy)
        return EMPTY_CAPTION.finding(f"{blank.len()} empty caption(s)", count=blank.len(),
                                     examples=_rows(frame, blank, "image_id", "source_row"))
    if check == "groups_are_not_all_unique":
        single = m.groups.filter(pl.col("size") == 1)["match_id"]
        n_groups = m.groups.height
        rows = frame["match_id"].is_in(single.head(5).implode()).arg_true()
        return GROUPS_ALL_UNIQUE.finding(
            f"{single.len()} of {n_groups} groups ({single.len() / n_groups:.1%}) hold a single "
            "row: a contrastive batch built from this table has no positive pairs",
            count=single.len(), examples=_rows(frame, rows.head(5), "match_id", "image_id",
                                               "caption"))
    if check == "image_ids_are_not_row_numbers":
        return IMAGE_ID_POSITIONAL.finding(
            _positional(m, lazy), count=frame.height,
            examples=_rows(frame, pl.Series(range(min(5, frame.height))), "image_id",
                           "source_row"))
    if check == "image_ids_are_not_an_image_counter":
        low, high = m.counts["number_min"], m.counts["number_max"]
        return IMAGE_ID_POSITIONAL.finding(
            f"image_id runs from {low} to {high} without a gap, one number per image: a counter, "
            "not the source's identifiers (file name stems, COCO ids)",
            count=m.n_images, severity="warning",
            examples=_rows(frame, pl.Series(range(min(5, frame.height))), "image_id",
                           "caption"))
    if check == "groups_have_expected_size":
        bad = m.groups_out_of_range()
        histogram = dict(bad.group_by("size").len().sort("size").iter_rows())
        shown = bad.select("match_id", "size").head(10)
        # The image id traces a group back to the source; looked up for the shown groups only.
        image_of = (frame.filter(pl.col("match_id").fill_null(-1)
                                 .is_in(shown["match_id"].implode()))
                    .group_by(pl.col("match_id").fill_null(-1))
                    .agg(pl.col("image_id").first()))
        examples = shown.join(image_of, on="match_id", how="left", maintain_order="left")
        return GROUP_SIZE_OUT_OF_RANGE.finding(
            f"{bad.height} group(s) outside the expected size {limits.group_range()} "
            f"(sizes: {histogram})", count=bad.height,
            examples=examples.select("match_id", "image_id", "size").to_dicts())
    if check == "one_match_id_per_image":
        per_image, per_group, count = _inconsistent(m, lazy)
        return MATCH_ID_INCONSISTENT.finding(
            f"{per_image.height} image_id(s) under several match_ids, {per_group.height} "
            "match_id(s) covering several image_ids", count=count,
            examples=per_image.head(5).to_dicts() + per_group.head(5).with_columns(
                pl.col("image_ids").list.head(5)).to_dicts())
    if check == "no_image_in_two_splits":
        leaked = _leaked(m, lazy)
        return SPLIT_LEAKAGE.finding(f"{leaked.height} image(s) appear in more than one split",
                                     count=leaked.height, examples=leaked.head(10).to_dicts())
    if check == "no_duplicate_caption_in_group":
        in_group = m.repeated_in_group()
        extra = in_group.height - in_group.select(pl.struct("key", "match_id").n_unique()).item()
        return CAPTION_DUPLICATE_IN_GROUP.finding(
            f"{extra} caption(s) repeat another caption of the same group", count=extra,
            examples=_rows(frame, in_group["row"], "match_id", "caption"))
    if check == "no_caption_shared_across_groups":
        shared = m.shared_keys()
        texts = frame["caption"].gather(shared["row"].head(10))
        examples = [{"caption": text, "match_ids": ids[:5]} for text, ids in
                    zip(texts.to_list(), shared["match_ids"].head(10).to_list(), strict=True)]
        return CAPTION_SHARED_ACROSS_GROUPS.finding(
            f"{shared.height} normalised caption(s) occur under more than one group: "
            "false negatives for InfoNCE", count=shared.height, examples=examples)
    if check == "captions_have_no_control_characters":
        rows = frame["caption"].str.contains_any(CONTROL_CHARACTERS).fill_null(False).arg_true()
        examples = _rows(frame, rows, "image_id", "source_row", "caption")
        for example in examples:
            example["characters"] = sorted({f"U+{ord(c):04X}" for c in example["caption"]
                                            if ord(c) < 32 or ord(c) == 127})
        return CAPTION_CONTROL_CHARACTER.finding(
            f"{rows.len()} caption(s) hold a control character (TAB, newline, ...)",
            count=rows.len(), examples=examples)
    if check == "captions_hold_no_record_key":
        rows = frame["caption"].str.contains(RECORD_KEY).fill_null(False).arg_true()
        examples = _rows(frame, rows, "image_id", "source_row", "caption")
        for example in examples:
            example["record_key"] = (pl.Series([example["caption"]])
                                     .str.extract(f"({RECORD_KEY})").item())
        return CAPTION_HOLDS_RECORD_KEY.finding(
            f"{rows.len()} caption(s) hold a second record key (two records read as one)",
            count=rows.len(), examples=examples)
    if check == "captions_have_plausible_length":
        short, long = m.counts["too_short"], m.counts["too_long"]
        rows = frame.select(_implausible_length(limits)).to_series().arg_true()
        examples = (frame.with_row_index("row")[rows.head(10)]
                    .select("row", "image_id", "source_row",
                            pl.col("caption").str.head(80),
                            length=pl.col("caption").str.len_chars()).to_dicts())
        return CAPTION_LENGTH_IMPLAUSIBLE.finding(
            f"{short} caption(s) shorter than {limits.min_caption_chars} characters, {long} "
            f"longer than {limits.max_caption_chars}", count=short + long, examples=examples)
    raise AssertionError(f"no finding for check {check}")


CHECK_ORDER = ("captions_are_not_empty", "groups_are_not_all_unique",
               "image_ids_are_not_row_numbers", "image_ids_are_not_an_image_counter",
               "groups_have_expected_size", "one_match_id_per_image", "no_image_in_two_splits",
               "no_duplicate_caption_in_group", "no_caption_shared_across_groups",
               "captions_have_no_control_characters", "captions_hold_no_record_key",
               "captions_have_plausible_length")
"""The model's dataframe checks, in the order findings are listed."""


def validate_caption_frame(frame: pl.DataFrame, target: str = "<table>", *, min_group: int = 2,
                           max_group: int | None = None, max_singleton_share: float = 0.9,
                           min_caption_chars: int = 2,
                           max_caption_chars: int = 1000) -> Report:
    """Run ``CaptionTable`` (lazily, every check) on an in-memory table; failures become findings.

    Raises:
        InputError: a column is missing or has another dtype than the contract's (every
            mismatch named, with the expected columns).
    """
    if problems := schema_problems(frame.schema):
        raise InputError(target, "does not match the caption table contract: "
                         f"{'; '.join(problems)}. Expected columns {expected_columns()}")
    model = caption_table_model(min_group, max_group, max_singleton_share=max_singleton_share,
                                min_caption_chars=min_caption_chars,
                                max_caption_chars=max_caption_chars)
    run: dict = {}
    token = _RUN.set(run)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SchemaWarning)
            model.validate(frame, lazy=True)
    except SchemaErrors as exc:
        unexpected = [e for e in exc.schema_errors
                      if getattr(e.check, "name", e.check) not in (*CHECK_ORDER, "not_nullable")]
        if unexpected:  # a dtype or column problem schema_problems did not foresee
            raise InputError(target, f"does not match the caption table contract: {exc}") from exc
    finally:
        _RUN.reset(token)
    measurements = run.get("measurements") or CaptionMeasurements.of(frame.lazy(), model._limits)
    failed = run.get("failed", set())
    findings = [f for f in [_nulls_finding(frame, measurements)] if f is not None]
    if frame.height == 0:
        findings.append(CAPTION_TABLE_EMPTY.finding(f"{target} holds no caption rows", count=0))
    findings += [_findings(check, frame, measurements) for check in CHECK_ORDER
                 if check in failed]
    sizes = measurements.groups["size"]
    stats = {"rows": frame.height, "images": measurements.n_images,
             "groups": measurements.groups.height,
             "group_size_min": int(sizes.min()) if sizes.len() else 0,
             "group_size_max": int(sizes.max()) if sizes.len() else 0,
             "singleton_groups": int((sizes == 1).sum())}
    return Report(target=target, kind="captions", findings=findings, stats=stats)


def validate_captions(path: str | Path, *, min_group: int = 2, max_group: int | None = None,
                      max_singleton_share: float = 0.9, min_caption_chars: int = 2,
                      max_caption_chars: int = 1000) -> Report:
    """Validate a caption table file (Parquet or CSV; ``"-"`` reads standard input).

    Example:
        >>> report = validate_captions("captions.parquet", min_group=5, max_group=7)
        >>> report.ok, report.codes()
    """
    # image_path is part of the contract but no rule reads its values: skip its bytes
    frame = read_caption_table(path, columns=[c for c in CAPTION_SCHEMA if c != "image_path"])
    return validate_caption_frame(frame, "<stdin>" if str(path) == "-" else str(path),
                                  min_group=min_group, max_group=max_group,
                                  max_singleton_share=max_singleton_share,
                                  min_caption_chars=min_caption_chars,
                                  max_caption_chars=max_caption_chars)


__all__ = ["CaptionTable", "CaptionTableRules", "CaptionLimits", "CaptionMeasurements",
           "caption_table_model", "normalised_caption", "validate_caption_frame",
           "validate_captions"]
