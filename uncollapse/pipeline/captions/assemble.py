"""From rows read out of a source to the caption table (docs/data-contracts.md)."""

from __future__ import annotations

import polars as pl

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


def finalize(rows: pl.DataFrame, irregular: Irregularities,
             splits: list[str] | None = None) -> pl.DataFrame:
    """Strip, drop (and report) empty captions, keep ``splits``, number the positive groups.

    ``match_id`` is one group per ``image_id``, numbered in sorted ``image_id`` order, so the
    same source always gives the same ids.
    """
    rows = rows.with_columns(stripped=pl.col("caption").str.strip_chars())
    irregular.add(SOURCE_WHITESPACE_STRIPPED,
                  rows.filter(pl.col("stripped") != pl.col("caption"))
                  .select("image_id", "source_row",
                          caption=pl.col("caption").str.slice(0, 80)),
                  "caption(s) had surrounding whitespace stripped")
    empty = rows.filter(pl.col("stripped").is_null() | (pl.col("stripped") == ""))
    irregular.add(SOURCE_EMPTY_CAPTION, empty.select("image_id", "caption_idx",
                                                      "source_row"),
                  "empty caption(s) skipped")
    rows = rows.filter(pl.col("stripped").is_not_null() & (pl.col("stripped") != ""))
    rows = rows.with_columns(pl.col("stripped").alias("caption")).drop("stripped")
    irregular.add(SOURCE_TAB_IN_CAPTION,
                  rows.filter(pl.col("caption").str.contains("\t", literal=True))
                  .select("image_id", "source_row", caption=pl.col("caption").str.slice(0, 80)),
                  "caption(s) contain a TAB")
    irregular.add(SOURCE_RECORD_KEY_IN_CAPTION,
                  rows.filter(pl.col("caption").str.contains(RECORD_KEY))
                  .select("image_id", "source_row", caption=pl.col("caption").str.slice(0, 80)),
                  "caption(s) contain a record key (name.jpg#n)")
    if splits:
        outside = rows.filter(~pl.col("split").is_in(splits) | pl.col("split").is_null())
        # one example per split left out, with its number of captions; the count is captions
        irregular.add(SOURCE_ROWS_OUTSIDE_SPLITS,
                      outside.group_by("split").agg(pl.len().alias("captions"))
                      .sort("split", nulls_last=True),
                      f"caption(s) left out (their split is not among {', '.join(splits)})",
                      count=outside.height)
        rows = rows.filter(pl.col("split").is_in(splits))
    duplicated = rows.filter(pl.len().over("image_id", "caption_idx") > 1).sort("source_row")
    irregular.add(SOURCE_DUPLICATE_CAPTION_NUMBER,
                  duplicated.select("image_id", "caption_idx", "source_row"),
                  "caption(s) share an image and caption number with another")
    per_image = rows.group_by("image_id").agg(captions=pl.len(),
                                              source_row=pl.col("source_row").min())
    if per_image.height:
        usual = per_image["captions"].mode().sort()[0]
        irregular.add(SOURCE_CAPTION_COUNT_UNUSUAL,
                      per_image.filter(pl.col("captions") != usual).sort("source_row"),
                      f"image(s) have a caption count other than the usual {usual}")
    table = rows.with_columns(
        match_id=(pl.col("image_id").rank("dense") - 1).cast(pl.Int64),
    ).sort("match_id", "caption_idx", "source_row")
    return table.select([pl.col(name).cast(dtype) for name, dtype in CAPTION_SCHEMA.items()])


def caption_stats(table: pl.DataFrame) -> dict:
    sizes = table.group_by("match_id").len()["len"]
    return {
        "captions": table.height,
        "images": table["image_id"].n_unique(),
        "groups": table["match_id"].n_unique(),
        "group_size_min": int(sizes.min()) if sizes.len() else 0,
        "group_size_max": int(sizes.max()) if sizes.len() else 0,
        "splits": dict(table.group_by("split").len().sort("split", nulls_last=True)
                       .select(pl.col("split").fill_null("null"), "len").iter_rows()),
    }
