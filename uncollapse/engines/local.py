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
    positional-id rule needs. A partial is small beside its partition: 44 bytes per group
    and 8 per caption. On one machine, ``CaptionMeasurements.of_partitions`` measures the
    shards of a folder this way, one at a time (``validate captions DIR/``).

    ``merge_caption_measurements(parts, source, limits) -> CaptionMeasurements``: partials of
    any partitioning (hash partitions or plain shards: groups split across partials are
    re-aggregated) merged into the measurements of the whole table. ``source`` (a LazyFrame
    of the whole table) is scanned again only for what a failing rule reports: its rows and
    examples. An engine that partitions rows by ``partition_key`` should add the ``row``
    column before it shuffles them.

    ``validate_caption_measurements(measurements, target) -> Report``: the pandera model's
    verdict on the measured table and the findings of ``validate captions``.

Building captions
    ``build_captions_partition(rows, match_ids) -> DataFrame``: caption rows of one partition
    (``image_id``, ``caption_idx``, ``caption``, ``split``, ``source_row``, optional
    ``image_path``) as caption table rows, with ``match_id`` looked up in ``match_ids``
    (``image_id`` -> ``match_id``, made once for the whole table by ``assign_match_ids``:
    one group per image, numbered in sorted ``image_id`` order as every build numbers them),
    sorted by ``match_id``, ``caption_idx``, ``source_row``, cast to the contract.

    ``finish_partition(rows, match_ids, splits) -> FinishedPartition``: the caption rows of
    every image of a partition, in source order, finished as a build finishes them: the row
    rules (blank captions dropped and reported, splits kept), the per-image rules, then
    ``build_captions_partition``; with the partition's findings and stats, which the build
    merges into the report of the whole source. On one machine,
    ``StreamedCaptionBuild`` runs it on each range of image ids of Parquet shards in the
    flickr30k layout (``build captions DIR/``), and the table is written a range at a time;
    the Ray engine runs it on each hash partition of ``match_id``.

Building sequences
    ``sequence_partition(rows, vectors, context_length, compact=..., texts=...) ->
    SequencePart``: the windows of one partition of whole documents (chunk rows sorted by
    ``doc_id``, ``position``, and their vectors): dense form, each window's context
    [n, C, D] and target [n, D] float32 vectors, ``doc_ids``, ``target_positions`` and
    target text; compact form, each document's ``doc_id``, length and ``doc_key``; both, the
    windows and short documents counted. The local engine runs it once, on the whole table;
    the Ray engine on each partition of ``partition_key(..., "doc_id", n)``, on its workers
    (``RayEngine.map_groups``).

    ``write_sequence_parts(parts, chunks, vectors, context_length, out_path, ...) -> stats``:
    the parts of any partitioning, in any order, put in ``doc_id`` order (a document lies in
    one part, its windows in order) and written once, byte for byte the file of one
    partition; a dense member is gathered from the parts a block at a time as it is written.
    The compact form's vectors and texts are the input's, unchanged: they are streamed from
    the chunk table and the (memory-mapped) vectors, never through a partition.

Writing
    ``write_shards(frames, out_dir) -> Manifest``: each frame becomes
    ``part-00000.parquet``, ... (``write_shards_of(frames, out_dir, shard_rows)``: the frames
    are pieces of one table, cut into shards of that many rows, each written a piece at a
    time) in a temporary folder renamed into place, with
    ``manifest.json`` (files, rows, schema, sha256 of each file) written last. polars
    (``pl.scan_parquet(out_dir / "*.parquet")``), Hugging Face ``datasets``
    (``load_dataset("parquet", data_files=...)``) and Ray (``ray.data.read_parquet``) read
    the folder as it is.
"""

from __future__ import annotations

import numpy as np

from uncollapse.data.shards import (
    copy_shards,
    partition_expr,
    read_manifest,
    shard_files,
    stable_bucket,
    write_shards,
)
from uncollapse.pipeline.captions.assemble import assign_match_ids, build_captions_partition
from uncollapse.pipeline.captions.streamed import finish_partition
from uncollapse.pipeline.sequences.sequence_file import sequence_partition, write_sequence_parts
from uncollapse.validators.captions.measure import (
    check_captions_partition,
    merge_caption_measurements,
)
from uncollapse.validators.captions.rules import validate_caption_measurements

# the classes the functions take and give (CaptionLimits, CaptionPartial, Manifest,
# SequencePart) keep their one public import path: uncollapse.validators.captions,
# uncollapse.data.shards and uncollapse.pipeline.sequences.sequence_file
__all__ = ["DEFAULT_PARTITIONS", "assign_match_ids", "build_captions_partition",
           "check_captions_partition", "copy_shards", "finish_partition",
           "merge_caption_measurements", "partition_expr", "partition_key", "read_manifest",
           "sequence_partition", "shard_files", "stable_bucket",
           "validate_caption_measurements", "write_sequence_parts", "write_shards"]

DEFAULT_PARTITIONS = 64
"""Partitions of a table when nothing else decides (a few per core of a small cluster)."""


def partition_key(frame, column: str, n_partitions: int = DEFAULT_PARTITIONS) -> np.ndarray:
    """The partition (int32 numpy array, ``0..n_partitions-1``) of each row of ``frame``: a
    polars DataFrame, a pyarrow Table, a pandas frame or a dict of numpy arrays (a Ray Data
    batch), keyed by the int64 ``column``; nulls fall in the partition of -1.

    Example:
        >>> partition_key(pl.DataFrame({"match_id": [0, 1, 2, 3]}), "match_id", 4).tolist()
        [3, 1, 2, 1]
    """
    values = frame[column]
    if hasattr(values, "fill_null"):  # a polars Series or a pyarrow array
        values = values.fill_null(-1)
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    return stable_bucket(np.asarray(values, dtype=np.int64), n_partitions)
