"""An empty build result is invalid data, not a pass.

A build whose output has no rows (every caption left out by ``--splits``, a corpus with no
text, no document long enough for ``--context``) would otherwise exit 0 and hand a training
run an empty file. The build commands add ``BUILD_EMPTY`` to the report (exit 1, nothing
written) unless the user asked for an empty result with ``--allow-empty``.
"""

from __future__ import annotations

import dataclasses

from uncollapse.report import Code, Finding, Report

__all__ = ["BUILD_EMPTY", "WHY", "audit_empty_result", "empty_finding"]

BUILD_EMPTY = Code(
    "BUILD_EMPTY", "error",
    "The build produced no rows (no captions, chunks, samples or attribute rows).",
    "Check the options that select or drop rows (the finding says which); pass --allow-empty "
    "if an empty result is what you want.")

WHY = {
    "captions": ("no caption rows", "check --splits / --split against the splits the source has "
                 "(the findings list the rows left out) and --source-format (default: detected "
                 "from the content)"),
    "chunks": ("no chunks", "the source holds no non-empty text with the options given; check "
               "--kind, --text-field, --doc-field, --unit and, for a folder, --glob"),
    "sequences": ("no samples", "no document has more than --context chunks (short_documents "
                  "counts them); lower --context or give longer documents"),
    "attributes": ("no attribute rows", "the source has no readable rows; check the file (the "
                   "findings list skipped lines)"),
}


def empty_finding(stage: str, rows: int | None, stats: dict, *,
                  allowed: bool) -> Finding | None:
    """``BUILD_EMPTY`` when the output of ``stage`` has 0 rows (a warning under --allow-empty)."""
    if rows is None or rows > 0:
        return None
    what, fix = WHY.get(stage, ("no rows", "check the source and the options"))
    counts = {k: v for k, v in stats.items() if isinstance(v, int) and not isinstance(v, bool)}
    return BUILD_EMPTY.finding(
        f"the build produced {what}", count=1, examples=[counts] if counts else [],
        hint=f"{fix}; written because --allow-empty asked for it" if allowed else
        f"{fix}; pass --allow-empty if an empty result is what you want",
        severity="warning" if allowed else None)


def audit_empty_result(report: Report, stage: str, rows: int | None, *,
                     allowed: bool) -> Report:
    """``report`` plus ``BUILD_EMPTY`` when the output is empty (a new Report; the cached one
    is left as the build wrote it)."""
    finding = empty_finding(stage, rows, report.stats, allowed=allowed)
    if finding is None:
        return report
    return dataclasses.replace(report, findings=[*report.findings, finding])
