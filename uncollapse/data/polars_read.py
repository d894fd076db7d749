"""Reading a user's Parquet or CSV file with polars so that every failure names the file.

A damaged Parquet footer makes polars' Rust reader panic. The panic reaches Python as
``pyo3_runtime.PanicException``, which derives from ``BaseException``: an ``except Exception``
lets it escape as a traceback with exit code 1 (the "data is invalid" code). Every polars read
of a user file catches :data:`READ_FAILURES` (or goes through the readers here) and turns it
into an :class:`~uncollapse.errors.InputError` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
from polars.exceptions import PanicException

from uncollapse.data.readable import missing
from uncollapse.errors import InputError

__all__ = [
    "PARQUET_HINT", "READ_FAILURES", "parquet_reading", "read_parquet", "read_parquet_schema",
    "reason", "unreadable_parquet",
]

READ_FAILURES: tuple[type[BaseException], ...] = (Exception, PanicException)
"""What a polars read of a damaged file can raise: its own errors, OSError, and Rust panics."""

PARQUET_HINT = "rebuild it (or copy it again if it was damaged on the way)"


def reason(exc: BaseException) -> str:
    """The first line of ``exc``'s message, short, without a Rust backtrace or class name."""
    if isinstance(exc, PanicException):
        return "its metadata is damaged and the Parquet reader gave up"
    text = (str(exc).strip().splitlines() or [""])[0]
    text = getattr(exc, "strerror", None) or text or "no detail given"
    return text if len(text) <= 200 else text[:197] + "..."


def unreadable_parquet(path, exc: BaseException) -> InputError:
    """The error for a Parquet file polars cannot read."""
    return InputError(path, f"not a readable Parquet file ({reason(exc)}); {PARQUET_HINT}")


@contextmanager
def parquet_reading(path) -> Iterator[None]:
    """Turn any failure of the polars read in the block into an error naming ``path``."""
    try:
        yield
    except InputError:
        raise
    except FileNotFoundError as exc:
        raise missing(path) from exc
    except READ_FAILURES as exc:
        raise unreadable_parquet(path, exc) from exc


def read_parquet(path: str | Path, **kwargs) -> pl.DataFrame:
    """``pl.read_parquet(path, **kwargs)``; a damaged or foreign file is an ``InputError``."""
    with parquet_reading(path):
        return pl.read_parquet(path, **kwargs)


def read_parquet_schema(path: str | Path) -> dict:
    """The column names and dtypes of the Parquet file at ``path``."""
    with parquet_reading(path):
        return pl.read_parquet_schema(path)
