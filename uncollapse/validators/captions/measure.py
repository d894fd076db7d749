"""What the caption rules measure, once per validation: ``CaptionMeasurements``.

The rules of ``uncollapse.validators.captions.rules`` share one measurement of the frame: counts
in one parallel pass, per-group aggregates once, repeated captions found by one sort of their
hashes. The measurement is taken a partition at a time (``check_captions_partition``: a
``CaptionPartial``) and merged (``merge_caption_measurements``), so a table larger than memory
is measured in bounded memory, by polars' streaming engine or on Ray, partition by partition.
What only a failing rule needs (its offending rows, its examples) is computed on first use, by
polars' streaming engine, and kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from uncollapse.data.captions.contract import (
    CAPTION,
    IMAGE_ID,
    MATCH_ID,
    NON_NULL,
    SOURCE_ROW,
    SPLIT,
)
from uncollapse.data.parquet_pieces import row_group_ranges
from uncollapse.errors import ToolError

__all__ = ["ADDED_COUNTS", "CONTROL_CHARACTERS", "GROUP_COLUMNS", "PARQUET_SLICE_ROWS",
           "RECORD_KEY", "CaptionLimits", "CaptionMeasurements", "CaptionPartial",
           "check_captions_partition", "measure_on", "merge_caption_measurements",
           "normalised_caption"]

PUNCTUATION_AND_SPACE = ".,;:!?'\"()[]{}-_ \t\r\n"
CONTROL_CHARACTERS = [chr(code) for code in range(32)] + ["\x7f"]
"""The ASCII control characters, TAB and newline included (a caption is one line of text)."""
RECORD_KEY = r"(?i)[^\s#]+\.(?:jpe?g|png|gif|bmp|webp)#\d+"
"""A Flickr-style record key, ``<image file>#<caption number>``."""
RECORD_KEY_MARK = "#"
"""A literal every record key contains: the regular expression runs only where it occurs."""

PARQUET_SLICE_ROWS = 2_000_000
"""Rows of a slice of one Parquet file measured at a time (whole row groups)."""

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
    merged counts of ``ADDED_COUNTS`` and the range of the numeric image ids; ``groups`` one
    row per ``match_id`` (size, whether its images or its splits differ); ``repeated_keys``
    the hashes of normalised captions that occur more than once.
    """

    frame: pl.LazyFrame
    limits: CaptionLimits
    counts: dict
    groups: pl.DataFrame
    repeated_keys: pl.Series
    n_images: int
    lean: pl.DataFrame | None = None
    cache: dict = field(default_factory=dict)

    @classmethod
    def of(cls, frame: pl.LazyFrame | pl.DataFrame, limits: CaptionLimits) -> CaptionMeasurements:
        """Measure a whole table: an in-memory DataFrame, or a LazyFrame (a scan of Parquet
        shards) measured with polars' streaming engine, in bounded memory."""
        part = check_captions_partition(frame, limits)
        return merge_caption_measurements([part], frame.lazy(), limits)

    @classmethod
    def of_partitions(cls, partitions: Iterable[pl.LazyFrame | pl.DataFrame],
                      source: pl.LazyFrame, limits: CaptionLimits) -> CaptionMeasurements:
        """Measure a table partition by partition (its Parquet shards, in row order), each
        with polars' streaming engine, and merge: memory holds one partition's work and the
        small partials (``CaptionPartial``), never the rows of the whole table."""
        parts, offset = [], 0
        for partition in partitions:
            parts.append(check_captions_partition(partition, limits, row_offset=offset))
            offset += parts[-1].rows
        return merge_caption_measurements(parts, source, limits)

    @classmethod
    def of_parquet(cls, path, frame: pl.LazyFrame, limits: CaptionLimits, *,
                   slice_rows: int | None = None) -> CaptionMeasurements:
        """Measure one Parquet file (scanned as ``frame``) a slice of row groups at a time
        (``slice_rows`` rows, about), as ``of_partitions`` measures shards: the file is
        never read whole."""
        ranges = row_group_ranges(path, slice_rows or PARQUET_SLICE_ROWS)
        return cls.of_partitions((frame.slice(start, rows) for start, rows in ranges), frame,
                                 limits)

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
            repeated = pl.col(KEY).is_in(self.repeated_keys.implode())
            if self.lean is not None:  # the table was in memory: its hashes were kept
                return (self.lean.with_row_index(ROW).filter(repeated)
                        .with_columns(pl.col(ROW).cast(pl.Int64)))
            key = normalised_caption(pl.col(CAPTION)).hash().alias(KEY)
            return collect(self.frame.with_row_index(ROW)
                           .select(pl.col(ROW).cast(pl.Int64), pl.col(MATCH_ID).fill_null(-1),
                                   key)
                           .filter(repeated))
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


