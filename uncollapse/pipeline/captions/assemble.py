"""From rows read out of a source to the caption table (docs/data-contracts.md)."""

from __future__ import annotations

import polars as pl

from uncollapse.data.captions.contract import (
    CAPTION,
    CAPTION_IDX,
    IMAGE_ID,
    IMAGE_PATH,
    MATCH_ID,
    SOURCE_ROW,
    SPLIT,
)
from uncollapse.data.captions.table import CAPTION_SCHEMA
from uncollapse.errors import ToolError
from uncollapse.pipeline.captions.irregularities import (
    SOURCE_CAPTION_COUNT_UNUSUAL,
    SOURCE_DUPLICATE_CAPTION_NUMBER,
    SOURCE_EMPTY_CAPTION,
    SOURCE_RECORD_KEY_IN_CAPTION,
    SOURCE_ROWS_OUTSIDE_SPLITS,
    SOURCE_TAB_IN_CAPTION,
    SOURCE_WHITESPACE_STRIPPED,
    Irregularities,
)
from uncollapse.pipeline.captions.lines import RECORD_KEY

__all__ = ["assign_match_ids", "build_captions_partition", "caption_stats", "finalize",
           "images_of", "keep_captions", "kept", "merge_caption_stats", "partition_stats",
           "report_duplicate_caption_numbers", "report_unusual_caption_counts"]


def finalize(rows: pl.DataFrame, irregular: Irregularities,
             splits: list[str] | None = None) -> pl.DataFrame:
    """Strip, drop (and report) empty captions, keep ``splits``, number the positive groups.

    ``match_id`` is one group per ``image_id``, numbered in sorted ``image_id`` order, so the
    same source always gives the same ids.
    """
    rows = keep_captions(rows, irregular, splits)
    report_duplicate_caption_numbers(rows, irregular)
    report_unusual_caption_counts(images_of(rows), irregular)
    return build_captions_partition(rows, assign_match_ids(rows))


def kept(splits: list[str] | None = None) -> pl.Expr:
    """The rows ``keep_captions`` keeps: a caption that is not blank, in one of ``splits``."""
    keep = _not_blank(pl.col(CAPTION).str.strip_chars())
    return keep & pl.col(SPLIT).is_in(splits) if splits else keep


def _not_blank(stripped: pl.Expr) -> pl.Expr:
    """A stripped caption that holds something (the one rule of ``kept`` and ``keep_captions``)."""
    return stripped.is_not_null() & (stripped != "")


def keep_captions(rows: pl.DataFrame, irregular, splits: list[str] | None = None
                  ) -> pl.DataFrame:
    """The rules of one caption row: strip the caption, drop (and report) the empty ones,
    report TABs and record keys, keep ``splits``. Rows are kept in their order, so a slice of
    the source (every row of its images) gives the rows the whole source gives for them."""
    caption = pl.col(CAPTION)
    shown = caption.str.slice(0, 80)  # how a caption appears in a finding's examples
    rows = rows.with_columns(stripped=caption.str.strip_chars())
    irregular.add(SOURCE_WHITESPACE_STRIPPED,
                  rows.filter(pl.col("stripped") != caption).select(IMAGE_ID, SOURCE_ROW, shown),
                  "caption(s) had surrounding whitespace stripped")
    empty = rows.filter(~_not_blank(pl.col("stripped")))
    irregular.add(SOURCE_EMPTY_CAPTION, empty.select(IMAGE_ID, CAPTION_IDX, SOURCE_ROW),
                  "empty caption(s) skipped")
    rows = rows.filter(_not_blank(pl.col("stripped")))
    rows = rows.with_columns(pl.col("stripped").alias(CAPTION)).drop("stripped")
    irregular.add(SOURCE_TAB_IN_CAPTION,
                  rows.filter(caption.str.contains("\t", literal=True))
                  .select(IMAGE_ID, SOURCE_ROW, shown),
                  "caption(s) contain a TAB")
    irregular.add(SOURCE_RECORD_KEY_IN_CAPTION,
                  rows.filter(caption.str.contains(RECORD_KEY)).select(IMAGE_ID, SOURCE_ROW, shown),
                  "caption(s) contain a record key (name.jpg#n)")
    if splits:
        split = pl.col(SPLIT)
        outside = rows.filter(~split.is_in(splits) | split.is_null())
        # one example per split left out, with its number of captions; the count is captions
        irregular.add(SOURCE_ROWS_OUTSIDE_SPLITS,
                      outside.group_by(SPLIT).agg(pl.len().alias("captions"))
                      .sort(SPLIT, nulls_last=True),
                      outside_splits_message(splits), count=outside.height)
        rows = rows.filter(split.is_in(splits))
    return rows


def outside_splits_message(splits: list[str]) -> str:
    return f"caption(s) left out (their split is not among {', '.join(splits)})"


def report_duplicate_caption_numbers(rows: pl.DataFrame, irregular) -> None:
    """Captions that share their image and caption number (``rows``: every row of their
    images)."""
    duplicated = rows.filter(pl.len().over(IMAGE_ID, CAPTION_IDX) > 1).sort(SOURCE_ROW)
    irregular.add(SOURCE_DUPLICATE_CAPTION_NUMBER,
                  duplicated.select(IMAGE_ID, CAPTION_IDX, SOURCE_ROW),
                  "caption(s) share an image and caption number with another")


