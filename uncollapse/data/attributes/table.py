"""Reading an attribute table (Parquet, or CSV with string ids kept as strings), and its dtypes
as polars types (docs/data-contracts.md, "Attribute table"); beside it, the pyarrow/numpy reader
of the training path (``read_attribute_arrays``), which runs where polars is not installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from uncollapse.data.attributes.contract import (
    ATTRIBUTE,
    ATTRIBUTE_COLUMNS,
    IDENTITY,
    IMAGE_ID,
    RESERVED_COLUMNS,
    SPLIT,
)
from uncollapse.data.csv_header import refuse_duplicate_columns, refuse_wide_integers
from uncollapse.data.readable import PARQUET, check_input_file
from uncollapse.errors import InputError

try:  # GPU hosts train without polars: the pyarrow reader below still works there
    import polars as pl

    from uncollapse.data.polars_read import READ_FAILURES, reason
except ImportError:
    pl = None


__all__ = ["ATTRIBUTE_DTYPE", "IDENTITY_DTYPE", "read_attribute_arrays", "read_attribute_table"]

ATTRIBUTE_DTYPE = getattr(pl, ATTRIBUTE.dtype) if pl is not None else None
IDENTITY_DTYPE = getattr(pl, ATTRIBUTE_COLUMNS[IDENTITY].dtype) if pl is not None else None


def read_attribute_table(path: str | Path) -> pl.DataFrame:
    """The attribute table at ``path`` (Parquet, or CSV with string ids kept as strings)."""
    path = Path(path)
    check_input_file(path, "an attribute table (Parquet or CSV)", "build one with `uncollapse "
                     "build attributes`", accept=(PARQUET,))
    try:
        if path.suffix.lower() == ".csv":
            refuse_duplicate_columns(path)
            # ids such as 000001 must stay strings (inference would make them integers 1, ...)
            header = pl.read_csv(path, n_rows=0).columns
            text_columns = {c: pl.String for c in (IMAGE_ID, SPLIT) if c in header}
            frame = pl.read_csv(path, schema_overrides=text_columns)
            refuse_wide_integers(path, frame)
            return frame
        return pl.read_parquet(path)
    except InputError:
        raise
    except READ_FAILURES as exc:  # polars raises several types, and panics
        raise InputError(path, f"cannot read the attribute table ({reason(exc)}); expected the "
                         "Parquet written by `uncollapse build attributes`") from exc


MAX_DEFAULT_ATTRIBUTES = 8
"""Attributes used when none are named: 2**8 target combinations, each still with rows."""


def read_attribute_arrays(path: str | Path, names: list[str] | None = None) -> dict:
    """The attribute table at ``path`` with pyarrow only (the training path): ``names`` (the
    attributes used), ``attributes`` [rows, A] int8 0/1, and the ``identity`` and ``split``
    columns (object arrays, None where the table has no such column).

    Args:
        names: the attributes to use; default every attribute column, at most
            ``MAX_DEFAULT_ATTRIBUTES`` of them.

    Raises:
        InputError: unreadable, a named attribute missing, too many attributes to use them all,
            or a value other than 0/1 (the row and attribute are named).
    """
    path = Path(path)
    check_input_file(path, "a Parquet attribute table", "build one with `uncollapse build "
                     "attributes`", require=PARQUET)
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise InputError(path, f"not a readable Parquet attribute table ({exc})") from exc
    available = [c for c in table.column_names if c not in RESERVED_COLUMNS]
    if names:
        missing = [n for n in names if n not in available]
        if missing:
            raise InputError(path, f"has no attribute column(s) {missing}; it has {available}")
    elif len(available) > MAX_DEFAULT_ATTRIBUTES:
        raise InputError(path, f"has {len(available)} attribute columns; name at most "
                         f"{MAX_DEFAULT_ATTRIBUTES} to flip (attributes_to_flip) so that every "
                         "target combination has rows")
    names = list(names or available)
    if not names:
        raise InputError(path, f"has no attribute columns (every column but "
                         f"{', '.join(RESERVED_COLUMNS)} is an attribute)")
    values = np.stack([table.column(n).to_numpy(zero_copy_only=False) for n in names], axis=1)
    if not np.isin(values, (0, 1)).all():
        row, col = np.argwhere(~np.isin(values, (0, 1)))[0]
        raise InputError(path, f"attribute {names[col]!r} of row {row} is {values[row, col]}; "
                         "attributes must be 0/1 (run `uncollapse validate attributes`)")

    def optional(column: str) -> np.ndarray:
        if column in table.column_names:
            return table.column(column).to_numpy(zero_copy_only=False)
        return np.full(table.num_rows, None, dtype=object)

    return {"names": names, "attributes": values.astype(np.int8), IDENTITY: optional(IDENTITY),
            SPLIT: optional(SPLIT)}
