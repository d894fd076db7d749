"""Checks of an attribute table (docs/data-contracts.md) for attribute-flip training.

The rules are one pandera model, ``attribute_table_model(attributes, flipped=..., min_rows=...)``
(a subclass of ``AttributeTable`` with one int8 0/1 column per attribute), whose checks are
polars expressions: unique image ids, 0/1 values without nulls, attributes that change,
combinations of the flipped attributes with enough rows to form a prototype, and each identity
(person) in one split. ``validate_attributes`` runs it with ``lazy=True`` and turns each failed
check into its finding code.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.constants import CHECK_OUTPUT_KEY

from uncollapse.data.attributes.contract import (
    attribute_columns,
    combination_ids,
    decode_combination_ids,
)
from uncollapse.data.attributes.selection import refuse_repeated
from uncollapse.data.attributes.table import ATTRIBUTE_DTYPE, read_attribute_table
from uncollapse.errors import InputError
from uncollapse.report import MAX_EXAMPLES, Code, Finding, Report

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


def _first_row() -> pl.Expr:
    return pl.int_range(pl.len()) == 0


class AttributeTable(pa.DataFrameModel):
    """The attribute table contract as a pandera model: ``image_id`` (unique string),
    ``identity`` (nullable int64, optional), ``split`` (nullable string, optional).

    The attribute columns vary from table to table, so use :func:`attribute_table_model`,
    which adds one int8 column per attribute (values 0/1, no nulls) and the per-attribute and
    combination checks. The checks, each a polars expression:

    - ``image_ids_are_unique``: fails once per image_id found in more than one row;
    - ``identity_in_one_split``: fails once per identity with images in two or more splits;
    - ``isin`` / ``not_nullable`` on each attribute: its values are 0 or 1;
    - ``attribute_varies`` on each attribute: it has both values (fails on its first row);
    - ``combinations_have_min_rows``: every combination of the ``flipped`` attributes, absent
      ones included, has at least ``min_rows`` rows (fails on the first row of each small
      combination, and on row 0 when a combination is absent).

    Example:
        >>> model = attribute_table_model(["Smiling", "Male"], flipped=["Smiling", "Male"],
        ...                               min_rows=8)
        >>> model.validate(table, lazy=True)  # SchemaErrors lists every broken rule at once
    """

    image_id: str
    identity: pl.Int64 | None = pa.Field(nullable=True)
    split: str | None = pa.Field(nullable=True)

    _flipped: tuple[str, ...] = ()
    _min_rows = 1

    class Config:
        name = "AttributeTable"

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def image_ids_are_unique(cls, data: PolarsData):
        image_id = pl.col("image_id")
        return data.lazyframe.select(~(image_id.is_duplicated() & image_id.is_first_distinct()))

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def identity_in_one_split(cls, data: PolarsData):
        if not {"identity", "split"} <= set(data.lazyframe.collect_schema().names()):
            return True
        identity, split = pl.col("identity"), pl.col("split")
        splits = split.drop_nulls().n_unique().over(identity)
        return data.lazyframe.select(
            ~((splits > 1) & identity.is_not_null() & identity.is_first_distinct()))

    @pa.dataframe_check(n_failure_cases=MAX_EXAMPLES)
    def combinations_have_min_rows(cls, data: PolarsData):
        names = list(cls._flipped)
        if not names:
            return True
        binary = data.lazyframe.select(
            pl.all_horizontal(pl.col(names).is_in([0, 1]).fill_null(False)).all())
        if not binary.collect().item():
            return True  # values other than 0/1 have no combination; isin reports them
        combination = pl.struct(names)
        small = (pl.len().over(names) < cls._min_rows) & combination.is_first_distinct()
        absent = combination.n_unique() < (1 << len(names))
        return data.lazyframe.select(~(small | (absent & _first_row())))


def _attribute_varies(cls, data: PolarsData):
    return data.lazyframe.select((pl.col(data.key).n_unique() > 1) | ~_first_row())


@functools.lru_cache(maxsize=64)
def _model(attributes: tuple[str, ...], flipped: tuple[str, ...],
           min_rows: int) -> type[AttributeTable]:
    namespace: dict = {"__annotations__": dict.fromkeys(attributes, ATTRIBUTE_DTYPE),
                       "__doc__": AttributeTable.__doc__,
                       "_flipped": flipped, "_min_rows": min_rows}
    namespace.update({name: pa.Field(isin=[0, 1]) for name in attributes})
    namespace["attribute_varies"] = pa.check(*attributes, name="attribute_varies")(
        _attribute_varies)
    return type("AttributeTable", (AttributeTable,), namespace)


def attribute_table_model(attributes: Sequence[str], *, flipped: Sequence[str] | None = None,
                          min_rows: int = 8) -> type[AttributeTable]:
    """``AttributeTable`` with the given attribute columns.

    Args:
        attributes: the attribute columns (``attribute_columns(table)``).
        flipped: the attributes whose combinations must each have ``min_rows`` rows (those
            you flip); default: none.
        min_rows: rows a combination needs to form a prototype (the sampler's ``per_group``).
    """
    if min_rows < 1:
        raise ValueError(f"min_rows must be at least 1, got {min_rows}")
    unknown = [name for name in flipped or () if name not in attributes]
    if unknown:
        raise ValueError(f"flipped attributes {unknown} are not among the attributes")
    return _model(tuple(attributes), tuple(flipped or ()), int(min_rows))


def model_failures(model: type[AttributeTable], frame: pl.DataFrame) -> list:
    """The ``SchemaError``s of every rule of ``model`` that ``frame`` breaks (lazy validation)."""
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return list(exc.schema_errors)
    return []


def _check_name(error) -> str:
    return error.check if isinstance(error.check, str) else getattr(error.check, "name", "")


def _failing_rows(error) -> pl.Series:
    return error.check_output[CHECK_OUTPUT_KEY].not_().arg_true()


def validate_attributes(table: pl.DataFrame | str | Path, *,
                        attributes: list[str] | None = None, min_rows: int = 8,
                        target: str | None = None) -> Report:
    """Check an attribute table; returns a Report (kind ``attributes``).

    Runs ``attribute_table_model(attribute_columns(table), flipped=..., min_rows=min_rows)``
    and reports each broken rule under its finding code.

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
    findings: list[Finding] = []
    names = attribute_columns(table)
    schema_problems = _schema_problems(table, names)
    if attributes:
        refuse_repeated(attributes)
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

    selected = attributes or (names if len(names) <= MAX_DEFAULT_COMBINATION_ATTRIBUTES
                              else None)
    if selected is not None and len(selected) > MAX_COMBINATION_ATTRIBUTES:
        raise InputError("--attributes", f"{len(selected)} attributes have 2^{len(selected)} "
                         f"combinations; select at most {MAX_COMBINATION_ATTRIBUTES}")
    model = attribute_table_model(names, flipped=selected, min_rows=min_rows)
    errors = model_failures(model, _as_contract(table, names))
    by_check: dict[str, list] = {}
    for error in errors:
        by_check.setdefault(_check_name(error), []).append(error)

    findings += _duplicate_image_ids(table, by_check.pop("image_ids_are_unique", []))
    non_binary = _non_binary(table, by_check.pop("isin", []) + by_check.pop("not_nullable", []))
    findings += non_binary
    findings += _constant(by_check.pop("attribute_varies", []))
    shares = {name: float("nan") if share is None else float(share)  # an all-null column
              for name, share in table.select(pl.col(names).cast(pl.Float64).mean())
              .row(0, named=True).items()}
    shown = attributes or (names if len(names) <= MAX_DEFAULT_COMBINATION_ATTRIBUTES else [])
    stats["positive_share"] = {n: round(float(shares[n]), 4) for n in shown}
    if len(shown) < len(names):
        stats["positive_share_all"] = {"min": round(float(min(shares.values())), 4),
                                       "max": round(float(max(shares.values())), 4)}
    if selected is None:
        findings.append(ATTR_COMBINATIONS_NOT_CHECKED.finding(
            f"{len(names)} attributes have up to 2^{len(names)} combinations; pass "
            f"--attributes to check the ones you flip"))
    small = by_check.pop("combinations_have_min_rows", [])
    if selected is not None and not non_binary:
        findings += _small_combinations(table, selected, min_rows, stats, small)
    findings += _identity_leakage(table, stats, by_check.pop("identity_in_one_split", []))
    if by_check:  # a rule outside the ones above (a dtype, a missing column): the contract
        problems = [f"{error.schema.name}: {_check_name(error)}" for group in by_check.values()
                    for error in group]
        findings.append(ATTR_TABLE_SCHEMA.finding("; ".join(problems), count=len(problems),
                                                  examples=problems))
    if "split" in table.columns and table["split"].null_count() < table.height:
        stats["splits"] = {str(k): int(v) for k, v in
                           table["split"].value_counts().sort("split").iter_rows()}
    return Report(target, "attributes", findings, stats)


def _as_contract(table: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """The table with the contract's dtypes where the values allow them: integer (or boolean)
    attributes as int8 (values outside int8 become nulls, which the model reports as not 0/1),
    all-null identity or split columns typed."""
    casts = [pl.col(names).cast(ATTRIBUTE_DTYPE, strict=False)]
    schema = table.schema
    if schema.get("identity") in (pl.Null,) or (
            "identity" in schema and schema["identity"].is_integer()):
        casts.append(pl.col("identity").cast(pl.Int64, strict=False))
    if schema.get("split") == pl.Null:
        casts.append(pl.col("split").cast(pl.String))
    return table.with_columns(casts)


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


def _duplicate_image_ids(table: pl.DataFrame, errors: list) -> list:
    if not errors:
        return []
    (error,) = errors
    count = int(error.check_output[CHECK_OUTPUT_KEY].not_().sum())
    repeated = error.failure_cases.select("image_id")
    examples = repeated.join(table.group_by("image_id").agg(pl.len().alias("rows")),
                             on="image_id", how="left", maintain_order="left")
    return [ATTR_DUPLICATE_IMAGE_ID.finding(
        f"{count} image_ids occur in more than one row", count=count,
        examples=examples.to_dicts())]


def _non_binary(table: pl.DataFrame, errors: list) -> list:
    """ATTR_NON_BINARY from the ``isin`` and ``not_nullable`` failures of the attribute
    columns; each example shows the value as the table holds it."""
    if not errors:
        return []
    rows: dict[str, list[int]] = {}
    for error in errors:
        rows.setdefault(error.schema.name, []).extend(_failing_rows(error).to_list())
    offenders = [n for n in table.columns if n in rows]
    examples = []
    for name in offenders[:MAX_EXAMPLES]:
        row = min(rows[name])
        examples.append({"column": name, "row": row, "image_id": table["image_id"][row]
                         if "image_id" in table.columns else None, "value": table[name][row]})
    total = sum(len(set(rows[name])) for name in offenders)
    return [ATTR_NON_BINARY.finding(
        f"{total} values in {len(offenders)} attribute columns are not 0/1: "
        f"{', '.join(offenders[:10])}", count=total, examples=examples)]


def _constant(errors: list) -> list:
    if not errors:
        return []
    constant = [(error.schema.name, error.failure_cases.item(0, 0)) for error in errors]
    return [ATTR_CONSTANT.finding(
        f"{len(constant)} attributes have one value in every row: "
        f"{', '.join(n for n, _ in constant[:10])}", count=len(constant),
        examples=[{"column": n, "value": v} for n, v in constant])]


def _small_combinations(table: pl.DataFrame, selected: list[str], min_rows: int,
                        stats: dict, errors: list) -> list:
    """Stats of the combinations of ``selected`` and, when the model's
    ``combinations_have_min_rows`` failed, the finding that lists the smallest ones."""
    ids = combination_ids(table.select(selected).to_numpy())
    rows = np.bincount(ids, minlength=1 << len(selected))
    small = np.flatnonzero(rows < min_rows)
    stats["combinations"] = {"possible": 1 << len(selected),
                             "present": int((rows > 0).sum()),
                             "min_rows": int(rows.min()), "median_rows": float(np.median(rows)),
                             "below_min_rows": len(small)}
    if not errors:
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


def _identity_leakage(table: pl.DataFrame, stats: dict, errors: list) -> list:
    if "identity" not in table.columns or "split" not in table.columns:
        return []
    known = table.filter(pl.col("identity").is_not_null() & pl.col("split").is_not_null())
    if known.height == 0:
        return []
    per_identity = known.group_by("identity").agg(
        pl.col("split").unique().sort().alias("splits"), pl.len().alias("images"))
    stats["identities"] = per_identity.height
    if not errors:
        return []
    (error,) = errors
    count = int(error.check_output[CHECK_OUTPUT_KEY].not_().sum())
    leaking = per_identity.filter(pl.col("splits").list.len() > 1)
    examples = error.failure_cases.select("identity").join(
        leaking, on="identity", how="left", maintain_order="left")
    return [IDENTITY_LEAKAGE.finding(
        f"{count} of {per_identity.height} identities have images in more than one "
        f"split ({int(leaking['images'].sum())} images)", count=count,
        examples=examples.to_dicts())]