def images_of(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per image: its captions and its first source row."""
    return rows.group_by(IMAGE_ID).agg(pl.len().alias("captions"), pl.col(SOURCE_ROW).min())


def usual_caption_count(counts: pl.DataFrame) -> int:
    """The most common number of captions of an image (the smallest of a tie), from
    ``counts``: ``captions`` and the number of images having it, ``images``."""
    most = counts.filter(pl.col("images") == pl.col("images").max())
    return int(most["captions"].min())


def report_unusual_caption_counts(per_image: pl.DataFrame, irregular,
                                  counts: pl.DataFrame | None = None) -> None:
    """Images with another number of captions than most (``per_image``: ``images_of``; where
    it holds only some images, ``counts`` has the images per caption count of all of them)."""
    if counts is None:
        counts = per_image.group_by("captions").agg(pl.len().alias("images"))
    if counts.height == 0:
        return
    usual = usual_caption_count(counts)
    unusual = per_image.filter(pl.col("captions") != usual).sort(SOURCE_ROW)
    irregular.add(SOURCE_CAPTION_COUNT_UNUSUAL, unusual,
                  f"image(s) have a caption count other than the usual {usual}",
                  count=int(counts.filter(pl.col("captions") != usual)["images"].sum()))


def assign_match_ids(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """``image_id`` -> ``match_id`` for every distinct image id of ``rows``: one group per
    image, numbered in sorted ``image_id`` order, so the same source always gives the same ids
    whatever engine or partitioning builds it. A LazyFrame (source shards) is read with polars'
    streaming engine: the result holds one row per image, not per caption."""
    distinct = rows.lazy().select(pl.col(IMAGE_ID).drop_nulls().unique().sort())
    return (distinct.with_row_index(MATCH_ID).select(IMAGE_ID, pl.col(MATCH_ID).cast(pl.Int64))
            .collect(engine="streaming"))


def build_captions_partition(rows: pl.DataFrame, match_ids: pl.DataFrame) -> pl.DataFrame:
    """Caption rows of one partition (``image_id``, ``caption_idx``, ``caption``, ``split``,
    ``source_row``, optional ``image_path``) as caption table rows: ``match_id`` looked up in
    ``match_ids`` (``assign_match_ids`` of the whole table), sorted by ``match_id``,
    ``caption_idx``, ``source_row`` and cast to the contract. The partitions' tables, put
    together and sorted the same way, are the table of the whole source.

    Raises:
        ToolError: an image id of ``rows`` is not in ``match_ids`` (made from other rows).
    """
    table = rows.drop(MATCH_ID, strict=False).join(match_ids, on=IMAGE_ID, how="left")
    # a null image_id keeps a null match_id, which validation reports (NULL_VALUES)
    missing = table.filter(pl.col(MATCH_ID).is_null() & pl.col(IMAGE_ID).is_not_null())
    if missing.height:
        raise ToolError(f"{missing.height} caption row(s) have an image_id that match_ids does "
                        f"not number (first: {missing[IMAGE_ID][0]!r}); make match_ids with "
                        "assign_match_ids from every row of the source")
    if IMAGE_PATH not in table.columns:
        table = table.with_columns(pl.lit(None, dtype=pl.String).alias(IMAGE_PATH))
    return (table.sort(MATCH_ID, CAPTION_IDX, SOURCE_ROW)
            .select([pl.col(name).cast(dtype) for name, dtype in CAPTION_SCHEMA.items()]))


def caption_stats(table: pl.DataFrame) -> dict:
    """The counts a build reports (stats): captions, images, groups, group sizes, splits."""
    return merge_caption_stats([partition_stats(table)])


def partition_stats(table: pl.DataFrame) -> dict:
    """``caption_stats`` of one partition of a caption table whose partitions hold whole
    images (and so whole groups): ``merge_caption_stats`` adds them up."""
    sizes = table.group_by(MATCH_ID).len()["len"]
    return {"captions": table.height, "images": table[IMAGE_ID].n_unique(),
            "groups": table[MATCH_ID].n_unique(),
            "sizes": [int(sizes.min()), int(sizes.max())] if sizes.len() else [],
            "splits": table.group_by(SPLIT).len()}


def merge_caption_stats(parts: list[dict]) -> dict:
    sizes = [size for part in parts for size in part["sizes"]]
    splits = (pl.concat([part["splits"] for part in parts]).group_by(SPLIT).agg(pl.col("len").sum())
              if parts else pl.DataFrame(schema={SPLIT: pl.String, "len": pl.UInt32}))
    return {
        "captions": sum(part["captions"] for part in parts),
        "images": sum(part["images"] for part in parts),
        "groups": sum(part["groups"] for part in parts),
        "group_size_min": min(sizes) if sizes else 0,
        "group_size_max": max(sizes) if sizes else 0,
        "splits": dict(splits.sort(SPLIT, nulls_last=True)
                       .select(pl.col(SPLIT).fill_null("null"), "len").iter_rows()),
    }
