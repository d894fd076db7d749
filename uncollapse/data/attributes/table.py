"""Reading an attribute table (Parquet, or CSV with string ids kept as strings), and its dtypes
as polars types (docs/data-contracts.md, "Attribute table")."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from uncollapse.data.attributes.contract import (
    ATTRIBUTE,
    ATTRIBUTE_COLUMNS,
    IDENTITY,
    IMAGE_ID,
    SPLIT,
)
from uncollapse.data.csv_header import refuse_duplicate_columns, refuse_wide_integers
from uncollapse.data.polars_read import READ_FAILURES, reason
from uncollapse.errors import InputError

__all__ = ["ATTRIBUTE_DTYPE", "IDENTITY_DTYPE", "read_attribute_table"]

ATTRIBUTE_DTYPE = getattr(pl, ATTRIBUTE.dtype)
IDENTITY_DTYPE = getattr(pl, ATTRIBUTE_COLUMNS[IDENTITY].dtype)


def read_attribute_table(path: str | Path) -> pl.DataFrame:
    """The attribute table at ``path`` (Parquet, or CSV with string ids kept as strings)."""
    path = Path(path)
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
    except FileNotFoundError as exc:
        raise InputError(path, "no such file") from exc
    except READ_FAILURES as exc:  # polars raises several types, and panics
        raise InputError(path, f"cannot read the attribute table ({reason(exc)}); expected the "
                         "Parquet written by `uncollapse build attributes`") from exc
