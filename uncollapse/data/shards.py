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

import functools
import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uncollapse.atomic import HOST_TAG, temp_prefix
from uncollapse.digests import sha256_file
from uncollapse.errors import InputError, ToolError

__all__ = ["SHARD_MANIFEST", "SHARD_PATTERN", "Manifest", "copy_shards", "is_sharded",
           "partition_expr", "read_manifest", "shard_files", "stable_bucket",
           "write_shard_files", "write_shards"]

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


def write_shards(frames: Iterable, out_dir: str | os.PathLike) -> Manifest:
    """Write each polars DataFrame of ``frames`` as one Parquet shard of ``out_dir``, with
    ``manifest.json`` written last; the folder appears complete or not at all.

    The shards are written into a temporary folder beside ``out_dir`` and renamed into place
    once all are written (an existing ``out_dir`` is replaced only then). ``frames`` may be a
    generator: one frame is in memory at a time. Give at least one frame (an empty table is
    one empty frame with its columns). ``uncollapse.data.parquet_pieces.write_shards_of``
    cuts a table that arrives in pieces of any size into shards of a given size instead.

    Example:
        >>> write_shards(table.iter_slices(1_000_000), "captions/")
    """
    return write_shard_files((functools.partial(_write_frame, frame) for frame in frames),
                             out_dir)


def _write_frame(frame, path: Path) -> tuple[int, dict]:
    frame.write_parquet(path)
    return frame.height, {k: str(v) for k, v in frame.schema.items()}


def write_shard_files(writers: Iterable[Callable[[Path], tuple[int, dict]]],
                      out_dir: str | os.PathLike) -> Manifest:
    """Call each of ``writers`` with the path of the next shard of ``out_dir``
    (``part-00000.parquet``, ...); each writes its shard there and gives its rows and schema
    (column -> dtype name). ``manifest.json`` is written last, and the folder appears
    complete or not at all (see ``write_shards``)."""
    out_dir = Path(out_dir)
    staging = _staging(out_dir)
    try:
        files, rows, digests, schema = [], [], [], None
        for number, write in enumerate(writers):
            name = SHARD_PATTERN.format(number)
            height, frame_schema = write(staging / name)
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
