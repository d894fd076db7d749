"""The chunk table: ordered text chunks with document ids, the input of a sequence file.

One row per chunk (Parquet), sorted by ``doc_id`` then ``position`` (docs/data-contracts.md,
"Chunk table"); ``uncollapse build chunks`` writes it from a corpus and ``uncollapse build
sequences`` reads it, with one vector per row, to cut next-vector windows that never cross a
document. Its columns are defined once, in ``uncollapse.data.sequences.contract``
(``CHUNK_COLUMNS``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.atomic import atomic_path
from uncollapse.data.polars_read import READ_FAILURES
from uncollapse.data.polars_read import reason as read_reason
from uncollapse.data.readable import PARQUET, check_input_file
from uncollapse.data.sequences.contract import (
    CHUNK_COLUMNS,
    CHUNK_DOC_ID,
    CHUNK_DOC_KEY,
    CHUNK_POSITION,
    CHUNK_TEXT,
)
from uncollapse.errors import InputError

__all__ = ["first_non_utf8_row", "load_chunks", "write_chunks"]

def write_chunks(chunks: pl.DataFrame, path: str | Path) -> Path:
    """Write the chunk table to Parquet atomically."""
    with atomic_path(path) as tmp:
        chunks.write_parquet(tmp)
    return Path(path)


def load_chunks(path: str | Path) -> pl.DataFrame:
    """Read a chunk table, check its columns and order; returns a polars DataFrame.

    A table without ``doc_key`` gets the ``doc_id`` as text. Raises InputError naming the
    column or row that breaks the contract.
    """
    path = Path(path)
    check_input_file(path, "a Parquet chunk table", "build it with `uncollapse build chunks`",
                     require=PARQUET)
    try:
        chunks = pl.read_parquet(path)
    except READ_FAILURES as exc:
        raise InputError(path, f"cannot read as Parquet ({read_reason(exc)}); build it with "
                               "`uncollapse build chunks`") from exc
    required = [name for name, spec in CHUNK_COLUMNS.items() if spec.required]
    missing = [c for c in required if c not in chunks.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}; a chunk table has "
                               f"{', '.join(CHUNK_COLUMNS)} (see `uncollapse build chunks`)")
    if CHUNK_DOC_KEY not in chunks.columns:
        chunks = chunks.with_columns(pl.col(CHUNK_DOC_ID).cast(pl.String).alias(CHUNK_DOC_KEY))
    for column in (CHUNK_DOC_ID, CHUNK_POSITION):
        if not chunks[column].dtype.is_integer():
            raise InputError(path, f"column {column!r} is {chunks[column].dtype}, expected an "
                                   "integer type")
        if chunks[column].null_count():
            row = int(chunks[column].is_null().arg_true()[0])
            raise InputError(path, f"row {row}: {column} is null")
    doc = chunks[CHUNK_DOC_ID].to_numpy()
    pos = chunks[CHUNK_POSITION].to_numpy()
    bad = np.flatnonzero((np.diff(doc) < 0) | ((np.diff(doc) == 0) & (np.diff(pos) <= 0)))
    if bad.size:
        row = int(bad[0]) + 1
        doc_id, position = CHUNK_DOC_ID, CHUNK_POSITION
        raise InputError(path, f"row {row}: rows are not sorted by ({doc_id}, {position}) "
                               f"({doc_id} {doc[row - 1]} {position} {pos[row - 1]} is followed "
                               f"by {doc_id} {doc[row]} {position} {pos[row]}); vectors align "
                               "with rows, so sort the table and its vectors together")
    return chunks.select(pl.col(CHUNK_DOC_ID).cast(pl.Int64),
                         _text_column(path, chunks, CHUNK_DOC_KEY),
                         pl.col(CHUNK_POSITION).cast(pl.Int32),
                         _text_column(path, chunks, CHUNK_TEXT))


def _text_column(path: Path, chunks: pl.DataFrame, column: str) -> pl.Series:
    """``column`` as text; bytes that are not UTF-8 are refused naming the first such row
    (polars' cast fails without saying where)."""
    values = chunks[column]
    if values.dtype.is_nested():
        raise InputError(path, f"column {column!r} is {values.dtype}, expected text")
    try:
        return values.cast(pl.String)
    except pl.exceptions.PolarsError as exc:
        row = first_non_utf8_row(values)
        where = f"row {row}: " if row is not None else ""
        raise InputError(path, f"{where}column {column!r} holds bytes that are not UTF-8 text; "
                               "rebuild the table with `uncollapse build chunks`") from exc


def first_non_utf8_row(values: pl.Series) -> int | None:
    """The first row holding bytes that are not UTF-8 (searched only after polars' cast to
    text has failed, which does not say where)."""
    for row, value in enumerate(values.to_list()):
        if isinstance(value, bytes):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return row
    return None
