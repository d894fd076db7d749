"""How a family's contract describes one array of an NPZ file (docs/data-contracts.md is
generated from these descriptions)."""

from __future__ import annotations

from dataclasses import dataclass


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
