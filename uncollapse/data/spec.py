"""How a family's contract describes one column of a table or one array of an NPZ file.

``docs/data-contracts.md`` is generated from these descriptions (``uncollapse.data.contracts_doc``),
so the documentation and the code that reads, writes and checks the files cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ArraySpec", "ColumnSpec", "DocSection"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a table contract.

    Args:
        dtype: the polars dtype name, e.g. ``"String"``, ``"Int64"``, ``"Int8"``.
        meaning: what the column holds, for users.
        nullable: whether the column may hold nulls.
        required: whether a table must have the column.
    """

    dtype: str
    meaning: str
    nullable: bool = True
    required: bool = True


@dataclass(frozen=True)
class ArraySpec:
    """One array of an NPZ contract.

    Args:
        shape: the shape in symbols, e.g. ``"[N, C, D]"``.
        dtype: the dtype family, e.g. ``"float32"``, ``"int64"``, ``"uint8"``.
        meaning: what the array holds, for users.
        required: whether a file of this form must have it.
    """

    shape: str
    dtype: str
    meaning: str
    required: bool = True


@dataclass(frozen=True)
class DocSection:
    """One section of docs/data-contracts.md: markdown prose (with its heading), then the table
    of ``specs`` when given.

    A family's contract module lists its sections in ``DOC_SECTIONS``; the generator
    (``uncollapse.data.contracts_doc``) reads them for every family of the families table.

    Args:
        text: the heading and prose, in markdown.
        specs: column name -> ``ColumnSpec`` (a table) or array name -> ``ArraySpec`` (an NPZ).
        other_columns: the spec of every column not named in ``specs`` (a table whose other
            columns are open, such as the attribute table's one column per attribute).
    """

    text: str
    specs: Mapping[str, ColumnSpec] | Mapping[str, ArraySpec] | None = None
    other_columns: ColumnSpec | None = None
