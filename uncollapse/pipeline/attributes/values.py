"""Attribute values: choosing the columns and turning -1/1 or 0/1 into 0/1 int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uncollapse.data.attributes.selection import refuse_repeated
from uncollapse.errors import InputError
from uncollapse.pipeline.attributes.codes import ATTR_MALFORMED_ROW
from uncollapse.pipeline.attributes.rows import MAX_LISTED_LINES, ParsedSource, report_rows
from uncollapse.pipeline.whitespace_table import BAD

__all__ = ["binary_values", "select_attributes"]


def select_attributes(path: Path, names: list[str], wanted: list[str] | None) -> list[int]:
    """Column indexes of ``wanted`` (all columns when None), in the order asked for."""
    if not wanted:
        return list(range(len(names)))
    refuse_repeated(wanted)
    missing = [w for w in wanted if w not in names]
    if missing:
        raise InputError(path, f"unknown attributes {missing}; the source has: "
                         f"{', '.join(names)}")
    return [names.index(w) for w in wanted]


def binary_values(path: Path, parsed: ParsedSource, columns: list[int], where: str,
                  findings: list) -> tuple[np.ndarray, str, np.ndarray]:
    """0/1 int8 values of the chosen columns, the source encoding, and the rows to keep."""
    names = parsed.names
    values = parsed.values[:, columns]
    reported = parsed.reported
    # the encoding most values use wins: a stray -1 in a 0/1 table (or 0 in a -1/1 file) is
    # one malformed row, not a reason to reject every other row
    counted = values[~reported]
    minus_one = int((counted == -1).sum()) > int((counted == 0).sum())
    encoding = "-1/1" if minus_one else "0/1"
    allowed = (values == 1) | ((values == -1) if minus_one else (values == 0))
    bad_rows = ~allowed.all(axis=1) & ~reported
    missing_id = (parsed.image_ids == "").to_numpy() & ~reported
    bad_rows |= missing_id
    if bad_rows.any():
        rows = np.flatnonzero(bad_rows)[:MAX_LISTED_LINES]
        problems = []
        for r in rows:
            if missing_id[r]:
                problems.append("no image id")
                continue
            j = int(np.flatnonzero(~allowed[r])[0])
            shown = "unparseable" if values[r, j] == BAD else int(values[r, j])
            problems.append(f"attribute {names[columns[j]]!r} is {shown}, expected "
                            f"{encoding.replace('/', ' or ')}")
        report_rows(findings, ATTR_MALFORMED_ROW, path, where, parsed.locations[bad_rows],
                    problems, None)
    keep = ~(bad_rows | reported)
    return (values == 1).astype(np.int8), encoding, keep
