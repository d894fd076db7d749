"""A build whose output would fail its own family's check is refused: exit 1, nothing cached.

A builder (or its cache ``check``) raises ``BuildRejected`` with a report of error findings;
the cache commits nothing, and the build commands print the report and exit 1 ("the data is
invalid"), as ``validate`` would have on the output. Without this, ``build sequences`` on
vectors holding NaN exited 0, and every later build of the same input was a "cache hit" of a
file that ``validate sequences`` rejects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uncollapse.report import MAX_EXAMPLES, Code, Finding, Report

__all__ = ["BUILD_NONFINITE_VECTORS", "BUILD_ZERO_VECTORS", "BuildRejected", "vector_findings"]

BUILD_NONFINITE_VECTORS = Code(
    "BUILD_NONFINITE_VECTORS", "error",
    "The vectors given to a sequence build hold NaN or infinite values; the sequence file would "
    "fail `validate sequences` (NONFINITE_VALUES), so nothing was written or cached.",
    "Re-encode the chunk rows named in the examples (empty or overlong texts are the usual "
    "cause), then build again.")
BUILD_ZERO_VECTORS = Code(
    "BUILD_ZERO_VECTORS", "error",
    "The vectors given to a sequence build hold all-zero rows; the sequence file would fail "
    "`validate sequences` (ZERO_VECTORS), so nothing was written or cached.",
    "Re-encode the chunk rows named in the examples (an encoder returns zeros for texts it "
    "could not read), then build again.")

_BLOCK_VALUES = 1 << 24  # values per block: bounded memory on a memory-mapped array


class BuildRejected(Exception):
    """The build's output fails its check; ``report`` holds the error findings (exit 1)."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(f"{report.target}: the build's output would be invalid, nothing was "
                         "cached: " + "; ".join(f"{f.code}: {f.message}" for f in report.errors))


def vector_findings(vectors: np.ndarray, path: str | Path) -> list[Finding]:
    """Findings for rows of ``vectors`` [rows, dim] (row i for chunk row i) that hold a NaN or
    infinite value, or only zeros; read in blocks, so a memory map stays a memory map."""
    nonfinite, zero = [], []
    step = max(1, _BLOCK_VALUES // max(1, vectors.shape[1]))
    for start in range(0, vectors.shape[0], step):
        block = np.asarray(vectors[start:start + step])
        nonfinite.append(np.flatnonzero(~np.isfinite(block).all(axis=1)) + start)
        zero.append(np.flatnonzero(~(block != 0).any(axis=1)) + start)
    findings = []
    for code, rows, what in ((BUILD_NONFINITE_VECTORS, nonfinite, "NaN or infinite values"),
                             (BUILD_ZERO_VECTORS, zero, "only zeros")):
        rows = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        if rows.size:
            examples = [{"row": int(r), "vector": vectors[r][:8].tolist()}
                        for r in rows[:MAX_EXAMPLES]]
            findings.append(code.finding(f"{rows.size} chunk row(s) of {path} have vectors "
                                         f"holding {what}", count=int(rows.size),
                                         examples=examples, file=str(path)))
    return findings
