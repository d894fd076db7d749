"""Checks of an attribute table (DESIGN.md, "Attribute table") for attribute-flip training.

Each rule is a polars expression over the whole table: values that are not 0/1, attributes
that never change, combinations of the selected attributes with too few rows to form a
prototype, and one person (identity) in two splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.attributes.contract import (
    attribute_columns,
    combination_ids,
    decode_combination_ids,
    read_attribute_table,
)
from uncollapse.errors import InputError
from uncollapse.report import Code, Report

MAX_DEFAULT_COMBINATION_ATTRIBUTES = 8
MAX_COMBINATION_ATTRIBUTES = 20

ATTR_TABLE_SCHEMA = Code(
    "ATTR_TABLE_SCHEMA", "error",
    "The attribute table breaks the contract: image_id string, identity int64, split string, "
    "and at least one attribute column of integers.",
    "Rebuild it with `uncollapse build attributes`.")
ATTR_DUPLICATE_IMAGE_ID = Code(
    "ATTR_DUPLICATE_IMAGE_ID", "error",
    "An image_id occurs in more than one row.",
    "Keep one row per image; `uncollapse build attributes` reports and drops duplicates.")
ATTR_NON_BINARY = Code(
    "ATTR_NON_BINARY", "error",
    "An attribute column holds values other than 0 and 1 (for example CelebA's -1, or nulls).",
    "Map -1/1 sources to 0/1 ((a + 1) // 2) or rebuild with `uncollapse build attributes`.")
ATTR_CONSTANT = Code(
    "ATTR_CONSTANT", "warning",
    "An attribute has the same value in every row: flipping it leads to a value no sample has.",
    "Leave it out of --attributes / the flip set, or check that the column was read right.")
ATTR_COMBINATION_TOO_SMALL = Code(
    "ATTR_COMBINATION_TOO_SMALL", "error",
    "Combinations of the selected attributes have fewer rows than a prototype needs (absent "
    "combinations included: a flip can land on them).",
    "Flip fewer or more frequent attributes, lower --min-rows to the per_group of your batch "
    "sampler, or gather data for the listed combinations.")
ATTR_COMBINATIONS_NOT_CHECKED = Code(
    "ATTR_COMBINATIONS_NOT_CHECKED", "info",
    "The table has too many attributes to check all their combinations; only the ones named "
    "with --attributes are checked.",
    "Pass the attributes you flip with --attributes A,B,C.")
IDENTITY_LEAKAGE = Code(
    "IDENTITY_LEAKAGE", "error",
    "The same identity (person) has images in more than one split, so evaluation sees people "
    "seen in training.",
    "Assign splits by identity (CelebA's own list_eval_partition.txt does), not by image.")


def validate_attributes(table: pl.DataFrame | str | Path, *, attributes: list[str] | None = None,
                     min_rows: int = 8, target: str | None = None) -> Report:
    """Check an attribute table; returns a Report (kind ``attributes``).

    Args:
        table: the table or a Parquet/CSV path.
        attributes: the attributes that will be flipped; combinations are checked over these.
            Default: all attribute columns if there are at most 8, else none (reported).
        min_rows: a combination needs at least this many rows to form a prototype (use the
            ``per_group`` of the batch sampler).
    """
    if not isinstance(table, pl.DataFrame):
        target = target or str(table)
        table = read_attribute_table(Path(table))
    target = target or "<table>"
    findings = []
    names = attribute_columns(table)
    schema_problems = _schema_problems(table, names)
    if attributes:
        unknown = [a for a in attributes if a not in names]
        if unknown:
            raise InputError(target, f"unknown attributes {unknown}; the table has: "
                             f"{', '.join(names)}")
    stats: dict = {"rows": table.height, "attributes": len(names)}
    if schema_problems:
        findings.append(ATTR_TABLE_SCHEMA.finding("; ".join(schema_problems),
                                                  count=len(schema_problems),
                                                  examples=schema_problems))
        return Report(target, "attributes", findings, stats)

    findings += _duplicate_image_ids(table)
    non_binary = _non_binary(table, names)
    findings += non_binary
    constant = _constant(table, names)
    findings += constant
    shares = table.select(pl.col(names).cast(pl.Float64).mean()).row(0, named=True)
    shown = attributes or (names if len(names) <= MAX_DEFAULT_COMBINATION_ATTRIBUTES else [])
    stats["positive_share"] = {n: round(float(shares[n]), 4) for n in shown}
    if len(shown) < len(names):
        stats["positive_share_all"] = {"min": round(float(min(shares.values())), 4),
                                       "max": round(float(max(shares.values())), 4)}
    if not non_binary:
        selected = attributes or (names if len(names) <= MAX_DEFAULT_COMBINATION_ATTRIBUTES
                                  else None)
        if selected is None:
            findings.append(ATTR_COMBINATIONS_NOT_CHECKED.finding(
                f"{len(names)} attributes have up to 2^{len(names)} combinations; pass "
                f"--attributes to check the ones you flip"))
        else:
            findings += _small_combinations(table, selected, min_rows, stats)
    findings += _identity_leakage(table, stats)
    if "split" in table.columns and table["split"].null_count() < table.height:
        stats["splits"] = {str(k): int(v) for k, v in
                           table["split"].value_counts().sort("split").iter_rows()}
    return Report(target, "attributes", findings, stats)


def _schema_problems(table: pl.DataFrame, names: list[str]) -> list[str]:
    problems = []
    schema = table.schema
    if "image_id" not in schema:
        problems.append("no image_id column")
    elif schema["image_id"] != pl.String:
        problems.append(f"image_id is {schema['image_id']}, expected String")
    if "identity" in schema and not schema["identity"].is_integer() \
            and schema["identity"] != pl.Null:
        problems.append(f"identity is {schema['identity']}, expected Int64")
    if "split" in schema and schema["split"] not in (pl.String, pl.Null):
        problems.append(f"split is {schema['split']}, expected String")
    if not names:
        problems.append("no attribute columns")
    not_numeric = [n for n in names if not (schema[n].is_integer() or schema[n] == pl.Boolean)]
    if not_numeric:
        problems.append(f"attribute columns that are not integers: "
                        f"{', '.join(f'{n} ({schema[n]})' for n in not_numeric[:10])}")
    if table.height == 0:
        problems.append("the table has no rows")
    return problems


def _duplicate_image_ids(table: pl.DataFrame) -> list:
    repeated = table.group_by("image_id").agg(pl.len().alias("rows")).filter(pl.col("rows") > 1)
    if repeated.height == 0:
        return []
    repeated = repeated.sort("image_id")
    return [ATTR_DUPLICATE_IMAGE_ID.finding(
        f"{repeated.height} image_ids occur in more than one row",
        count=repeated.height, examples=repeated.head(10).to_dicts())]


def _non_binary(table: pl.DataFrame, names: list[str]) -> list:
    bad = pl.col(names).cast(pl.Int64).is_in([0, 1]).not_() | pl.col(names).is_null()
    counts = table.select(bad.sum()).row(0, named=True)
    offenders = {n: c for n, c in counts.items() if c}
    if not offenders:
        return []
    examples = []
    for name in list(offenders)[:10]:
        row = table.with_row_index("row").filter(
            pl.col(name).cast(pl.Int64).is_in([0, 1]).not_() | pl.col(name).is_null()).row(
                0, named=True)
        examples.append({"column": name, "row": row["row"], "image_id": row.get("image_id"),
                         "value": row[name]})
    total = sum(offenders.values())
    return [ATTR_NON_BINARY.finding(
        f"{total} values in {len(offenders)} attribute columns are not 0/1: "
        f"{', '.join(list(offenders)[:10])}", count=total, examples=examples)]


def _constant(table: pl.DataFrame, names: list[str]) -> list:
    distinct = table.select(pl.col(names).n_unique()).row(0, named=True)
    constant = [n for n, k in distinct.items() if k <= 1]
    if not constant:
        return []
    values = table.select(pl.col(constant).first()).row(0, named=True)
    return [ATTR_CONSTANT.finding(
        f"{len(constant)} attributes have one value in every row: {', '.join(constant[:10])}",
        count=len(constant), examples=[{"column": n, "value": values[n]} for n in constant])]


def _small_combinations(table: pl.DataFrame, selected: list[str], min_rows: int,
                        stats: dict) -> list:
    if len(selected) > MAX_COMBINATION_ATTRIBUTES:
        raise InputError("--attributes", f"{len(selected)} attributes have 2^{len(selected)} "
                         f"combinations; select at most {MAX_COMBINATION_ATTRIBUTES}")
    ids = combination_ids(table.select(selected).to_numpy())
    rows = np.bincount(ids, minlength=1 << len(selected))
    small = np.flatnonzero(rows < min_rows)
    stats["combinations"] = {"possible": 1 << len(selected),
                             "present": int((rows > 0).sum()),
                             "min_rows": int(rows.min()), "median_rows": float(np.median(rows)),
                             "below_min_rows": len(small)}
    if len(small) == 0:
        return []
    # the emptiest combinations first: they are the ones a prototype loss cannot use at all
    worst = small[np.argsort(rows[small], kind="stable")][:10]
    decoded = decode_combination_ids(worst, len(selected))
    examples = [{"combination_id": int(c), "rows": int(rows[c]),
                 **{name: int(v) for name, v in zip(selected, bits, strict=True)}}
                for c, bits in zip(worst, decoded, strict=True)]
    absent = int((rows[small] == 0).sum())
    return [ATTR_COMBINATION_TOO_SMALL.finding(
        f"{len(small)} of {1 << len(selected)} combinations of {', '.join(selected)} have "
        f"fewer than {min_rows} rows ({absent} have none)", count=len(small),
        examples=examples)]


def _identity_leakage(table: pl.DataFrame, stats: dict) -> list:
    if "identity" not in table.columns or "split" not in table.columns:
        return []
    known = table.filter(pl.col("identity").is_not_null() & pl.col("split").is_not_null())
    if known.height == 0:
        return []
    per_identity = known.group_by("identity").agg(
        pl.col("split").unique().sort().alias("splits"), pl.len().alias("images"))
    stats["identities"] = per_identity.height
    leaking = per_identity.filter(pl.col("splits").list.len() > 1).sort("identity")
    if leaking.height == 0:
        return []
    images = int(leaking["images"].sum())
    return [IDENTITY_LEAKAGE.finding(
        f"{leaking.height} of {per_identity.height} identities have images in more than one "
        f"split ({images} images)", count=leaking.height,
        examples=leaking.head(10).to_dicts())]
