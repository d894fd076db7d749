"""What the caption rules measure, once per validation: ``CaptionMeasurements``.

The rules of ``uncollapse.validators.captions.rules`` share one measurement of the frame: counts
in one parallel pass, per-group aggregates once, repeated captions found by one sort of their
hashes (``uncollapse.validators.captions.partial`` takes them a partition at a time and merges
them, so a table larger than memory is measured in bounded memory); what only a failing rule
needs (its offending rows, its examples) is computed on first use, by polars' streaming engine,
and kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from uncollapse.data.captions.contract import (
    CAPTION,
    IMAGE_ID,
    MATCH_ID,
    NON_NULL,
    SPLIT,
)
from uncollapse.errors import ToolError

__all__ = ["CONTROL_CHARACTERS", "RECORD_KEY", "CaptionLimits", "CaptionMeasurements",
           "normalised_caption"]

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


def split_code() -> pl.Expr:
    """The split as a number (a hash), null where the split is null: ``split_code``."""
    return pl.when(pl.col(SPLIT).is_not_null()).then(pl.col(SPLIT).hash()).alias("split_code")


def implausible_length(limits: CaptionLimits) -> pl.Expr:
    """Captions shorter than ``min_caption_chars`` (blank ones aside) or longer than
    ``max_caption_chars``."""
    stripped = pl.col(CAPTION).str.strip_chars().str.len_chars()
    return ((stripped.is_between(1, limits.min_caption_chars - 1))
            | (pl.col(CAPTION).str.len_chars() > limits.max_caption_chars)).fill_null(False)


def collect(plan: pl.LazyFrame) -> pl.DataFrame:
    """``plan`` run by polars' streaming engine: bounded memory on tables of any size."""
    return plan.collect(engine="streaming")


@dataclass
class CaptionMeasurements:
    """What the rules of one table share: counts, per-group aggregates, repeated captions.

    ``frame`` is the table measured (scanned again only by failing rules); ``counts`` the
    merged counts of ``uncollapse.validators.captions.partial.ADDED_COUNTS`` and the range of
    the numeric image ids; ``groups`` one row per ``match_id`` (size, whether its images or
    its splits differ); ``repeated_keys`` the hashes of normalised captions that occur more
    than once.
    """

    frame: pl.LazyFrame
    limits: CaptionLimits
    counts: dict
    groups: pl.DataFrame
    repeated_keys: pl.Series
    n_images: int
    cache: dict = field(default_factory=dict)

    @classmethod
    def of(cls, frame: pl.LazyFrame | pl.DataFrame, limits: CaptionLimits) -> CaptionMeasurements:
        """Measure a whole table: an in-memory DataFrame, or a LazyFrame (a scan of Parquet
        shards) measured with polars' streaming engine, in bounded memory."""
        from uncollapse.validators.captions.partial import (
            check_captions_partition,
            merge_caption_measurements,
        )

        part = check_captions_partition(frame, limits)
        return merge_caption_measurements([part], frame.lazy(), limits)

    @property
    def rows(self) -> int:
        return int(self.counts["rows"])

    @property
    def repeated(self) -> pl.DataFrame:
        """The rows whose normalised caption occurs more than once: row, match_id, key."""
        def compute():
            if self.repeated_keys.len() == 0:
                return pl.DataFrame(schema={ROW: pl.Int64, MATCH_ID: pl.Int64,
                                            KEY: pl.UInt64})
            key = normalised_caption(pl.col(CAPTION)).hash().alias(KEY)
            return collect(self.frame.with_row_index(ROW)
                           .select(pl.col(ROW).cast(pl.Int64), pl.col(MATCH_ID).fill_null(-1),
                                   key)
                           .filter(pl.col(KEY).is_in(self.repeated_keys.implode())))
        return self.once("repeated", compute)

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
            # the hashes pick candidates; the text itself decides (a collision only adds one)
            if self.counts["blank_candidates"] == 0:
                return pl.Series(ROW, [], dtype=pl.Int64)
            blank = pl.col(CAPTION).str.strip_chars().fill_null("") == ""
            return collect(self.frame.with_row_index(ROW).filter(blank)
                           .select(pl.col(ROW).cast(pl.Int64))).get_column(ROW)
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
            if counts["number_is_row"] >= 0.9 * rows:
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
        return self.once("unique_numbers", lambda: collect(self.frame.select(
            pl.col(IMAGE_ID).cast(pl.Int64, strict=False).n_unique())).item())

    def inconsistent(self) -> tuple[pl.DataFrame, pl.DataFrame, int]:
        """(images under several match_ids, match_ids over several images, total)."""
        def compute():
            with_row = self.frame.select(IMAGE_ID, MATCH_ID).with_row_index(ROW)
            per_image = collect(with_row.group_by(IMAGE_ID)
                                .agg(match_ids=pl.col(MATCH_ID).unique().sort(),
                                     first=pl.col(ROW).min())
                                .filter(pl.col("match_ids").list.len() > 1).sort("first")
                                .drop("first"))
            per_group = collect(with_row.group_by(MATCH_ID)
                                .agg(image_ids=pl.col(IMAGE_ID).unique().sort())
                                .filter(pl.col("image_ids").list.len() > 1).sort(MATCH_ID))
            return per_image, per_group, per_image.height + per_group.height
        return self.once("inconsistent", compute)

    def leaked(self) -> pl.DataFrame:
        """Images in more than one split, with their splits."""
        return self.once("leaked", lambda: collect(
            self.frame.filter(pl.col(SPLIT).is_not_null())
            .group_by(IMAGE_ID).agg(splits=pl.col(SPLIT).unique().sort())
            .filter(pl.col("splits").list.len() > 1).sort(IMAGE_ID)))
