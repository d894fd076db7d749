"""Tables stored as a folder of Parquet shards, and the stable partition of a row.

A sharded table is a folder of ``part-00000.parquet``, ``part-00001.parquet``, ... and a
``manifest.json`` written last (``SHARD_MANIFEST``: each file's rows and SHA-256, the schema,
the total rows), so polars (``pl.scan_parquet("DIR/*.parquet")``), Hugging Face ``datasets``
(``load_dataset("parquet", data_files="DIR/*.parquet")``) and Ray
(``ray.data.read_parquet("DIR")``) read it as it is, and a reader can tell a complete folder
from a damaged one. ``shard_files`` finds the shards of a folder or a glob in a stable order
(the order rows are numbered in).

``stable_bucket`` and ``partition_expr`` give a row's partition from its int64 key (match_id,
doc_id) by splitmix64, written out here so that it never changes with a library's version.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uncollapse.atomic import HOST_TAG, temp_prefix
from uncollapse.digests import sha256_file
from uncollapse.errors import InputError, ToolError

__all__ = ["ROW_GROUP_ROWS", "SHARD_MANIFEST", "SHARD_PATTERN", "Manifest", "copy_shards",
           "is_sharded", "partition_expr", "read_manifest", "rechunk", "row_group_ranges",
           "shard_files",
           "stable_bucket", "write_parquet_frames", "write_shards"]

SHARD_MANIFEST = "manifest.json"
SHARD_PATTERN = "part-{:05d}.parquet"
MANIFEST_FORMAT = 1
GLOB_CHARACTERS = "*?["

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
    """``stable_bucket`` of ``column`` as a polars expression (Int32, named ``partition``),
    for lazy and streaming plans; nulls stay null."""
    import polars as pl

    if n_partitions < 1:
        raise ValueError(f"n_partitions must be at least 1, got {n_partitions}")

    def u64(value: int) -> pl.Expr:
        return pl.lit(value, dtype=pl.UInt64)

    # polars' integer arithmetic wraps like numpy's; a right shift is a division by 2**k
    z = pl.col(column).cast(pl.Int64).reinterpret(signed=False) + u64(_GOLDEN)
    z = (z ^ (z // u64(1 << 30))) * u64(_MIX1)
    z = (z ^ (z // u64(1 << 27))) * u64(_MIX2)
    z = z ^ (z // u64(1 << 31))
    return (z % u64(n_partitions)).cast(pl.Int32).alias("partition")


def is_sharded(source: str | os.PathLike) -> bool:
    """Whether ``source`` names shards (a folder or a glob) rather than one file."""
    text = str(source)
    return Path(text).is_dir() or (any(c in text for c in GLOB_CHARACTERS)
                                   and not Path(text).exists())


def shard_files(source: str | os.PathLike) -> list[Path]:
    """The Parquet shards of a folder (its ``*.parquet`` files, or the files its manifest
    lists) or of a glob (``data/part-*.parquet``), sorted by name: the order of their rows.

    Raises:
        InputError: nothing matches, or the manifest names a missing file.
    """
    text = str(source)
    folder = Path(text)
    if folder.is_dir():
        manifest = folder / SHARD_MANIFEST
        if manifest.exists():
            files = [folder / name for name in read_manifest(folder).files]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise InputError(manifest, f"lists {len(missing)} shard(s) the folder lacks "
                                 f"({', '.join(missing[:3])}); copy the folder again or "
                                 "rebuild it")
            return files
        files = sorted(p for p in folder.glob("*.parquet") if p.is_file())
        if not files:
            raise InputError(folder, "holds no .parquet file; give a folder of Parquet "
                             "shards, a glob such as 'DIR/part-*.parquet', or one file")
        return files
    files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
    if not files:
        raise InputError(text, "matches no file; give a folder of Parquet shards or a glob "
                         "such as 'DIR/part-*.parquet' (quote it so the shell leaves it)")
    return files


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` of a sharded table says.

    Attributes:
        files: shard file names, in row order.
        rows: rows of each shard.
        sha256: SHA-256 of each shard.
        schema: column -> dtype name.
    """

    files: list[str]
    rows: list[int]
    sha256: list[str]
    schema: dict[str, str]

    @property
    def total_rows(self) -> int:
        return sum(self.rows)

    def to_json(self) -> dict:
        return {"format": MANIFEST_FORMAT, "rows": self.total_rows, "schema": self.schema,
                "files": [{"path": name, "rows": rows, "sha256": digest} for name, rows, digest
                          in zip(self.files, self.rows, self.sha256, strict=True)]}


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """The manifest of a sharded table folder.

    Raises:
        InputError: the manifest is missing or not one this version writes.
    """
    path = Path(folder) / SHARD_MANIFEST
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        return Manifest(files=[f["path"] for f in files], rows=[int(f["rows"]) for f in files],
                        sha256=[f["sha256"] for f in files], schema=dict(data["schema"]))
    except FileNotFoundError as exc:
        raise InputError(path, "no such file: the folder is not a sharded table written by "
                         "uncollapse") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"not a shard manifest ({exc}); rebuild the folder") from exc


