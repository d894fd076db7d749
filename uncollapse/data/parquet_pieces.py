"""One Parquet file written a piece at a time, and read a slice of row groups at a time.

``write_parquet_frames`` writes a table that arrives in pieces (a generator of polars frames:
the partitions of a build) as one file in row groups of ``ROW_GROUP_ROWS`` rows, whatever the
pieces' sizes, so the bytes are the same however the rows arrive (in one piece, in
partitions, from an engine's worker); ``write_shards_of`` does the same for a folder of
shards of a given size. ``row_group_ranges`` cuts a file into slices of whole
row groups, read from its footer, for a reader that takes it a slice at a time.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterable, Iterator

import polars as pl
import pyarrow.parquet as pq

from uncollapse.data.shards import Manifest, write_shard_files
from uncollapse.errors import ToolError

__all__ = ["ROW_GROUP_ROWS", "rechunk", "row_group_ranges", "write_parquet_frames",
           "write_shards_of"]


def row_group_ranges(path: str | os.PathLike, max_rows: int) -> list[tuple[int, int]]:
    """``(start, rows)`` of consecutive slices of the Parquet file ``path``, each whole row
    groups of at most ``max_rows`` rows together (or one larger row group): slices a reader
    takes without decoding a row group twice. Read from the footer alone."""
    metadata = pq.ParquetFile(str(path)).metadata
    ranges, start, rows = [], 0, 0
    for group in range(metadata.num_row_groups):
        size = metadata.row_group(group).num_rows
        if rows and rows + size > max_rows:
            ranges.append((start, rows))
            start, rows = start + rows, 0
        rows += size
    if rows or not ranges:
        ranges.append((start, rows))
    return ranges


ROW_GROUP_ROWS = 1 << 18
"""Rows of a Parquet row group that ``write_parquet_frames`` writes."""


def rechunk(frames: Iterable, rows: int) -> Iterator:
    """The rows of the polars DataFrames ``frames``, in order, as frames of exactly ``rows``
    rows (the last one fewer): the same pieces however the rows arrive. No rows at all give
    one empty frame (with the first frame's columns); no frames give none."""
    for _, pieces in _shard_pieces(frames, rows):
        yield pl.concat(list(pieces), rechunk=True)


def write_parquet_frames(frames: Iterable, path: str | os.PathLike, *,
                         row_group_rows: int = ROW_GROUP_ROWS) -> tuple[int, dict]:
    """Write the polars DataFrames ``frames`` (one table's rows, in order; a generator holds
    one in memory at a time) as one Parquet file of row groups of ``row_group_rows`` rows:
    the same bytes however the rows arrive. Gives the rows written and the schema (column ->
    dtype name). Write to a temporary path and rename it (``uncollapse.atomic``).

    Raises:
        ToolError: no frame was given, or a frame's columns differ from the first's.
    """
    writer, schema, rows = None, None, 0
    try:
        for frame in rechunk(frames, row_group_rows):
            if schema is None:
                schema = frame.schema
            elif frame.schema != schema:
                raise ToolError(f"{path}: a piece of the table has the columns "
                                f"{dict(frame.schema)}, the first has {dict(schema)}")
            table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema, compression="zstd")
            writer.write_table(table, row_group_size=row_group_rows)
            rows += frame.height
    finally:
        if writer is not None:
            writer.close()
    if schema is None:
        raise ToolError(f"nothing to write to {path}: no frame was given")
    return rows, {name: str(dtype) for name, dtype in schema.items()}


def write_shards_of(frames: Iterable, out_dir: str | os.PathLike, shard_rows: int) -> Manifest:
    """Write the table whose pieces are ``frames`` (polars frames of any sizes, in order) as
    Parquet shards of ``shard_rows`` rows (the last one fewer) and ``manifest.json``, as
    ``uncollapse.data.shards.write_shards`` writes them; each shard is written a piece at a
    time (``write_parquet_frames``), so neither a shard nor the table is ever in memory
    whole, and the bytes do not depend on how the rows arrive. No rows give one empty shard.

    Example:
        >>> write_shards_of(partitions, "captions/", 1_000_000)
    """
    return write_shard_files((functools.partial(write_parquet_frames, pieces)
                              for _, pieces in _shard_pieces(frames, shard_rows)), out_dir)


def _shard_pieces(frames: Iterable, shard_rows: int) -> Iterator[tuple[int, Iterator]]:
    """``(shard number, its pieces)`` of the table whose pieces are ``frames``: the pieces
    cut where a shard ends, each shard's pieces given lazily (read them before the next)."""
    if shard_rows < 1:
        raise ValueError(f"rows per piece must be at least 1, got {shard_rows}")
    numbered = _numbered_pieces(iter(frames), shard_rows)
    for number, group in itertools.groupby(numbered, key=lambda item: item[0]):
        yield number, (piece for _, piece in group)


def _numbered_pieces(frames: Iterator, shard_rows: int) -> Iterator[tuple[int, pl.DataFrame]]:
    held, number, first = 0, 0, None
    for frame in frames:
        first = frame if first is None else first
        while frame.height:
            take = min(shard_rows - held, frame.height)
            yield number, frame.slice(0, take)
            frame, held = frame.slice(take), held + take
            if held == shard_rows:
                number, held = number + 1, 0
    if number == 0 and held == 0 and first is not None:  # no rows: one empty shard
        yield 0, first.clear()
