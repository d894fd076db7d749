"""A parsed attribute source, and reporting its rows by line (or row) number."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.attributes.contract import IMAGE_ID, RESERVED_COLUMNS
from uncollapse.errors import InputError
from uncollapse.report import Code

__all__ = [
    "ID_COLUMNS", "MAX_LISTED_LINES", "ParsedSource", "check_names", "first_occurrence",
    "list_numbers", "report_rows",
]

ID_COLUMNS = (IMAGE_ID, "image", "image_name", "filename", "file_name", "img")
"""Names a source may give its image id column (compared case-insensitively)."""
MAX_LISTED_LINES = 20


@dataclass
class ParsedSource:
    """An attribute source read into arrays, before its values are checked."""

    image_ids: pl.Series        # [n] String, "" where a row has no id
    values: np.ndarray          # [n, A] int16, BAD where a value did not parse
    locations: np.ndarray       # [n] int64 line (text, CSV) or row (Parquet) numbers
    names: list[str]
    reported: np.ndarray        # [n] bool, rows already reported as malformed
    identity: np.ndarray | None = None   # [n] str or None, from a table's own column
    split: np.ndarray | None = None


def check_names(path: Path, names: list[str], line: int) -> None:
    """Attribute names must exist, be unique and not clash with the table's own columns."""
    if not names:
        raise InputError(path, "no attribute names", line=line)
    seen: set[str] = set()
    duplicated = [n for n in names if n in seen or seen.add(n)]
    if duplicated:
        raise InputError(path, f"attribute names repeated: {', '.join(duplicated)}; each "
                         "attribute needs a unique name", line=line)
    reserved = [n for n in names if n in RESERVED_COLUMNS]
    if reserved:
        raise InputError(path, f"attribute names {reserved} clash with the table's own columns "
                         f"{RESERVED_COLUMNS}; rename them in the source", line=line)


def first_occurrence(ids: pl.Series, locations: np.ndarray, where: str, keep: np.ndarray,
                     findings: list, code: Code, what: str) -> np.ndarray:
    """True for the first kept row of each id; later duplicates are reported."""
    candidates = np.flatnonzero(keep)
    is_first = np.zeros(len(ids), dtype=bool)
    is_first[candidates] = ids.gather(candidates).is_first_distinct().to_numpy()
    duplicates = keep & ~is_first
    if duplicates.any():
        dup_ids = ids.filter(pl.Series(duplicates)).head(10).to_list()
        findings.append(code.finding(
            f"{int(duplicates.sum())} rows of the {what} repeat an image listed earlier; "
            f"{list_numbers(locations[duplicates], where)}",
            count=int(duplicates.sum()),
            examples=[{where: int(n), IMAGE_ID: str(i)}
                      for n, i in zip(locations[duplicates][:10], dup_ids, strict=True)]))
    return is_first | ~keep


def report_rows(findings: list, code: Code, path: Path, where: str, numbers: np.ndarray,
                problems: list[str], texts: list[str] | None) -> None:
    """One finding for the malformed rows ``numbers``, the first ones as examples."""
    examples = []
    for k, (number, problem) in enumerate(zip(numbers[:10], problems[:10], strict=True)):
        example = {where: int(number), "problem": problem}
        if texts is not None:
            example["text"] = texts[k][:120]
        examples.append(example)
    findings.append(code.finding(
        f"{path}: {len(numbers)} malformed rows skipped, {list_numbers(numbers, where)}"
        f"; first: {problems[0]}", count=len(numbers), examples=examples))


def list_numbers(numbers: np.ndarray, where: str) -> str:
    """``lines 3, 7, 9 and 12 more``: the first numbers, and where the rest are listed."""
    shown = f"{where}{'s' if len(numbers) > 1 else ''} " + ", ".join(
        str(int(n)) for n in numbers[:MAX_LISTED_LINES])
    more = len(numbers) - MAX_LISTED_LINES
    return shown + (f" and {more} more (all in the JSON report's skipped_lines)"
                    if more > 0 else "")