# Partitions: measured one at a time, merged -------------------------------------------------
#
# A table too large for memory is measured a partition at a time (a Parquet shard, a hash
# partition of match_id on Ray, or the whole table as one polars streaming plan): each
# partition gives a CaptionPartial (counts, one row per group, the hash of every normalised
# caption), much smaller than its rows, and the partials merge into the CaptionMeasurements of
# the whole table, whatever the partitioning: a group split across partitions is re-aggregated.

NO_SPLIT_LOW = np.iinfo(np.uint64).max
"""A group without a split: its lowest split code is the largest number, its highest 0, so
merging min and max ignores it and ``low < high`` says "two splits" only where there are."""

GROUP_COLUMNS = {MATCH_ID: pl.Int64, "size": pl.UInt32, "image_min": pl.UInt64,
                 "image_max": pl.UInt64, "split_min": pl.UInt64, "split_max": pl.UInt64}
"""One row per match_id of a partition: its rows, and the lowest and highest hash of its
image ids and split codes (a group has one image and one split where they are equal)."""

ADDED_COUNTS = ("rows", *(f"nulls_{c}" for c in NON_NULL), "control", "record_key", "too_short",
                "too_long", "number_nulls", "number_is_row", "blank_candidates")
"""The counts of a partial that add up over partitions (``number_min`` and ``number_max``
take the lowest and highest)."""


@dataclass
class CaptionPartial:
    """What the caption rules measure on one partition.

    Attributes:
        counts: ``ADDED_COUNTS`` plus ``number_min``/``number_max`` (the range of the image
            ids read as integers, None where none is one).
        groups: ``GROUP_COLUMNS``, sorted by ``match_id`` (null match_ids count as -1).
        keys: the hash (uint64) of every normalised caption, sorted.
        lean: where the partition was in memory anyway, its ``match_id`` and caption hash per
            row, so that finding repeated captions needs no second pass (None otherwise).
    """

    counts: dict
    groups: pl.DataFrame
    keys: np.ndarray
    lean: pl.DataFrame | None = None

    @property
    def rows(self) -> int:
        return int(self.counts["rows"])

    def nbytes(self) -> int:
        """The partial's size in memory."""
        return int(self.groups.estimated_size() + self.keys.nbytes)


def _counts_plan(frame: pl.LazyFrame, limits: CaptionLimits, row_offset: int) -> pl.LazyFrame:
    caption = pl.col(CAPTION)
    # Cheap passes pick the few candidate rows; the exact tests run on those alone: one scan
    # for control characters and "#", byte lengths (a character is 1 to 4 bytes).
    flagged = caption.filter(pl.col("control_or_mark"))
    size = caption.str.len_bytes()
    number = pl.col("image_number")
    if ROW not in frame.collect_schema():
        frame = frame.with_row_index(ROW, offset=row_offset)
    row = pl.col(ROW).cast(pl.Int64)
    return frame.with_columns(
        image_number=pl.col(IMAGE_ID).cast(pl.Int64, strict=False),
        control_or_mark=caption.str.contains_any(CONTROL_CHARACTERS + [RECORD_KEY_MARK]),
    ).select(
        rows=pl.len().cast(pl.Int64),
        **{f"nulls_{c}": pl.col(c).null_count().cast(pl.Int64) for c in NON_NULL},
        control=flagged.str.contains_any(CONTROL_CHARACTERS).sum().cast(pl.Int64),
        record_key=flagged.str.contains(RECORD_KEY).sum().cast(pl.Int64),
        too_short=caption.filter(size < 4 * limits.min_caption_chars)
        .str.strip_chars().str.len_chars().is_between(1, limits.min_caption_chars - 1).sum()
        .cast(pl.Int64),
        too_long=(caption.filter(size > limits.max_caption_chars).str.len_chars()
                  > limits.max_caption_chars).sum().cast(pl.Int64),
        number_nulls=number.null_count().cast(pl.Int64),
        number_min=number.min(),
        number_max=number.max(),
        number_is_row=((number - row).is_between(0, 1)
                       | (number == pl.col(SOURCE_ROW))).sum().cast(pl.Int64),
    )


def _lean(frame: pl.LazyFrame) -> pl.LazyFrame:
    """One row per caption: match_id, image hash, split code, normalised-caption hash."""
    return frame.select(pl.col(MATCH_ID).fill_null(-1), pl.col(IMAGE_ID).hash().alias(IMAGE),
                        split_code(), normalised_caption(pl.col(CAPTION)).hash().alias(KEY))


def _groups_by_hash(lean: pl.LazyFrame) -> pl.LazyFrame:
    split = pl.col("split_code")
    return lean.group_by(MATCH_ID).agg(
        size=pl.len().cast(pl.UInt32), image_min=pl.col(IMAGE).min(),
        image_max=pl.col(IMAGE).max(),
        split_min=split.min().fill_null(NO_SPLIT_LOW), split_max=split.max().fill_null(0),
    ).sort(MATCH_ID)


