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

__all__ = ["assign_match_ids", "build_captions_partition", "caption_stats", "finalize"]


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
    return build_captions_partition(rows, assign_match_ids(rows))


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
