"""CelebA's ``list_attr_celeba.txt`` layout (docs/data-contracts.md, "Attribute table").

Line 1 holds the image count, line 2 the attribute names, then one line per image:
``000001.jpg -1  1  1 -1 ...`` with any run of whitespace between the fields, LF or CRLF line
ends, values -1/1. A file that starts with the names line (no count) is read too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.attributes.contract import IMAGE_ID
from uncollapse.errors import InputError
from uncollapse.pipeline.attributes.codes import (
    ATTR_COUNT_MISMATCH,
    ATTR_MALFORMED_ROW,
    ATTR_NO_COUNT_LINE,
)
from uncollapse.pipeline.attributes.rows import (
    ID_COLUMNS,
    MAX_LISTED_LINES,
    ParsedSource,
    check_names,
    report_rows,
)
from uncollapse.pipeline.whitespace_table import (
    BAD,
    WhitespaceText,
    read_fixed_width_rows,
    read_text_bytes,
)
from uncollapse.report import Finding

__all__ = ["read_celeba_text"]


def read_celeba_text(path: Path, findings: list, stats: dict) -> ParsedSource:
    """Parse the file; a count line that disagrees and malformed rows become ``findings``."""
    raw = read_text_bytes(path)
    if not raw.strip():
        raise InputError(path, "holds only whitespace; expected CelebA's list_attr_celeba.txt "
                         "layout (count line, names line, one row per image)")
    lines = raw.split(b"\n", 2)
    first = lines[0].decode("utf-8").split()
    if len(first) == 1 and first[0].isdigit():
        names = lines[1].decode("utf-8").split() if len(lines) > 1 else []
        if not names:
            raise InputError(path, "expected the attribute names on line 2", line=2)
        header_count, first_row = int(first[0]), 2
        body = lines[2] if len(lines) > 2 else b""
    elif first and all(not _is_number(t) for t in first):
        names, header_count, first_row = first, None, 1
        body = raw.split(b"\n", 1)[1] if len(lines) > 1 else b""
        findings.append(ATTR_NO_COUNT_LINE.finding(
            f"{path} starts with the names line; the row count cannot be checked"))
    else:
        raise InputError(path, f"expected the image count (one integer) on line 1, found "
                         f"{lines[0].decode('utf-8').rstrip()[:60]!r}", line=1)
    if names and names[0].lower() in ID_COLUMNS:
        names = names[1:]
    check_names(path, names, first_row)
    width = len(names) + 1

    # CelebA's own file is fixed-width and read as a byte matrix; any other layout (or an
    # irregular row) goes through the tokeniser, which reports every row by its line
    regular = read_fixed_width_rows(body, width) if body.strip() else None
    row_findings: list[Finding] = []
    if regular is not None:
        image_ids, values = regular
        last_line = first_row + len(values)
        bad = np.zeros(len(values), dtype=bool)
    else:
        image_ids, values, bad, last_line = _read_irregular_rows(path, raw, first_row, names,
                                                                 row_findings)
    n_rows = len(values)
    if header_count is not None and header_count != n_rows:
        # one irregularity (the count line), however many rows it is off by
        findings.append(ATTR_COUNT_MISMATCH.finding(
            f"line 1 says {header_count} images but lines {first_row + 1}-{last_line} hold "
            f"{n_rows} rows ({n_rows - header_count:+d})",
            count=1, examples=[{"line": 1, "header_count": header_count, "rows": n_rows}]))
    findings += row_findings
    stats["header_count"] = header_count
    line_numbers = np.arange(first_row + 1, first_row + 1 + n_rows, dtype=np.int64)
    # rows already reported for their field count are not reported again for their values
    return ParsedSource(image_ids, values, line_numbers, names, reported=bad)


def _read_irregular_rows(path: Path, raw: bytes, first_row: int, names: list[str],
                         findings: list) -> tuple[pl.Series, np.ndarray, np.ndarray, int]:
    """Rows of a file with irregular lines: ids, values, rows of a wrong field count, last line.

    Rows with the wrong number of fields are reported here with their line numbers.
    """
    text = WhitespaceText(path, raw)
    rows = np.arange(first_row, text.n_lines)
    width = len(names) + 1
    fields = text.fields[rows]
    good = fields == width
    bad = ~good
    if bad.any():
        problems = [f"expected {width} fields (image name + {len(names)} attributes), "
                    f"found {n}" for n in fields[bad][:MAX_LISTED_LINES]]
        report_rows(findings, ATTR_MALFORMED_ROW, path, "line", rows[bad] + 1, problems,
                    [text.line_text(r) for r in rows[bad][:MAX_LISTED_LINES]])
    first_tokens = text.first_token[rows[good]]
    image_ids = pl.Series(IMAGE_ID, np.full(len(rows), "", dtype=object), dtype=pl.String)
    if good.any():
        image_ids = image_ids.scatter(np.flatnonzero(good), text.strings(first_tokens))
    values = np.full((len(rows), len(names)), BAD, dtype=np.int16)
    if good.any():
        value_tokens = (first_tokens[:, None] + np.arange(1, width)).ravel()
        # nearly every token is a value: decoding all of them avoids gathering their offsets
        signs = text.signs()[value_tokens]
        # the rare tokens that are not -1/0/1 are parsed fully, to name their value in reports
        odd = np.flatnonzero(signs == BAD)
        parsed, ok = text.ints(value_tokens[odd])
        signs[odd] = np.where(ok & (np.abs(parsed) < -int(BAD)), parsed, BAD)
        values[good] = signs.reshape(-1, len(names))
    return image_ids, values, bad, text.n_lines


def _is_number(token: str) -> bool:
    return token.lstrip("+-").isdigit()