def _segments(ids: np.ndarray) -> np.ndarray:
    """The first position of each run of equal values of sorted ``ids``."""
    return np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)


def _groups_of_sorted(match_id: np.ndarray, image: np.ndarray, split_low: np.ndarray,
                      split_high: np.ndarray, size: np.ndarray | None = None) -> pl.DataFrame:
    """``GROUP_COLUMNS`` of rows (or group rows, with their ``size``) sorted by match_id, with
    numpy segment operations: cheaper than a hash grouping when the runs are already there."""
    starts = _segments(match_id)
    if size is None:
        sizes = np.diff(np.r_[starts, len(match_id)])
        image_min = np.minimum.reduceat(image, starts) if len(starts) else image[:0]
        image_max = np.maximum.reduceat(image, starts) if len(starts) else image[:0]
    else:
        sizes = np.add.reduceat(size, starts) if len(starts) else size[:0]
        image_min, image_max = image
        image_min = np.minimum.reduceat(image_min, starts) if len(starts) else image_min[:0]
        image_max = np.maximum.reduceat(image_max, starts) if len(starts) else image_max[:0]
    empty = not len(starts)
    return pl.DataFrame({
        MATCH_ID: match_id[starts], "size": sizes, "image_min": image_min, "image_max": image_max,
        "split_min": split_low[:0] if empty else np.minimum.reduceat(split_low, starts),
        "split_max": split_high[:0] if empty else np.maximum.reduceat(split_high, starts),
    }, schema=GROUP_COLUMNS)


def check_captions_partition(frame: pl.DataFrame | pl.LazyFrame,
                             limits: CaptionLimits = CaptionLimits(), *,
                             row_offset: int = 0) -> CaptionPartial:
    """Measure one partition of a caption table for the caption rules.

    Args:
        frame: the partition (the contract's columns; ``image_path`` is not read). A
            LazyFrame is collected with polars' streaming engine, in bounded memory.
        limits: the thresholds of the length rule.
        row_offset: the position of the partition's first row in the whole table (the
            positional-id rule compares ids with row numbers); a ``row`` column, where the
            frame has one, gives each row's position instead.

    Example:
        >>> parts = [check_captions_partition(shard, row_offset=offset) for ...]
        >>> m = merge_caption_measurements(parts, pl.scan_parquet("shards/*.parquet"))
    """
    streaming = isinstance(frame, pl.LazyFrame)
    lazy = frame if streaming else frame.lazy()
    engine = "streaming" if streaming else "auto"
    lean = _lean(lazy)
    if streaming:
        counts, groups, keys = pl.collect_all(
            [_counts_plan(lazy, limits, row_offset), _groups_by_hash(lean), lean.select(KEY)],
            engine=engine)
    else:
        counts, lean_rows = pl.collect_all([_counts_plan(lazy, limits, row_offset), lean])
        match_id = lean_rows.get_column(MATCH_ID)
        if match_id.is_sorted():
            split = lean_rows.get_column("split_code")
            groups = _groups_of_sorted(
                match_id.to_numpy(), lean_rows.get_column(IMAGE).to_numpy(),
                split.fill_null(NO_SPLIT_LOW).to_numpy(), split.fill_null(0).to_numpy())
        else:
            groups = _groups_by_hash(lean_rows.lazy()).collect()
        keys = lean_rows.select(KEY)
    # one sorted copy of the hashes (8 bytes a caption), the unsorted one dropped
    keys = keys.get_column(KEY).sort().to_numpy()
    counts = counts.row(0, named=True)
    blank = _blank_keys()
    counts["blank_candidates"] = int((np.searchsorted(keys, blank, side="right")
                                      - np.searchsorted(keys, blank, side="left")).sum())
    return CaptionPartial(counts=counts, groups=groups.cast(GROUP_COLUMNS), keys=keys,
                          lean=None if streaming else lean_rows.select(MATCH_ID, KEY))


def _blank_keys() -> np.ndarray:
    """The hashes of a null and an empty normalised caption."""
    return pl.DataFrame({CAPTION: ["", None]}, schema={CAPTION: pl.String}).select(
        normalised_caption(pl.col(CAPTION)).hash()).to_series().to_numpy()


def _merge_counts(parts: list[CaptionPartial]) -> dict:
    counts = {name: sum(int(p.counts[name]) for p in parts) for name in ADDED_COUNTS}
    for name, pick in (("number_min", min), ("number_max", max)):
        values = [p.counts[name] for p in parts if p.counts[name] is not None]
        counts[name] = pick(values) if values else None
    return counts


