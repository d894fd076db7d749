"""Attribute sources that are already tables: CSV and Parquet with an image id column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.attributes.contract import IDENTITY, SPLIT
from uncollapse.data.attributes.table import IDENTITY_DTYPE
from uncollapse.data.csv_header import refuse_duplicate_columns
from uncollapse.data.polars_read import READ_FAILURES, reason
from uncollapse.errors import InputError
from uncollapse.pipeline.attributes.rows import ID_COLUMNS, ParsedSource, check_names
from uncollapse.pipeline.whitespace_table import BAD

__all__ = ["identity_column", "read_csv_table", "read_parquet_table"]


def read_csv_table(path: Path) -> ParsedSource:
    """A CSV file (every field read as text); locations are line numbers (header on line 1)."""
    refuse_duplicate_columns(path)
    return _read_table(path, lambda p: pl.read_csv(p, infer_schema=False), "line",
                       first_location=2)


def read_parquet_table(path: Path) -> ParsedSource:
    """A Parquet file; locations are 0-based row numbers."""
    return _read_table(path, pl.read_parquet, "row", first_location=0)


def _read_table(path: Path, reader, where: str, *, first_location: int) -> ParsedSource:
    try:
        frame = reader(path)
    except READ_FAILURES as exc:  # polars raises several error types, and panics
        raise InputError(path, f"cannot read as {path.suffix.lstrip('.')} ({reason(exc)}); "
                               "export the table again") from exc
    id_column = next((c for c in frame.columns if c.lower() in ID_COLUMNS), None)
    if id_column is None:
        raise InputError(path, f"no image id column; expected one of {list(ID_COLUMNS)} "
                         f"besides the attribute columns, found {frame.columns[:8]}")
    names = [c for c in frame.columns if c not in (id_column, IDENTITY, SPLIT)]
    check_names(path, names, 1 if where == "line" else 0)
    values = frame.select(pl.col(names).cast(pl.Int16, strict=False).fill_null(BAD)) \
        .to_numpy().astype(np.int16).reshape(frame.height, len(names))
    locations = np.arange(first_location, first_location + frame.height, dtype=np.int64)
    parsed = ParsedSource(frame[id_column].cast(pl.String).fill_null(""), values, locations,
                          names, reported=np.zeros(frame.height, dtype=bool))
    if IDENTITY in frame.columns:
        parsed.identity = frame[IDENTITY].cast(pl.String).to_numpy()
    if SPLIT in frame.columns:
        parsed.split = frame[SPLIT].cast(pl.String).to_numpy()
    return parsed


def identity_column(path: Path, identity: np.ndarray | None, keep: np.ndarray,
                    locations: np.ndarray, where: str) -> pl.Series:
    """The kept rows of a table's own ``identity`` column as Int64 (nulls when it has none)."""
    if identity is None:
        return pl.Series(IDENTITY, [None] * int(keep.sum()), dtype=IDENTITY_DTYPE)
    strings = pl.Series(IDENTITY, identity[keep], dtype=pl.String)
    parsed = strings.cast(IDENTITY_DTYPE, strict=False)
    broken = (parsed.is_null() & strings.is_not_null()).to_numpy()
    if broken.any():
        shown = ", ".join(f"{where} {int(n)}: {value!r}" for n, value in
                          zip(locations[broken][:3], strings.filter(broken).head(3).to_list(),
                              strict=True))
        raise InputError(path, f"column {IDENTITY!r} must hold integers (person ids); found "
                         f"{int(broken.sum())} that do not ({shown}); fix those rows, or drop "
                         "the column and give an identity file (identities)")
    return parsed
