"""CelebA's side files, joined onto the attribute table by image.

``identity_CelebA.txt`` (``000001.jpg 2880``) gives each image's person; ``list_eval_partition.txt``
(``000001.jpg 0``, 0/1/2 = train/val/test) its split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.attributes.contract import IMAGE_ID, SPLIT
from uncollapse.errors import InputError
from uncollapse.pipeline.attributes.codes import (
    ATTR_SIDE_FILE_DUPLICATE,
    ATTR_SIDE_FILE_EXTRA,
    ATTR_SIDE_FILE_MALFORMED_ROW,
)
from uncollapse.pipeline.attributes.rows import MAX_LISTED_LINES, first_occurrence, report_rows
from uncollapse.pipeline.whitespace_table import WhitespaceText
from uncollapse.report import Code

__all__ = ["SPLIT_NAMES", "join_side", "read_partition_file", "read_side_file"]

SPLIT_NAMES = ("train", "val", "test")


def read_side_file(path: Path, column: str, findings: list) -> pl.DataFrame:
    """``image_id`` and an Int64 ``column`` from a CelebA ``<image> <integer>`` file."""
    text = WhitespaceText(path)
    rows = np.arange(text.n_lines)
    two = text.fields == 2
    values = np.full(text.n_lines, -1, dtype=np.int64)
    parsed, ok = text.ints(text.first_token[two] + 1)
    values[two] = np.where(ok, parsed, -1)
    high = 2 if column == "partition" else np.iinfo(np.int64).max
    good = two & (values >= 0) & (values <= high)
    if (~good).any():
        expected = "0, 1 or 2" if column == "partition" else "a non-negative integer"
        problems = [f"expected `<image> <{column}>` with {column} {expected}"] * min(
            int((~good).sum()), MAX_LISTED_LINES)
        report_rows(findings, ATTR_SIDE_FILE_MALFORMED_ROW, path, "line", rows[~good] + 1,
                    problems, [text.line_text(r) for r in rows[~good][:MAX_LISTED_LINES]])
    if not good.any():
        raise InputError(path, f"no valid `<image> <{column}>` rows")
    ids = text.strings(text.first_token[good])
    keep = first_occurrence(ids, rows[good] + 1, "line", np.ones(len(ids), dtype=bool),
                            findings, ATTR_SIDE_FILE_DUPLICATE, f"{column} file {path}")
    return pl.DataFrame({IMAGE_ID: ids.filter(pl.Series(keep)), column: values[good][keep]},
                        schema={IMAGE_ID: pl.String, column: pl.Int64})


def read_partition_file(path: Path, findings: list) -> pl.DataFrame:
    """``image_id`` and ``split`` (train/val/test) from ``list_eval_partition.txt``."""
    side = read_side_file(path, "partition", findings)
    return side.with_columns(
        pl.col("partition").replace_strict(dict(enumerate(SPLIT_NAMES)),
                                           return_dtype=pl.String).alias(SPLIT)
    ).drop("partition")


def join_side(table: pl.DataFrame, side: pl.DataFrame, column: str, path: Path,
              findings: list, missing_code: Code) -> pl.DataFrame:
    """``table`` with ``column`` taken from ``side``; images missing on either side reported."""
    if column in table.columns:
        table = table.drop(column)
    joined = table.join(side, on=IMAGE_ID, how="left", maintain_order="left")
    missing = joined.filter(pl.col(column).is_null())[IMAGE_ID]
    if missing.len():
        findings.append(missing_code.finding(
            f"{missing.len()} of {table.height} images are not in {path}",
            count=missing.len(), examples=missing.head(10).to_list()))
    extra = side.join(table.select(IMAGE_ID), on=IMAGE_ID, how="anti")[IMAGE_ID]
    if extra.len():
        findings.append(ATTR_SIDE_FILE_EXTRA.finding(
            f"{extra.len()} images of {path} are not in the attribute table",
            count=extra.len(), examples=extra.head(10).to_list()))
    return joined