def _merge_groups(parts: list[CaptionPartial]) -> pl.DataFrame:
    """The partials' groups as one frame sorted by match_id, a group split across partials
    put back together. Column by column in numpy: about 20 bytes a group besides the partials,
    whatever their number (a concatenation of whole frames would copy all of them at once)."""
    if len(parts) == 1:
        return parts[0].groups
    if not parts:
        return pl.DataFrame(schema=GROUP_COLUMNS)

    def column(name: str, order: np.ndarray | None) -> np.ndarray:
        values = np.concatenate([p.groups.get_column(name).to_numpy() for p in parts])
        return values if order is None else values[order]

    ids = column(MATCH_ID, None)
    order = None if not len(ids) or (ids[1:] >= ids[:-1]).all() else np.argsort(ids,
                                                                                 kind="stable")
    if order is not None:
        ids = ids[order]
    starts = _segments(ids)
    whole = len(starts) == len(ids)  # hash partitions of match_id: no group is in two partials
    merged = {MATCH_ID: ids[starts]}
    del ids
    for name, reduce in (("size", np.add), ("image_min", np.minimum),
                         ("image_max", np.maximum), ("split_min", np.minimum),
                         ("split_max", np.maximum)):
        values = column(name, order)
        merged[name] = values if whole else reduce.reduceat(values, starts)
        del values
    return pl.DataFrame(merged, schema=GROUP_COLUMNS)


def _repeated_keys(parts: list[CaptionPartial], buckets: int = 16) -> np.ndarray:
    """The caption hashes that occur more than once over all partials. Each partial's hashes
    are sorted, so a range of hash values is a slice of each: the ranges are merged one at a
    time, in a sixteenth of the memory of all hashes at once."""
    if len(parts) == 1:
        keys = parts[0].keys
        return np.unique(keys[1:][keys[1:] == keys[:-1]])
    edges = np.arange(1, buckets, dtype=np.uint64) * np.uint64(2**64 // buckets)
    found = []
    for low, high in zip(np.r_[np.uint64(0), edges], np.r_[edges, np.uint64(0)], strict=True):
        pieces = []
        for part in parts:
            start = np.searchsorted(part.keys, low, side="left")
            end = (np.searchsorted(part.keys, high, side="left") if high
                   else len(part.keys))  # the last range runs to the largest hash
            pieces.append(part.keys[start:end])
        keys = np.concatenate(pieces)
        keys.sort()
        found.append(np.unique(keys[1:][keys[1:] == keys[:-1]]))
    return np.concatenate(found)


def merge_caption_measurements(parts: Iterable[CaptionPartial], source: pl.LazyFrame,
                               limits: CaptionLimits = CaptionLimits()) -> CaptionMeasurements:
    """The measurements of a whole table from the partials of its partitions.

    Args:
        parts: one ``CaptionPartial`` per partition, in any order, of any partitioning.
        source: the whole table, scanned again only by failing rules (their rows and
            examples), with rows numbered in its order.
        limits: the rules' thresholds.
    """
    parts = list(parts)
    counts = _merge_counts(parts)
    merged = _merge_groups(parts)
    image_min = merged.get_column("image_min")
    groups = pl.DataFrame({
        MATCH_ID: merged.get_column(MATCH_ID), "size": merged.get_column("size"),
        "images_differ": image_min != merged.get_column("image_max"),
        "splits_differ": merged.get_column("split_min") < merged.get_column("split_max")})
    repeated_keys = _repeated_keys(parts) if parts else np.zeros(0, np.uint64)
    if not groups["images_differ"].any():
        n_images = image_min.n_unique()  # one image per group: the groups' images
    else:
        n_images = source.select(pl.col(IMAGE_ID).n_unique()).collect(engine="streaming").item()
    return CaptionMeasurements(frame=source, limits=limits, counts=counts, groups=groups,
                               repeated_keys=pl.Series(KEY, repeated_keys, dtype=pl.UInt64),
                               n_images=int(n_images),
                               lean=parts[0].lean if len(parts) == 1 else None)


def measure_on(engine, files: list, columns: list[str], frame: pl.LazyFrame,
               limits: CaptionLimits) -> CaptionMeasurements:
    """The measurements of the Parquet table ``files`` (scanned as ``frame``) taken by
    ``engine`` (``uncollapse.engines.ray.RayEngine``): ``check_captions_partition`` on each
    partition of a stable hash of ``match_id``, where the engine runs, and the partials merged
    here; a failing rule scans ``frame`` again for its rows and examples."""
    parts = engine.check_partitions(files, columns, key=MATCH_ID,
                                    per_partition=functools.partial(check_captions_partition,
                                                                    limits=limits),
                                    what=f"checking {files[0] if len(files) == 1 else files}")
    if not parts:  # no rows: nothing to spread
        return CaptionMeasurements.of(frame, limits)
    return merge_caption_measurements(parts, frame, limits)
