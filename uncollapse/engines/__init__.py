"""Where work runs: ``local`` (one machine, polars' streaming engine, bounded memory) and
``ray`` (Ray Data, across the cores of a machine or the machines of a cluster; extra ``ray``).

Both engines run the same per-partition functions, defined once by the family packages and
named in ``uncollapse.engines.local``:

- ``partition_key(frame, column, n_partitions)``: the partition of each row, a stable hash
  (splitmix64) of an integer key (``match_id``, ``doc_id``), so a group never straddles two
  partitions and the same row lands in the same partition on every machine and every version;
- ``check_captions_partition(frame, limits, row_offset=...)``: what the caption rules measure
  on one partition (a ``CaptionPartial``: counts, per-group aggregates, caption keys);
- ``merge_caption_measurements(parts, source, limits)``: the partials of every partition,
  merged into the measurements of the whole table;
- ``validate_caption_measurements(measurements, target)``: the report of ``validate captions``;
- ``build_captions_partition(rows, match_ids)``: the caption table rows of one partition;
- ``sequence_partition(rows, vectors, context_length)``: the sequence windows of one partition
  of whole documents (``doc_id``); ``write_sequence_parts(parts, ...)``: the parts in
  ``doc_id`` order, written once as the sequence file;
- ``write_shards(frames, out_dir)``: Parquet shards plus ``manifest.json``.

``--engine local|ray`` picks one on the command line (``uncollapse.engines.cli``); the Ray
engine is ``uncollapse.engines.ray.RayEngine``.
"""

__all__ = ["ENGINES"]

ENGINES = ("local", "ray")
"""The names ``--engine`` accepts."""
