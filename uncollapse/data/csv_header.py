"""The header of a CSV file, checked before polars reads it.

polars renames a repeated column name silently (``Smiling``, ``Smiling_duplicated_0``), so a
table with two ``Smiling`` columns would be read as two different attributes. A repeated name
is an error naming the column, before anything is read.

polars also reads a CSV compressed with gzip, zlib or zstd; the header is then read through
the compression, and what the file expands to is measured first against the limit on
decompressed input (``uncollapse.data.expansion``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from uncollapse.data.expansion import check_expansion, first_line
from uncollapse.errors import InputError

__all__ = ["HEADER_LIMIT", "refuse_duplicate_columns", "refuse_wide_integers"]

HEADER_LIMIT = 1 << 20
"""Bytes of the first line read for the header (a binary file has no line end)."""


def refuse_wide_integers(path: Path | str, frame) -> None:
    """Raise ``InputError`` for a column polars read as 128-bit integers (values beyond
    int64, which numpy and every id column of this tool cannot hold)."""
    for name, dtype in frame.schema.items():
        if str(dtype) in ("Int128", "UInt128"):
            raise InputError(path, f"column {name!r} holds integers beyond the 64-bit range "
                                   f"(e.g. {frame[name].drop_nulls().head(1).to_list()}); ids "
                                   "and attributes must fit in int64: fix those values")


def refuse_duplicate_columns(path: Path | str, source=None) -> None:
    """Raise ``InputError`` (line 1) when a column name occurs twice in the CSV header.

    ``source`` is a binary buffer to read instead of ``path`` (standard input); the buffer's
    position is restored.
    """
    try:
        check_expansion(path, source)
        first = first_line(path, HEADER_LIMIT, source)
    except OSError:
        return  # the reader reports an unreadable file with its own message
    line = first.decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        header = next(csv.reader(io.StringIO(line)), [])
    except csv.Error:  # not a CSV header at all: the reader says so with its own message
        return
    seen: dict[str, int] = {}
    for number, name in enumerate(header, 1):
        name = name.strip()
        if name in seen:
            raise InputError(path, f"column {name!r} appears twice in the header (columns "
                             f"{seen[name]} and {number}); rename or drop one, so each column "
                             "is read once", line=1)
        seen[name] = number