def _staging(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ToolError(f"{out_dir} is a file; sharded output needs a folder (end -o with /)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # named as uncollapse.atomic names its temporaries: recognisable after a crash
    staging = out_dir.parent / (f"{temp_prefix(out_dir)}{os.getpid()}-{HOST_TAG}-"
                                f"{os.urandom(4).hex()}")
    staging.mkdir()
    return staging


def _put_in_place(staging: Path, out_dir: Path) -> None:
    """Rename the finished ``staging`` folder to ``out_dir``, replacing what was there."""
    if out_dir.exists():
        old = staging.with_name(staging.name + "-old")
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out_dir)


def copy_shards(source: str | os.PathLike, out_dir: str | os.PathLike) -> Manifest:
    """Copy a sharded table folder to ``out_dir``, each shard checked against the SHA-256 of
    its manifest as it is copied; the copy appears complete or not at all.

    Raises:
        InputError: a shard is missing or its bytes differ from the manifest's SHA-256.
    """
    source, out_dir = Path(source), Path(out_dir)
    manifest = read_manifest(source)
    staging = _staging(out_dir)
    try:
        for name, expected in zip(manifest.files, manifest.sha256, strict=True):
            digest = hashlib.sha256()
            try:
                with open(source / name, "rb") as src, open(staging / name, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        dst.write(chunk)
            except FileNotFoundError as exc:
                raise InputError(source / name, "is listed in the manifest but missing; "
                                 "rebuild the table") from exc
            if digest.hexdigest() != expected:
                raise InputError(source / name, "differs from the SHA-256 its manifest "
                                 "records (damaged since it was written); rebuild the table")
        shutil.copyfile(source / SHARD_MANIFEST, staging / SHARD_MANIFEST)
        _put_in_place(staging, out_dir)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_shards(frames: Iterable, out_dir: str | os.PathLike, *,
                 shard_rows: int | None = None) -> Manifest:
    """Write each polars DataFrame of ``frames`` as one Parquet shard of ``out_dir``, with
    ``manifest.json`` written last; the folder appears complete or not at all.

    With ``shard_rows``, ``frames`` are pieces of one table, in order, of any sizes: the
    shards hold ``shard_rows`` rows each (the last one fewer), each written a piece at a time
    in row groups of ``ROW_GROUP_ROWS`` (``write_parquet_frames``), so neither a shard nor
    the table is ever in memory whole, and the bytes do not depend on how the rows arrive.

    The shards are written into a temporary folder beside ``out_dir`` and renamed into place
    once all are written (an existing ``out_dir`` is replaced only then). ``frames`` may be a
    generator: one frame is in memory at a time. Give at least one frame (an empty table is
    one empty frame with its columns).

    Example:
        >>> write_shards(table.iter_slices(1_000_000), "captions/")
        >>> write_shards(partitions, "captions/", shard_rows=1_000_000)
    """
    out_dir = Path(out_dir)
    staging = _staging(out_dir)
    try:
        files, rows, digests, schema = [], [], [], None
        shards = ((number, [frame]) for number, frame in enumerate(frames)) \
            if shard_rows is None else _shard_pieces(frames, shard_rows)
        for number, pieces in shards:
            name = SHARD_PATTERN.format(number)
            if shard_rows is None:
                (frame,) = pieces
                frame.write_parquet(staging / name)
                height, frame_schema = frame.height, {k: str(v) for k, v in frame.schema.items()}
            else:
                height, frame_schema = write_parquet_frames(pieces, staging / name)
            if schema is None:
                schema = frame_schema
            elif frame_schema != schema:
                raise ToolError(f"shard {number} has the columns {frame_schema}, shard 0 has "
                                f"{schema}: every shard of a table has the same schema")
            files.append(name)
            rows.append(height)
            digests.append(sha256_file(staging / name))
        if schema is None:
            raise ToolError(f"nothing to write to {out_dir}: no shard was given")
        manifest = Manifest(files=files, rows=rows, sha256=digests, schema=schema)
        (staging / SHARD_MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1) + "\n")
        _put_in_place(staging, out_dir)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _shard_pieces(frames: Iterable, shard_rows: int) -> Iterator[tuple[int, Iterator]]:
    """``(shard number, its pieces)`` of the table whose pieces are ``frames``: the pieces
    cut where a shard ends, each shard's pieces given lazily (read them before the next)."""
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be at least 1, got {shard_rows}")
    numbered = _numbered_pieces(iter(frames), shard_rows)
    for number, group in itertools.groupby(numbered, key=lambda item: item[0]):
        yield number, (piece for _, piece in group)


def _numbered_pieces(frames: Iterator, shard_rows: int) -> Iterator[tuple[int, object]]:
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


def row_group_ranges(path: str | os.PathLike, max_rows: int) -> list[tuple[int, int]]:
    """``(start, rows)`` of consecutive slices of the Parquet file ``path``, each whole row
    groups of at most ``max_rows`` rows together (or one larger row group): slices a reader
    takes without decoding a row group twice. Read from the footer alone."""
    import pyarrow.parquet as pq

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
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    import polars as pl

    pending, held, first, given = [], 0, None, False
    for frame in frames:
        first = frame if first is None else first
        while frame.height:
            take = min(rows - held, frame.height)
            pending.append(frame.slice(0, take))
            frame, held = frame.slice(take), held + take
            if held == rows:
                yield pl.concat(pending, rechunk=True)
                pending, held, given = [], 0, True
    if pending:
        yield pl.concat(pending, rechunk=True)
    elif not given and first is not None:
        yield first.clear()


def write_parquet_frames(frames: Iterable, path: str | os.PathLike, *,
                         row_group_rows: int = ROW_GROUP_ROWS) -> tuple[int, dict]:
    """Write the polars DataFrames ``frames`` (one table's rows, in order; a generator holds
    one in memory at a time) as one Parquet file of row groups of ``row_group_rows`` rows:
    the same bytes however the rows arrive. Gives the rows written and the schema (column ->
    dtype name). Write to a temporary path and rename it (``uncollapse.atomic``).

    Raises:
        ToolError: no frame was given, or a frame's columns differ from the first's.
    """
    import polars as pl
    import pyarrow.parquet as pq

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
