"""Scans of a sequence file's vectors in blocks of rows, so a file larger than memory (read
memory-mapped) can be checked: their values (non-finite, all-zero, unit-norm rows) and their
exact duplicates (a 64-bit hash of each row's bytes)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from uncollapse.report import MAX_EXAMPLES

__all__ = ["BLOCK_VALUES", "UNIT_NORM_TOLERANCE", "DuplicateGroups", "ValueScan", "blocks"]

BLOCK_VALUES = 1 << 22  # values per block of a scan: 16 MB of float32
UNIT_NORM_TOLERANCE = 1e-3


def blocks(n: int, values_per_row: int) -> Iterator[slice]:
    """Slices of ``n`` rows holding about BLOCK_VALUES values each: bounded memory."""
    step = max(1, BLOCK_VALUES // max(1, values_per_row))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


@dataclass
class ValueScan:
    """What one pass over the vectors of some arrays found.

    ``nonfinite`` and ``zero`` count NaN/inf values and all-zero vectors per array (only the
    arrays that hold one), each with its first examples; ``unit`` says whether every finite
    vector has norm 1, over ``finite_rows`` rows.
    """

    nonfinite: dict[str, int] = field(default_factory=dict)
    nonfinite_examples: list = field(default_factory=list)
    zero: dict[str, int] = field(default_factory=dict)
    zero_examples: list = field(default_factory=list)
    unit: bool = True
    finite_rows: int = 0

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray], names: list[str]) -> ValueScan:
        scan = cls()
        for name in names:
            array = arrays[name]
            for rows in blocks(len(array), int(np.prod(array.shape[1:]))):
                scan._add(name, rows, np.asarray(array[rows]))
        return scan

    def _add(self, name: str, rows: slice, block: np.ndarray) -> None:
        bad = ~np.isfinite(block)
        if bad.any():
            self.nonfinite[name] = self.nonfinite.get(name, 0) + int(bad.sum())
            for position in np.argwhere(bad)[:MAX_EXAMPLES - len(self.nonfinite_examples)]:
                index = [int(position[0]) + rows.start, *map(int, position[1:])]
                self.nonfinite_examples.append({"array": name, "index": index,
                                                "value": float(block[tuple(position)])})
        flat = block.reshape(-1, block.shape[-1])
        norms = np.sqrt(np.einsum("ij,ij->i", flat, flat, dtype=np.float64))
        is_zero = ~(flat != 0).any(axis=1)
        if is_zero.any():
            self.zero[name] = self.zero.get(name, 0) + int(is_zero.sum())
            where = np.argwhere(is_zero.reshape(block.shape[:-1]))
            for position in where[:MAX_EXAMPLES - len(self.zero_examples)]:
                self.zero_examples.append({"array": name, "index": [
                    int(position[0]) + rows.start, *map(int, position[1:])]})
        finite = np.isfinite(norms)
        self.finite_rows += int(finite.sum())
        self.unit = self.unit and bool(np.all(np.abs(norms[finite] - 1) < UNIT_NORM_TOLERANCE))


@dataclass
class DuplicateGroups:
    """Target vectors grouped by exact equality (a 64-bit hash of each row's bytes).

    ``counts[g]`` is the size of group ``g``; ``inverse[i]`` the group of target ``i``.
    """

    counts: np.ndarray
    inverse: np.ndarray

    @classmethod
    def of(cls, vectors: np.ndarray, rows: np.ndarray | None = None) -> DuplicateGroups | None:
        """The groups of ``vectors`` (of ``vectors[rows]`` when given); None when empty."""
        n = len(vectors) if rows is None else len(rows)
        if n == 0:
            return None
        dim = vectors.shape[1]
        multipliers = np.random.default_rng(0x5EC).integers(1, 2**63, size=dim, dtype=np.uint64)
        multipliers |= np.uint64(1)
        hashes = np.empty(n, dtype=np.uint64)
        for part in blocks(n, dim * 2):  # the hash works on uint64 copies
            block = np.asarray(vectors[part] if rows is None else vectors[rows[part]],
                               dtype=np.float32)
            words = np.ascontiguousarray(block).view(np.uint32).astype(np.uint64)
            hashes[part] = (words * multipliers).sum(axis=1) ^ np.uint64(dim)
        _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
        return cls(counts=counts, inverse=inverse.reshape(-1))

    @functools.cached_property
    def _order(self) -> tuple[np.ndarray, np.ndarray]:
        return np.argsort(self.inverse, kind="stable"), np.r_[0, np.cumsum(self.counts)]

    def members(self, group: int, first: int) -> np.ndarray:
        """The first ``first`` targets of ``group``."""
        order, starts = self._order
        return order[starts[group]:starts[group] + first]
