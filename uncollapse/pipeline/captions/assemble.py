"""From rows read out of a source to the caption table (docs/data-contracts.md)."""

from __future__ import annotations

import polars as pl

from uncollapse.data.captions.contract import (
    CAPTION,
    CAPTION_IDX,
    IMAGE_ID,
    MATCH_ID,
    SOURCE_ROW,
    SPLIT,
)
from uncollapse.data.captions.table import CAPTION_SCHEMA
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

__all__ = ["caption_stats", "finalize"]


def finalize(rows: pl.DataFrame, irregular: Irregularities,
             splits: list[str] | None = None) -> pl.DataFrame:
    """Strip, drop (and report) empty captions, keep ``splits``, number the positive groups.

    ``match_id`` is one group per ``image_id``, numbered in sorted ``image_id`` order, so the
    same source always gives the same ids.
    """
    caption = pl.col(CAPTION)
    shown = caption.str.slice(0, 80)  # how a caption appears in a finding's examples
    rows = rows.with_columns(stripped=caption.str.strip_chars())
    irregular.add(SOURCE_WHITESPACE_STRIPPED,
                  rows.filter(pl.col("stripped") != caption).select(IMAGE_ID, SOURCE_ROW, shown),
                  "caption(s) had surrounding whitespace stripped")
    empty = rows.filter(pl.col("stripped").is_null() | (pl.col("stripped") == ""))
    irregular.add(SOURCE_EMPTY_CAPTION, empty.select(IMAGE_ID, CAPTION_IDX, SOURCE_ROW),
                  "empty caption(s) skipped")
    rows = rows.filter(pl.col("stripped").is_not_null() & (pl.col("stripped") != ""))
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
                      f"caption(s) left out (their split is not among {', '.join(splits)})",
                      count=outside.height)
        rows = rows.filter(split.is_in(splits))
    duplicated = rows.filter(pl.len().over(IMAGE_ID, CAPTION_IDX) > 1).sort(SOURCE_ROW)
    irregular.add(SOURCE_DUPLICATE_CAPTION_NUMBER,
                  duplicated.select(IMAGE_ID, CAPTION_IDX, SOURCE_ROW),
                  "caption(s) share an image and caption number with another")
    per_image = rows.group_by(IMAGE_ID).agg(pl.len().alias("captions"),
                                            pl.col(SOURCE_ROW).min())
    if per_image.height:
        usual = per_image["captions"].mode().sort()[0]
        irregular.add(SOURCE_CAPTION_COUNT_UNUSUAL,
                      per_image.filter(pl.col("captions") != usual).sort(SOURCE_ROW),
                      f"image(s) have a caption count other than the usual {usual}")
    table = rows.with_columns(
        (pl.col(IMAGE_ID).rank("dense") - 1).cast(pl.Int64).alias(MATCH_ID),
    ).sort(MATCH_ID, CAPTION_IDX, SOURCE_ROW)
    return table.select([pl.col(name).cast(dtype) for name, dtype in CAPTION_SCHEMA.items()])


def caption_stats(table: pl.DataFrame) -> dict:
    sizes = table.group_by(MATCH_ID).len()["len"]
    return {
        "captions": table.height,
        "images": table[IMAGE_ID].n_unique(),
        "groups": table[MATCH_ID].n_unique(),
        "group_size_min": int(sizes.min()) if sizes.len() else 0,
        "group_size_max": int(sizes.max()) if sizes.len() else 0,
        "splits": dict(table.group_by(SPLIT).len().sort(SPLIT, nulls_last=True)
                       .select(pl.col(SPLIT).fill_null("null"), "len").iter_rows()),
    }
