"""What the caption rules measure, once per validation: ``CaptionMeasurements``.

The rules of ``uncollapse.validators.captions.rules`` share one measurement of the frame: per-row
flags and hashes in one parallel pass, per-group aggregates once, repeated captions found by one
sort of their hashes; what only a failing rule needs (its offending rows, its examples) is
computed on first use and kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from uncollapse.data.captions.contract import (
    CAPTION,
    IMAGE_ID,
    MATCH_ID,
    NON_NULL,
    SOURCE_ROW,
    SPLIT,
)
from uncollapse.errors import ToolError

__all__ = ["CONTROL_CHARACTERS", "RECORD_KEY", "CaptionLimits", "CaptionMeasurements",
           "combine_counts", "group_stats", "measure_on", "measure_rows", "normalised_caption"]

PUNCTUATION_AND_SPACE = ".,;:!?'\"()[]{}-_ \t\r\n"
CONTROL_CHARACTERS = [chr(code) for code in range(32)] + ["\x7f"]
"""The ASCII control characters, TAB and newline included (a caption is one line of text)."""
RECORD_KEY = r"(?i)[^\s#]+\.(?:jpe?g|png|gif|bmp|webp)#\d+"
"""A Flickr-style record key, ``<image file>#<caption number>``."""
RECORD_KEY_MARK = "#"
"""A literal every record key contains: the regular expression runs only where it occurs."""

# Columns of the lean frame: one row per caption, hashes instead of text.
IMAGE, KEY, ROW = "image", "key", "row"


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


def row_number() -> pl.Expr:
    return pl.int_range(pl.len(), dtype=pl.Int64)


def _split_code() -> pl.Expr:
    """The split as a number (a hash), null where the split is null."""
    return pl.when(pl.col(SPLIT).is_not_null()).then(pl.col(SPLIT).hash())


def implausible_length(limits: CaptionLimits) -> pl.Expr:
    """Captions shorter than ``min_caption_chars`` (blank ones aside) or longer than
    ``max_caption_chars``."""
    stripped = pl.col(CAPTION).str.strip_chars().str.len_chars()
    return ((stripped.is_between(1, limits.min_caption_chars - 1))
            | (pl.col(CAPTION).str.len_chars() > limits.max_caption_chars)).fill_null(False)


