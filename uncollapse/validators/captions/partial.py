"""What the caption rules measure on one partition of a table, and how partitions merge:
``CaptionPartial``, ``check_captions_partition``, ``merge_caption_measurements``.

A table too large for memory is measured a partition at a time (a Parquet shard, a hash
partition of ``match_id`` on Ray, or the whole table as one polars streaming plan): each
partition gives a ``CaptionPartial`` (counts, one row per group, the hash of every normalised
caption), much smaller than its rows, and the partials merge into the ``CaptionMeasurements``
of the whole table, whatever the partitioning: a group split across partitions is
re-aggregated. The rules then read the measurements; only a failing rule scans the table again,
for its rows and examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from uncollapse.data.captions.contract import CAPTION, IMAGE_ID, MATCH_ID, NON_NULL, SOURCE_ROW
from uncollapse.validators.captions.measure import (
    CONTROL_CHARACTERS,
    IMAGE,
    KEY,
    RECORD_KEY,
    RECORD_KEY_MARK,
    ROW,
    CaptionLimits,
    CaptionMeasurements,
    normalised_caption,
    split_code,
)

__all__ = ["ADDED_COUNTS", "GROUP_COLUMNS", "CaptionPartial", "check_captions_partition",
           "merge_caption_measurements"]

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
    """

    counts: dict
    groups: pl.DataFrame
    keys: np.ndarray

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
    # one copy of the hashes, sorted in place (8 bytes a caption)
    keys = keys.get_column(KEY).to_numpy(writable=True)
    keys.sort()
    counts = counts.row(0, named=True)
    blank = _blank_keys()
    counts["blank_candidates"] = int((np.searchsorted(keys, blank, side="right")
                                      - np.searchsorted(keys, blank, side="left")).sum())
    return CaptionPartial(counts=counts, groups=groups.cast(GROUP_COLUMNS), keys=keys)


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
    groups = pl.concat([p.groups for p in parts]) if parts else pl.DataFrame(schema=GROUP_COLUMNS)
    if len(parts) > 1:
        groups = groups.sort(MATCH_ID)
    match_id = groups.get_column(MATCH_ID).to_numpy()
    if len(parts) <= 1 or len(_segments(match_id)) == len(match_id):
        return groups  # hash partitions of match_id: no group is in two partials
    return _groups_of_sorted(
        match_id, (groups["image_min"].to_numpy(), groups["image_max"].to_numpy()),
        groups["split_min"].to_numpy(), groups["split_max"].to_numpy(),
        size=groups["size"].to_numpy())


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
    if len(parts) == 1:
        keys = parts[0].keys
    else:
        keys = np.concatenate([p.keys for p in parts]) if parts else np.zeros(0, np.uint64)
        keys.sort()
    repeated_keys = np.unique(keys[1:][keys[1:] == keys[:-1]])
    del keys
    if not groups["images_differ"].any():
        n_images = image_min.n_unique()  # one image per group: the groups' images
    else:
        n_images = source.select(pl.col(IMAGE_ID).n_unique()).collect(engine="streaming").item()
    return CaptionMeasurements(frame=source, limits=limits, counts=counts, groups=groups,
                               repeated_keys=pl.Series(KEY, repeated_keys, dtype=pl.UInt64),
                               n_images=int(n_images))
