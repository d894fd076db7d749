"""The local engine: one machine, data larger than its memory, through polars' streaming
engine; and the per-partition functions the Ray engine (``uncollapse.engines.ray``) runs too.

The contract between the engines (what a partition is, what each function returns):

Partitions
    ``partition_key(frame, column, n)`` gives each row a partition in ``0..n-1`` from the
    splitmix64 hash of its int64 key (``match_id`` of a caption table, ``doc_id`` of a
    sequence file). The hash is written out here (numpy, and the same arithmetic as a polars
    expression, ``partition_expr``), so it never changes with a library's version, unlike
    Python's ``hash`` or polars' ``Expr.hash``. Rows of one group share a partition.

Checking captions
    ``check_captions_partition(frame, limits, row_offset=0) -> CaptionPartial``: one pass over
    a partition (a ``DataFrame``, or a ``LazyFrame`` collected with the streaming engine):
    counts (rows, nulls, control characters, record keys, implausible lengths, the numeric
    image ids' range), one row per ``match_id`` (size, min/max image hash, min/max split
    code), and the hash of every normalised caption. Rows are numbered from ``row_offset``
    unless the frame has a ``row`` column (the row's position in the whole table), which the
    positional-id rule needs. A partial is small beside its partition: about 40 bytes per
    group and 8 per caption.

    ``merge_caption_measurements(parts, source, limits) -> CaptionMeasurements``: partials of
    any partitioning (hash partitions or plain shards: groups split across partials are
    re-aggregated) merged into the measurements of the whole table. ``source`` (a LazyFrame
    of the whole table) is scanned again only for what a failing rule reports: its rows and
    examples.

    ``caption_report(measurements, target) -> Report``: the pandera model's verdict on the
    measured table and the findings of ``validate captions``.

Building captions
    ``build_captions_partition(rows, match_ids) -> DataFrame``: source rows of one partition
    (``image_id``, ``caption_idx``, ``caption``, ``split``, ``source_row``, ...) as caption
    table rows, with ``match_id`` from ``match_ids`` (``image_id`` -> ``match_id``, one global
    table made once by ``assign_match_ids``), sorted by ``match_id``, ``caption_idx``,
    ``source_row``.

Writing
    ``write_shards(frames, out_dir) -> Manifest``: each frame becomes
    ``part-00000.parquet``, ... in a temporary folder renamed into place, with
    ``manifest.json`` (files, rows, schema, sha256 of each file) written last. polars
    (``pl.scan_parquet(out_dir / "*.parquet")``), Hugging Face ``datasets``
    (``load_dataset("parquet", data_files=...)``) and Ray (``ray.data.read_parquet``) read
    the folder as it is.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_PARTITIONS", "partition_expr", "partition_key", "stable_bucket"]

DEFAULT_PARTITIONS = 64
"""Partitions of a table when nothing else decides (a few per core of a small cluster)."""

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def stable_bucket(keys: np.ndarray, n_partitions: int) -> np.ndarray:
    """The partition (int32, ``0..n_partitions-1``) of each int64 key: splitmix64, mod n.

    Example:
        >>> stable_bucket(np.array([0, 1, 2, 3]), 4).tolist()
        [3, 1, 2, 1]
    """
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be at least 1, got {n_partitions}")
    z = np.ascontiguousarray(keys, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_partitions)).astype(np.int32)


def partition_expr(column: str, n_partitions: int):
    """``stable_bucket`` as a polars expression (Int32), for lazy and streaming plans."""
    import polars as pl

    if n_partitions < 1:
        raise ValueError(f"n_partitions must be at least 1, got {n_partitions}")

    def u64(value: int) -> pl.Expr:
        return pl.lit(value, dtype=pl.UInt64)

    z = pl.col(column).cast(pl.Int64).reinterpret(signed=False) + u64(_GOLDEN)
    z = (z ^ (z // u64(1 << 30))) * u64(_MIX1)
    z = (z ^ (z // u64(1 << 27))) * u64(_MIX2)
    z = z ^ (z // u64(1 << 31))
    return (z % u64(n_partitions)).cast(pl.Int32).alias("partition")


def partition_key(frame, column: str, n_partitions: int = DEFAULT_PARTITIONS):
    """The partition of each row of ``frame`` (a polars DataFrame, or anything with
    ``frame[column]`` convertible to an int64 numpy array, such as a pandas frame or a
    pyarrow table's column), as an int32 numpy array; nulls fall in the partition of -1."""
    values = frame[column]
    if hasattr(values, "fill_null"):  # polars Series
        values = values.fill_null(-1).to_numpy()
    elif hasattr(values, "to_numpy"):
        values = np.asarray(values.to_numpy(), dtype=np.int64)
    return stable_bucket(np.asarray(values, dtype=np.int64), n_partitions)