def group_stats(lean: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """One row per match_id (size, whether its images or its non-null splits differ), and each
    group's first image hash.

    Built tables are sorted by match_id: their groups are runs, reduced with numpy segment
    operations instead of a hash grouping.
    """
    match_id = lean.get_column(MATCH_ID)
    if not match_id.is_sorted() or lean.height == 0:
        groups = (lean.group_by(MATCH_ID).agg(
            size=pl.len(),
            images_differ=pl.col(IMAGE).min() != pl.col(IMAGE).max(),
            splits_differ=(pl.col(SPLIT).min() != pl.col(SPLIT).max()).fill_null(False),
            image=pl.col(IMAGE).first()).sort(MATCH_ID))
        return groups.drop(IMAGE), groups.get_column(IMAGE)
    ids = match_id.to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    image = lean.get_column(IMAGE).to_numpy()
    split = lean.get_column(SPLIT)
    big = np.iinfo(np.uint64).max
    groups = pl.DataFrame({
        MATCH_ID: ids[starts],
        "size": np.diff(np.r_[starts, len(ids)]),
        "images_differ": np.minimum.reduceat(image, starts) != np.maximum.reduceat(image, starts),
        "splits_differ": np.minimum.reduceat(split.fill_null(big).to_numpy(), starts)
        < np.maximum.reduceat(split.fill_null(0).to_numpy(), starts),
    }, schema_overrides={"size": pl.UInt32})
    return groups, pl.Series(image[starts])


def measure_rows(frame: pl.LazyFrame, limits: CaptionLimits, first_row: int = 0
                 ) -> tuple[pl.DataFrame, dict]:
    """The per-row part of the measurements of a slice of rows (all of them, or one
    partition of an engine) whose first row is row ``first_row`` of the table: the lean frame
    (one row per caption, in order) and the slice's counts, for ``combine_counts``.

    Every value here depends on its own row alone (and its row number), so slices measured
    apart and combined give what one pass over the table gives.
    """
    caption = pl.col(CAPTION)
    # Cheap passes pick the few candidate rows; the exact tests run on those alone: one
    # scan for control characters and "#", byte lengths (a character is 1 to 4 bytes).
    flagged = caption.filter(pl.col("control_or_mark"))
    size = caption.str.len_bytes()
    number = pl.col("image_number")
    is_row = ((number - row_number() - first_row).is_between(0, 1)
              | (number == pl.col(SOURCE_ROW)))
    lean_plan = frame.select(
        pl.col(MATCH_ID).fill_null(-1),
        pl.col(IMAGE_ID).hash().alias(IMAGE),
        _split_code().alias(SPLIT),
        normalised_caption(caption).hash().alias(KEY),
    )
    counts_plan = frame.with_columns(
        image_number=pl.col(IMAGE_ID).cast(pl.Int64, strict=False),
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
        number_is_row_hits=is_row.sum(),
        number_is_row_known=is_row.count(),
    )
    lean, counts = pl.collect_all([lean_plan, counts_plan])
    return lean, counts.row(0, named=True)


_SUMMED = ("rows", *(f"nulls_{c}" for c in NON_NULL), "control", "record_key", "too_short",
           "too_long", "number_nulls", "number_is_row_hits", "number_is_row_known")


def combine_counts(parts: list[dict]) -> dict:
    """The counts of a table from the counts of its slices (``measure_rows``), in any order:
    sums, the smallest and largest image number, and the share of rows whose image id is
    their row number (``number_is_row``, None where no image id is a number)."""
    counts = {name: sum(int(part[name] or 0) for part in parts) for name in _SUMMED}
    for name, pick in (("number_min", min), ("number_max", max)):
        values = [part[name] for part in parts if part[name] is not None]
        counts[name] = pick(values) if values else None
    hits, known = counts.pop("number_is_row_hits"), counts.pop("number_is_row_known")
    counts["number_is_row"] = hits / known if known else None
    return counts


def measure_slice(path: str, columns: list[str], limits: CaptionLimits, start: int,
                  stop: int) -> tuple[pa.Table, dict]:
    """``measure_rows`` of rows ``start:stop`` of the Parquet table at ``path``: what an
    engine's task runs for one slice of the table (it reads those rows alone)."""
    frame = pl.scan_parquet(path).select(columns).slice(start, stop - start)
    lean, counts = measure_rows(frame, limits, first_row=start)
    return lean.to_arrow(), counts


def group_stats_table(lean: pa.Table) -> pa.Table:
    """``group_stats`` of the rows of whole groups, with each group's first image hash: what
    an engine runs for one partition of the groups."""
    groups, image = group_stats(pl.from_arrow(lean))
    return groups.with_columns(image.alias(IMAGE)).to_arrow()


def measure_on(engine, path: str | Path, frame: pl.DataFrame, columns: list[str],
               limits: CaptionLimits) -> CaptionMeasurements:
    """The measurements of ``frame`` (``columns`` of the Parquet table at ``path``) taken by
    ``engine`` (``uncollapse.engines.ray.RayEngine``): the rows in slices where the engine
    runs, the groups per partition of ``match_id``, each group seen whole."""
    tables, counts, per_partition = engine.measure_partitioned(
        functools.partial(measure_slice, str(path), columns, limits), frame.height,
        key=MATCH_ID, per_partition=group_stats_table, what=f"measuring {path}")
    lean = pl.concat([pl.from_arrow(table) for table in tables])
    groups = pl.concat([pl.from_arrow(table) for table in per_partition]).sort(MATCH_ID)
    return CaptionMeasurements.assemble(frame.lazy(), limits, lean, combine_counts(counts),
                                        (groups.drop(IMAGE), groups.get_column(IMAGE)))


@dataclass
class CaptionMeasurements:
    """What the rules of one frame share: per-row hashes, per-group aggregates and counts.

    ``frame`` is the frame measured; ``lean`` holds one row per caption (``match_id``, image and
    normalised-caption hashes, split code); ``groups`` one row per ``match_id`` (size, whether
    its images or splits differ); ``repeated`` the rows whose normalised caption occurs more
    than once (usually a small share), with their row number.
    """

    frame: pl.LazyFrame
    limits: CaptionLimits
    lean: pl.DataFrame
    counts: dict
    groups: pl.DataFrame
    repeated: pl.DataFrame
    n_images: int
    cache: dict = field(default_factory=dict)

    @classmethod
    def of(cls, frame: pl.LazyFrame, limits: CaptionLimits) -> CaptionMeasurements:
        lean, counts = measure_rows(frame, limits)
        return cls.assemble(frame, limits, lean, combine_counts([counts]))

    @classmethod
    def assemble(cls, frame: pl.LazyFrame, limits: CaptionLimits, lean: pl.DataFrame,
                 counts: dict, groups: tuple[pl.DataFrame, pl.Series] | None = None
                 ) -> CaptionMeasurements:
        """The measurements from the per-row part (``measure_rows`` of every slice of rows,
        ``lean`` in row order and ``counts`` combined by ``combine_counts``); ``groups``, when
        an engine computed them per partition, is what ``group_stats`` gives for all of it."""
        groups, group_image = group_stats(lean) if groups is None else groups
        # one image per group: the images are the groups' images (2M values, not 10M rows)
        n_images = (group_image.n_unique() if not groups["images_differ"].any()
                    else lean.get_column(IMAGE).n_unique())
        # equal keys are neighbours once sorted: cheaper than a hash grouping of 10M keys
        keys = lean.get_column(KEY).sort()
        repeated_keys = keys.filter(keys == keys.shift(1)).unique()
        repeated = (lean.with_row_index(ROW)
                    .filter(pl.col(KEY).is_in(repeated_keys.implode())))
        return cls(frame=frame, limits=limits, lean=lean, counts=counts,
                   groups=groups, repeated=repeated, n_images=int(n_images))

    def once(self, name: str, compute: Callable):
        if name not in self.cache:
            self.cache[name] = compute()
        return self.cache[name]

    # The measured outcome of the rules, each computed once, on first use.

    def null_counts(self) -> dict[str, int]:
        """Nulls in each column that may not hold them, where there are any."""
        return {c: self.counts[f"nulls_{c}"] for c in NON_NULL if self.counts[f"nulls_{c}"]}

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

    def blank_rows(self) -> pl.Series:
        """Rows whose caption is null or whitespace; punctuation alone ("?") is a caption."""
        def compute():
            empty = pl.DataFrame({CAPTION: ["", None]}, schema={CAPTION: pl.String}).select(
                normalised_caption(pl.col(CAPTION)).hash()).to_series()
            # a hash collision only adds a candidate: the text itself decides below
            candidates = self.lean.get_column(KEY).is_in(empty.implode()).arg_true()
            if candidates.len() == 0:
                return candidates
            text = self.frame.select(CAPTION).collect().get_column(CAPTION).gather(candidates)
            return candidates.filter(text.str.strip_chars().fill_null("") == "")
        return self.once("blank", compute)

    def repeated_in_group(self) -> pl.DataFrame:
        return self.once("in_group", lambda: self.repeated.filter(
            pl.len().over(KEY, MATCH_ID) > 1))

    def shared_keys(self) -> pl.DataFrame:
        return self.once("shared", lambda: (
            self.repeated.group_by(KEY)
            .agg(match_ids=pl.col(MATCH_ID).unique().sort(), row=pl.col(ROW).min())
            .filter(pl.col("match_ids").list.len() > 1).sort(ROW)))

    def positional(self) -> str | None:
        """Why image_id is a row counter or row number, or None."""
        def compute():
            counts = self.counts
            rows = counts["rows"]
            if counts["number_nulls"] or rows < 2:
                return None
            low, high = counts["number_min"], counts["number_max"]
            span = high - low + 1
            if span == rows and self.unique_numbers() == rows:
                return f"image_id is a running counter from {low} to {high}, one per row"
            if counts["number_is_row"] >= 0.9:
                return "image_id equals the row number in at least 90% of rows"
            return None
        return self.once("positional", compute)

    def per_image_counter(self) -> bool:
        """image_id is 0,0,0,0,0,1,1,...: one number per image, counting from 0 or 1."""
        counts = self.counts
        if counts["number_nulls"] or counts["rows"] < 2 or self.n_images < 2:
            return False
        low, high = counts["number_min"], counts["number_max"]
        # distinct numbers <= distinct ids: a span wider than the images rules a counter out
        return (low in (0, 1) and high - low + 1 <= self.n_images
                and high - low + 1 == self.unique_numbers())

    def unique_numbers(self) -> int:
        return self.once("unique_numbers", lambda: self.frame.select(
            pl.col(IMAGE_ID).cast(pl.Int64, strict=False).n_unique()).collect().item())

    def inconsistent(self) -> tuple[pl.DataFrame, pl.DataFrame, int]:
        """(images under several match_ids, match_ids over several images, total)."""
        def compute():
            with_row = self.frame.select(IMAGE_ID, MATCH_ID).with_row_index(ROW)
            per_image = (with_row.group_by(IMAGE_ID)
                         .agg(match_ids=pl.col(MATCH_ID).unique().sort(),
                              first=pl.col(ROW).min())
                         .filter(pl.col("match_ids").list.len() > 1).sort("first").drop("first")
                         .collect())
            per_group = (with_row.group_by(MATCH_ID)
                         .agg(image_ids=pl.col(IMAGE_ID).unique().sort())
                         .filter(pl.col("image_ids").list.len() > 1).sort(MATCH_ID).collect())
            return per_image, per_group, per_image.height + per_group.height
        return self.once("inconsistent", compute)

    def leaked(self) -> pl.DataFrame:
        """Images in more than one split, with their splits."""
        return self.once("leaked", lambda: (
            self.frame.filter(pl.col(SPLIT).is_not_null())
            .group_by(IMAGE_ID).agg(splits=pl.col(SPLIT).unique().sort())
            .filter(pl.col("splits").list.len() > 1).sort(IMAGE_ID).collect()))
