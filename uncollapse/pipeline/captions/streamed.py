"""The caption table of Parquet files in the nlphuji/flickr30k layout (a folder of shards, a
glob, one file) built in bounded memory: the source is read a slice of rows at a time, never
whole, and the table comes out a partition at a time, in its order.

1. Ranges of image ids: the image id column of each slice (nothing else is read), a sample
   of its sorted values, cut into ``partitions`` ranges of about ``partition_rows`` source
   rows. Any cut is correct; an even one keeps the partitions small.
2. Each slice: its caption rows (``hf_caption_rows``; rows without captions reported), the
   image ids it keeps (for the match ids) and its rows spilled to a Parquet file per range
   of image ids, under the build's temporary folder.
3. Match ids: ``assign_match_ids`` of the kept image ids (one row per image, not per
   caption), numbered in sorted ``image_id`` order as every build numbers them.
4. Each range in image id order, holding every row of its images: the row rules
   (``keep_captions``), the per-image rules, ``build_captions_partition``. Match ids grow
   with the image ids, so the partitions' tables, one after another, are the table sorted
   as the contract sorts it, and the findings, merged (``IrregularityTally``), are those of
   the source read at once.

Memory: one slice, one partition's rows, and the image ids with their match ids.
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.captions.contract import CAPTION_IDX, IMAGE_ID, MATCH_ID, SOURCE_ROW
from uncollapse.data.captions.table import CAPTION_SCHEMA
from uncollapse.data.polars_read import READ_FAILURES, reason
from uncollapse.errors import InputError
from uncollapse.pipeline.captions.assemble import (
    assign_match_ids,
    build_captions_partition,
    images_of,
    keep_captions,
    kept,
    merge_caption_stats,
    partition_stats,
    report_duplicate_caption_numbers,
    report_unusual_caption_counts,
)
from uncollapse.pipeline.captions.hf import (
    HF_COLUMNS,
    NO_CAPTIONS,
    check_hf_layout,
    hf_caption_rows,
    hf_image_id,
    number_captions_in_row_order,
)
from uncollapse.pipeline.captions.irregularities import (
    EXAMPLES,
    SOURCE_ROWS_OUTSIDE_SPLITS,
    SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS,
    Irregularities,
    IrregularityTally,
)
from uncollapse.report import Report

__all__ = ["PARTITION_ROWS", "SLICE_ROWS", "FinishedPartition", "StreamedCaptionBuild",
           "build_on_engine", "finish_partition"]

SLICE_ROWS = 200_000
"""Source rows read at a time (a million captions of five per row)."""
PARTITION_ROWS = 200_000
"""Source rows of a partition (a range of image ids), about."""
SAMPLES_PER_SLICE = 256
"""Order statistics of each slice's image ids that the ranges are cut from."""


