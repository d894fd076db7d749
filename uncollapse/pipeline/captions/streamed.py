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
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.captions.contract import IMAGE_ID, SOURCE_ROW
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

__all__ = ["PARTITION_ROWS", "SLICE_ROWS", "StreamedCaptionBuild"]

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
        >>> write_shards(rechunk(build.tables(), 1_000_000), "captions/")
        >>> build.report().stats["captions"]
    """

    def __init__(self, files: list[Path], source: str, *, spill: Path,
                 splits: list[str] | None = None, slice_rows: int = SLICE_ROWS,
                 partition_rows: int = PARTITION_ROWS):
        self.files, self.source, self.splits = [str(f) for f in files], source, splits
        self.spill, self.slice_rows, self.partition_rows = spill, slice_rows, partition_rows
        self.read = IrregularityTally()
        self.rules = IrregularityTally(
            summed={SOURCE_ROWS_OUTSIDE_SPLITS.name: ("split", "captions")})
        self.counts: list[pl.DataFrame] = []
        self.first_images: list[pl.DataFrame] = []
        self.stats: list[dict] = []
        self.done = False

    # reading ---------------------------------------------------------------------------------

    def _scan(self) -> pl.LazyFrame:
        with _reading(self.source):
            schema = pl.scan_parquet(self.files[0]).collect_schema()
            self.one_per_row = check_hf_layout(schema, self.source)
            self.columns = [c for c in ("caption", "split", "img_id", "filename") if c in schema]
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
                table = self._partition(rows, ids)
                self.stats.append(partition_stats(table))
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

    def _partition(self, rows: pl.DataFrame, match_ids: pl.DataFrame) -> pl.DataFrame:
        """The table of one partition's rows (every row of its images, in source order)."""
        if self.one_per_row:
            rows = number_captions_in_row_order(rows)
        rows = keep_captions(rows, self.rules, self.splits)
        report_duplicate_caption_numbers(rows, self.rules)
        images = images_of(rows)
        self.counts.append(images.group_by("captions").agg(pl.len().alias("images")))
        # the first images (by source row) of each caption count: the examples of any count
        self.first_images.append(images.sort(SOURCE_ROW).filter(
            pl.int_range(pl.len()).over("captions") < EXAMPLES))
        return build_captions_partition(rows, match_ids)

    def report(self, format: str = "hf") -> Report:
        """The build report (after ``tables()`` has given every partition)."""
        if not self.done:
            raise RuntimeError("report() comes after every table of tables()")
        irregular = Irregularities(self.source)
        self.read.add_to(irregular)
        self.rules.add_to(irregular)
        if self.counts:
            report_unusual_caption_counts(pl.concat(self.first_images), irregular,
                                          pl.concat(self.counts).group_by("captions")
                                          .agg(pl.col("images").sum()))
        return irregular.report({"format": format, **merge_caption_stats(self.stats)})


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