class StreamedCaptionBuild:
    """One build of the caption table of Parquet ``files`` (flickr30k layout, rows in the
    order of ``files``), a slice at a time.

    ``tables()`` yields the table a partition at a time, in order; once it is exhausted,
    ``report()`` gives the build report, the same as reading the source at once gives.
    ``spill``: a folder for the partitions' rows (removed when ``tables()`` ends).

    Example:
        >>> build = StreamedCaptionBuild(files, "shards/", spill=tmp)
        >>> write_shards_of(build.tables(), "captions/", 1_000_000)
        >>> build.report().stats["captions"]
    """

    def __init__(self, files: list[Path], source: str, *, spill: Path,
                 splits: list[str] | None = None, slice_rows: int = SLICE_ROWS,
                 partition_rows: int = PARTITION_ROWS):
        self.files, self.source, self.splits = [str(f) for f in files], source, splits
        self.spill, self.slice_rows, self.partition_rows = spill, slice_rows, partition_rows
        self.read = IrregularityTally()
        self.finished: list[FinishedPartition] = []
        self.done = False

    # reading ---------------------------------------------------------------------------------

    def _scan(self) -> pl.LazyFrame:
        self.columns, self.one_per_row = hf_layout(self.files, self.source)
        with _reading(self.source):
            scan = pl.scan_parquet(self.files).select(self.columns)
            self.source_rows = scan.select(pl.len()).collect().item()
        return scan

    def _slices(self, plan: pl.LazyFrame) -> Iterator[tuple[int, pl.DataFrame]]:
        for start in range(0, self.source_rows, self.slice_rows):
            with _reading(self.source):
                frame = plan.slice(start, self.slice_rows).collect()
            yield start, frame

    def _boundaries(self, scan: pl.LazyFrame, partitions: int) -> pl.Series:
        """``partitions - 1`` image ids cutting the sorted ids into ranges of about equal
        rows, from a sample of each slice's sorted ids."""
        if partitions == 1:
            return pl.Series(IMAGE_ID, [], dtype=pl.String)
        samples = []
        ids = scan.select(hf_image_id(self.columns))
        for _, frame in self._slices(ids):
            sorted_ids = frame.get_column(IMAGE_ID).drop_nulls().sort()
            if sorted_ids.len():
                at = np.linspace(0, sorted_ids.len() - 1, SAMPLES_PER_SLICE).round()
                samples.append(sorted_ids.gather(np.unique(at.astype(np.int64))))
        if not samples:
            return pl.Series(IMAGE_ID, [], dtype=pl.String)
        sample = pl.concat(samples).sort()
        cuts = np.arange(1, partitions) * sample.len() // partitions
        return sample.gather(cuts).unique(maintain_order=True)

    # the build ---------------------------------------------------------------------------------

    def tables(self) -> Iterator[pl.DataFrame]:
        """The caption table, a partition at a time, in the contract's order."""
        scan = self._scan()
        partitions = max(1, math.ceil(self.source_rows / self.partition_rows))
        boundaries = self._boundaries(scan, partitions)
        folder = Path(tempfile.mkdtemp(prefix="partitions-", dir=self.spill))
        try:
            pieces, kept_ids = self._spill(scan, boundaries, folder)
            match_ids = assign_match_ids(pl.concat(kept_ids) if kept_ids
                                         else pl.DataFrame(schema={IMAGE_ID: pl.String}))
            # the match ids of partition p: rows starts[p]..starts[p+1] of match_ids
            starts = np.r_[0, match_ids.get_column(IMAGE_ID).search_sorted(boundaries, "left")
                           .to_numpy(), match_ids.height]
            given = False
            for partition in sorted(pieces):
                rows = pl.read_parquet(pieces[partition])
                ids = match_ids.slice(starts[partition],
                                      starts[partition + 1] - starts[partition])
                if self.one_per_row:
                    rows = number_captions_in_row_order(rows)
                finished = finish_partition(rows, ids, self.splits)
                table, finished.table = finished.table, None  # the rest is kept for report()
                self.finished.append(finished)
                if table.height:
                    given = True
                    yield table
            if not given:
                yield pl.DataFrame(schema=CAPTION_SCHEMA)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.done = True

    def _spill(self, scan: pl.LazyFrame, boundaries: pl.Series, folder: Path
               ) -> tuple[dict[int, list[Path]], list[pl.DataFrame]]:
        pieces: dict[int, list[Path]] = {}
        kept_ids = []
        for start, frame in self._slices(scan):
            rows, without = hf_caption_rows(frame, row_offset=start)
            self.read.add(SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS, without, NO_CAPTIONS)
            kept_ids.append(rows.filter(kept(self.splits)).select(IMAGE_ID).unique())
            image = rows.get_column(IMAGE_ID)
            found = boundaries.search_sorted(image.fill_null(""), "right").to_numpy()
            # rows without an image id come first, as their null match_id sorts first
            partition = pl.Series("partition", np.where(image.is_null().to_numpy(), 0, found),
                                  dtype=pl.Int64)
            for (number,), piece in (rows.with_columns(partition)
                                     .partition_by("partition", as_dict=True,
                                                   maintain_order=True).items()):
                path = folder / f"{number:05d}-{start:012d}.parquet"
                piece.drop("partition").write_parquet(path)
                pieces.setdefault(number, []).append(path)
        return pieces, kept_ids

    def report(self, format: str = "hf") -> Report:
        """The build report (after ``tables()`` has given every partition)."""
        if not self.done:
            raise RuntimeError("report() comes after every table of tables()")
        return _report_of(self.source, [self.read], self.finished, format)


# What every engine runs: a partition finished, the findings of all merged ---------------------

@dataclass
class FinishedPartition:
    """One partition's caption table and what the build report needs of it."""

    table: pl.DataFrame | None
    rules: IrregularityTally
    counts: pl.DataFrame
    first_images: pl.DataFrame
    stats: dict


def finish_partition(rows: pl.DataFrame, match_ids: pl.DataFrame,
                     splits: list[str] | None = None) -> FinishedPartition:
    """The caption table of one partition's rows (every row of its images, in source order,
    captions numbered): the row rules, the per-image rules and ``build_captions_partition``
    with ``match_ids`` (those of its images, or more)."""
    rules = IrregularityTally(summed={SOURCE_ROWS_OUTSIDE_SPLITS.name: ("split", "captions")})
    rows = keep_captions(rows, rules, splits)
    report_duplicate_caption_numbers(rows, rules)
    images = images_of(rows)
    table = build_captions_partition(rows, match_ids)
    return FinishedPartition(
        table=table, rules=rules,
        counts=images.group_by("captions").agg(pl.len().alias("images")),
        # the first images (by source row) of each caption count: the examples of any count
        first_images=images.sort(SOURCE_ROW).filter(
            pl.int_range(pl.len()).over("captions") < EXAMPLES),
        stats=partition_stats(table))


def _report_of(source: str, read: list[IrregularityTally], finished: list[FinishedPartition],
                 format: str = "hf") -> Report:
    """The report of a build from the tallies of its slices (``read``) and its partitions,
    as reading the source at once gives it."""
    irregular = Irregularities(source)
    merged_read, rules = IrregularityTally(), IrregularityTally(
        summed={SOURCE_ROWS_OUTSIDE_SPLITS.name: ("split", "captions")})
    for tally in read:
        merged_read.extend(tally)
    for part in finished:
        rules.extend(part.rules)
    merged_read.add_to(irregular)
    rules.add_to(irregular)
    if finished:
        report_unusual_caption_counts(pl.concat([p.first_images for p in finished]), irregular,
                                      pl.concat([p.counts for p in finished])
                                      .group_by("captions").agg(pl.col("images").sum()))
    return irregular.report({"format": format,
                             **merge_caption_stats([p.stats for p in finished])})


def hf_layout(files: list, source: str) -> tuple[list[str], bool]:
    """The flickr30k-layout columns to read from Parquet ``files`` and whether captions
    come one per row (``check_hf_layout`` of the first file's schema)."""
    with _reading(source):
        schema = pl.scan_parquet(str(files[0])).collect_schema()
    one_per_row = check_hf_layout(schema, source)
    return [c for c in HF_COLUMNS if c in schema], one_per_row


# On another engine (``uncollapse.engines.ray.RayEngine``) ---------------------------------------

def build_on_engine(engine, files: list, source: str, splits: list[str] | None = None
                    ) -> tuple[pl.DataFrame, Report]:
    """The caption table and report of Parquet ``files`` (flickr30k layout) built by
    ``engine``: its tasks read slices of rows and give their kept image ids; the match ids
    are assigned here (``assign_match_ids``); the tasks read the slices again, the rows are
    partitioned by a stable hash of ``match_id`` (an image whole in one partition) and each
    partition is finished by ``finish_partition``, as on the local engine. The partitions'
    tables, sorted as the contract sorts the table, are the local engine's table."""
    columns, one_per_row = hf_layout(files, source)
    what = f"building captions from {source}"
    read = engine.map_slices(files, columns, functools.partial(_kept_image_ids, splits=splits),
                             what=what)
    kept_ids = [ids for ids, _ in read]
    match_ids = assign_match_ids(pl.concat(kept_ids) if kept_ids
                                 else pl.DataFrame(schema={IMAGE_ID: pl.String}))
    finished = engine.group_slices(
        files, columns, read_slice=_rows_with_match_ids, shared=match_ids, key=MATCH_ID,
        per_partition=functools.partial(_finish_on_engine, one_per_row=one_per_row,
                                        splits=splits), what=what)
    tables = [part.table for part in finished if part.table.height]
    table = (pl.concat(tables).sort(MATCH_ID, CAPTION_IDX, SOURCE_ROW) if tables
             else pl.DataFrame(schema=CAPTION_SCHEMA))
    return table, _report_of(source, [tally for _, tally in read], finished)


def _kept_image_ids(frame: pl.DataFrame, start: int, shared, *, splits
                    ) -> tuple[pl.DataFrame, IrregularityTally]:
    rows, without = hf_caption_rows(frame, row_offset=start)
    tally = IrregularityTally()
    tally.add(SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS, without, NO_CAPTIONS)
    return rows.filter(kept(splits)).select(IMAGE_ID).unique(), tally


def _rows_with_match_ids(frame: pl.DataFrame, start: int, match_ids: pl.DataFrame
                         ) -> pl.DataFrame:
    rows, _ = hf_caption_rows(frame, row_offset=start)
    # rows of an image without a kept caption keep a null match_id: one partition holds them
    return rows.join(match_ids, on=IMAGE_ID, how="left", maintain_order="left")


def _finish_on_engine(rows: pl.DataFrame, *, one_per_row: bool, splits) -> FinishedPartition:
    if one_per_row:
        rows = number_captions_in_row_order(rows)
    ids = rows.select(IMAGE_ID, MATCH_ID).filter(pl.col(MATCH_ID).is_not_null()).unique()
    return finish_partition(rows.drop(MATCH_ID), ids, splits)


@contextlib.contextmanager
def _reading(source: str):
    """Turn a failure of the polars read in the block into an error naming the source."""
    try:
        yield
    except InputError:
        raise
    except READ_FAILURES as exc:  # polars raises several types, and panics
        raise InputError(source, f"cannot read the Parquet file(s): {reason(exc)}; rebuild "
                         "them") from exc
