"""The rules of an attribute table (docs/data-contracts.md) for attribute-flip training, and the
pandera model they make: ``AttributeTable``.

Each rule is declared once with its finding code (``RULES``). Most are checks of the model
``attribute_table_model(attributes, flipped=..., min_rows=...)`` (a subclass of
``AttributeTable`` with one int8 0/1 column per attribute), written as polars expressions:
unique image ids, 0/1 values without nulls, attributes that change, combinations of the flipped
attributes with enough rows to form a prototype, and each identity (person) in one split.
``validate_attributes`` runs the model with ``lazy=True`` and reports each failed rule.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from uncollapse.data.attributes.contract import (
    IDENTITY,
    IMAGE_ID,
    SPLIT,
    attribute_columns,
    combination_ids,
    decode_combination_ids,
)
from uncollapse.data.attributes.selection import refuse_repeated
from uncollapse.data.attributes.table import ATTRIBUTE_DTYPE, read_attribute_table
from uncollapse.errors import InputError
from uncollapse.report import MAX_EXAMPLES, Code, Report
from uncollapse.validators.bridge import pandera_failures, rules_model
from uncollapse.validators.rules import Failed, Rules, Run

__all__ = ["CONTRACT", "RULES", "AttributeTable", "attribute_table_model", "validate_attributes"]

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


@dataclass
class AttributeCheck:
    """What the findings of one validation are written from.

    Attributes:
        table: the table as read; ``names``: its attribute columns.
        selected: the attributes whose combinations are checked (None: too many to check).
        min_rows: the rows a combination needs.
        failures: what pandera reported for each failed check of the model.
    """

    table: pl.DataFrame
    names: list[str]
    selected: list[str] | None
    min_rows: int
    failures: dict

    @property
    def non_binary(self) -> bool:
        """Whether values other than 0/1 were found (then no combination is counted)."""
        return any(self.failures.get(check) for check in values_are_binary.checks)

    @functools.cached_property
    def combination_rows(self) -> np.ndarray:
        """Rows of each combination of the selected attributes (absent ones: 0)."""
        ids = combination_ids(self.table.select(self.selected).to_numpy())
        return np.bincount(ids, minlength=1 << len(self.selected))

    @functools.cached_property
    def per_identity(self) -> pl.DataFrame | None:
        """Per identity with a known split: its splits and images (None: nothing to check)."""
        if IDENTITY not in self.table.columns or SPLIT not in self.table.columns:
            return None
        known = self.table.filter(pl.col(IDENTITY).is_not_null() & pl.col(SPLIT).is_not_null())
        if known.height == 0:
            return None
        return known.group_by(IDENTITY).agg(pl.col(SPLIT).unique().sort().alias("splits"),
                                            pl.len().alias("images"))


def _first_row() -> pl.Expr:
    return pl.int_range(pl.len()) == 0


CONTRACT = Rules()
"""What a table must be for the model's checks to run at all (checked first, alone)."""

RULES = Rules()
"""The attribute table rules, in the order their findings are listed. A rule declared with
``RULES.check`` is a check of ``AttributeTable`` (``model``, ``data``); the others test the
``AttributeCheck``."""


@CONTRACT.rule(ATTR_TABLE_SCHEMA)
def table_fits_the_contract(table: pl.DataFrame, names: list[str]) -> Failed | None:
    """image_id string, identity int64 and split string where present, attribute columns of
    integers, and rows: what the model's checks need to run at all."""
    problems = []
    schema = table.schema
    if IMAGE_ID not in schema:
        problems.append(f"no {IMAGE_ID} column")
    elif schema[IMAGE_ID] != pl.String:
        problems.append(f"{IMAGE_ID} is {schema[IMAGE_ID]}, expected String")
    if IDENTITY in schema and not schema[IDENTITY].is_integer() and schema[IDENTITY] != pl.Null:
        problems.append(f"{IDENTITY} is {schema[IDENTITY]}, expected Int64")
    if SPLIT in schema and schema[SPLIT] not in (pl.String, pl.Null):
        problems.append(f"{SPLIT} is {schema[SPLIT]}, expected String")
    if not names:
        problems.append("no attribute columns")
    not_numeric = [n for n in names if not (schema[n].is_integer() or schema[n] == pl.Boolean)]
    if not_numeric:
        problems.append(f"attribute columns that are not integers: "
                        f"{', '.join(f'{n} ({schema[n]})' for n in not_numeric[:10])}")
    if table.height == 0:
        problems.append("the table has no rows")
    if not problems:
        return None
    return Failed("; ".join(problems), count=len(problems), examples=problems)


@RULES.check(ATTR_DUPLICATE_IMAGE_ID)
def image_ids_are_unique(model, data: PolarsData):
    """Fails once per image_id found in more than one row."""
    image_id = pl.col(IMAGE_ID)
    return data.lazyframe.select(~(image_id.is_duplicated() & image_id.is_first_distinct()))


@image_ids_are_unique.reports
def _(failures, check: AttributeCheck) -> Failed:
    (failure,) = failures
    examples = failure.cases.select(IMAGE_ID).join(
        check.table.group_by(IMAGE_ID).agg(pl.len().alias("rows")), on=IMAGE_ID, how="left",
        maintain_order="left")
    return Failed(f"{failure.count} image_ids occur in more than one row", count=failure.count,
                  examples=examples.to_dicts())


values_are_binary = RULES.builtin("values_are_binary", ATTR_NON_BINARY, "isin", "not_nullable")
"""The attribute fields' own checks: values in {0, 1} (``isin``), no nulls (``not_nullable``)."""


@values_are_binary.reports
def _(failures, check: AttributeCheck) -> Failed:
    """Each example shows the value as the table holds it."""
    table = check.table
    rows: dict[str, list[int]] = {}
    for failure in failures:
        rows.setdefault(failure.schema, []).extend(failure.rows().to_list())
    offenders = [n for n in table.columns if n in rows]
    examples = []
    for name in offenders[:MAX_EXAMPLES]:
        row = min(rows[name])
        examples.append({"column": name, "row": row, IMAGE_ID: table[IMAGE_ID][row]
                         if IMAGE_ID in table.columns else None, "value": table[name][row]})
    total = sum(len(set(rows[name])) for name in offenders)
    return Failed(f"{total} values in {len(offenders)} attribute columns are not 0/1: "
                  f"{', '.join(offenders[:10])}", count=total, examples=examples)


@RULES.check(ATTR_CONSTANT, columns=True)
def attribute_varies(model, data: PolarsData):
    """An attribute has both values (a column check of each attribute; fails on its first
    row)."""
    return data.lazyframe.select((pl.col(data.key).n_unique() > 1) | ~_first_row())


@attribute_varies.reports
def _(failures, check: AttributeCheck) -> Failed:
    constant = [(failure.schema, failure.cases.item(0, 0)) for failure in failures]
    return Failed(f"{len(constant)} attributes have one value in every row: "
                  f"{', '.join(n for n, _ in constant[:10])}", count=len(constant),
                  examples=[{"column": n, "value": v} for n, v in constant])


@RULES.rule(ATTR_COMBINATIONS_NOT_CHECKED)
def combinations_are_checked(check: AttributeCheck) -> Failed | None:
    """With more than MAX_DEFAULT_COMBINATION_ATTRIBUTES attributes, only those named are."""
    if check.selected is not None:
        return None
    n = len(check.names)
    return Failed(f"{n} attributes have up to 2^{n} combinations; pass --attributes to check "
                  "the ones you flip")


@RULES.check(ATTR_COMBINATION_TOO_SMALL)
def combinations_have_min_rows(model, data: PolarsData):
    """Every combination of the ``flipped`` attributes, absent ones included, has at least
    ``min_rows`` rows (fails on the first row of each small combination, and on row 0 when a
    combination is absent)."""
    names = list(model._flipped)
    if not names:
        return True
    binary = data.lazyframe.select(
        pl.all_horizontal(pl.col(names).is_in([0, 1]).fill_null(False)).all())
    if not binary.collect().item():
        return True  # values other than 0/1 have no combination; isin reports them
    combination = pl.struct(names)
    small = (pl.len().over(names) < model._min_rows) & combination.is_first_distinct()
    absent = combination.n_unique() < (1 << len(names))
    return data.lazyframe.select(~(small | (absent & _first_row())))


@combinations_have_min_rows.reports
def _(failures, check: AttributeCheck) -> Failed | None:
    """The emptiest combinations first: they are the ones a prototype loss cannot use at all."""
    if check.selected is None or check.non_binary:
        return None
    selected, rows = check.selected, check.combination_rows
    small = np.flatnonzero(rows < check.min_rows)
    worst = small[np.argsort(rows[small], kind="stable")][:10]
    decoded = decode_combination_ids(worst, len(selected))
    examples = [{"combination_id": int(c), "rows": int(rows[c]),
                 **{name: int(v) for name, v in zip(selected, bits, strict=True)}}
                for c, bits in zip(worst, decoded, strict=True)]
    absent = int((rows[small] == 0).sum())
    return Failed(f"{len(small)} of {1 << len(selected)} combinations of {', '.join(selected)} "
                  f"have fewer than {check.min_rows} rows ({absent} have none)",
                  count=len(small), examples=examples)


@RULES.check(IDENTITY_LEAKAGE)
def identity_in_one_split(model, data: PolarsData):
    """Fails once per identity with images in two or more splits."""
    if not {IDENTITY, SPLIT} <= set(data.lazyframe.collect_schema().names()):
        return True
    identity, split = pl.col(IDENTITY), pl.col(SPLIT)
    splits = split.drop_nulls().n_unique().over(identity)
    return data.lazyframe.select(
        ~((splits > 1) & identity.is_not_null() & identity.is_first_distinct()))


@identity_in_one_split.reports
def _(failures, check: AttributeCheck) -> Failed | None:
    per_identity = check.per_identity
    if per_identity is None:
        return None
    (failure,) = failures
    leaking = per_identity.filter(pl.col("splits").list.len() > 1)
    examples = failure.cases.select(IDENTITY).join(leaking, on=IDENTITY, how="left",
                                                   maintain_order="left")
    return Failed(f"{failure.count} of {per_identity.height} identities have images in more "
                  f"than one split ({int(leaking['images'].sum())} images)", count=failure.count,
                  examples=examples.to_dicts())


@RULES.rule(ATTR_TABLE_SCHEMA)
def model_finds_nothing_else(check: AttributeCheck) -> Failed | None:
    """No check outside the rules above failed (a dtype, a missing column: the contract)."""
    problems = [f"{failure.schema}: {name}" for name, failures in check.failures.items()
                if name not in RULES.check_names() for failure in failures]
    if not problems:
        return None
    return Failed("; ".join(problems), count=len(problems), examples=problems)


# The model ------------------------------------------------------------------------------------

class AttributeTable(rules_model("AttributeTableRules", RULES, __name__, warnings_warn=False,
                                 n_failure_cases=MAX_EXAMPLES)):
    """The attribute table contract as a pandera model: ``image_id`` (unique string),
    ``identity`` (nullable int64, optional), ``split`` (nullable string, optional).

    The attribute columns vary from table to table, so use :func:`attribute_table_model`,
    which adds one int8 column per attribute (values 0/1, no nulls) and the per-attribute and
    combination checks. The checks, each a polars expression (``RULES``):

    - ``image_ids_are_unique``: fails once per image_id found in more than one row;
    - ``isin`` / ``not_nullable`` on each attribute: its values are 0 or 1;
    - ``attribute_varies`` on each attribute: it has both values (fails on its first row);
    - ``combinations_have_min_rows``: every combination of the ``flipped`` attributes, absent
      ones included, has at least ``min_rows`` rows (fails on the first row of each small
      combination, and on row 0 when a combination is absent);
    - ``identity_in_one_split``: fails once per identity with images in two or more splits.

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


@functools.lru_cache(maxsize=64)
def _model(attributes: tuple[str, ...], flipped: tuple[str, ...],
           min_rows: int) -> type[AttributeTable]:
    namespace: dict = {"__annotations__": dict.fromkeys(attributes, ATTRIBUTE_DTYPE),
                       "__doc__": AttributeTable.__doc__,
                       "_flipped": flipped, "_min_rows": min_rows}
    namespace.update({name: pa.Field(isin=[0, 1]) for name in attributes})
    namespace[attribute_varies.name] = pa.check(*attributes, name=attribute_varies.name)(
        attribute_varies.test)
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


# Validation -----------------------------------------------------------------------------------

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
    names = attribute_columns(table)
    if attributes:
        refuse_repeated(attributes)
        unknown = [a for a in attributes if a not in names]
        if unknown:
            raise InputError(target, f"unknown attributes {unknown}; the table has: "
                             f"{', '.join(names)}")
    stats: dict = {"rows": table.height, "attributes": len(names)}
    contract = Run()
    if not contract.check(table_fits_the_contract, table, names):
        return Report(target, "attributes", contract.findings, stats)

    selected = attributes or (names if len(names) <= MAX_DEFAULT_COMBINATION_ATTRIBUTES
                              else None)
    if selected is not None and len(selected) > MAX_COMBINATION_ATTRIBUTES:
        raise InputError("--attributes", f"{len(selected)} attributes have 2^{len(selected)} "
                         f"combinations; select at most {MAX_COMBINATION_ATTRIBUTES}")
    model = attribute_table_model(names, flipped=selected, min_rows=min_rows)
    failures = pandera_failures(model.to_schema(), _as_contract(table, names))
    check = AttributeCheck(table, names, selected, min_rows, failures)
    _stats(stats, check, attributes)
    return Report(target, "attributes", RULES.findings(failures, check), stats)


def _stats(stats: dict, check: AttributeCheck, attributes: list[str] | None) -> None:
    table, names = check.table, check.names
    shares = {name: float("nan") if share is None else float(share)  # an all-null column
              for name, share in table.select(pl.col(names).cast(pl.Float64).mean())
              .row(0, named=True).items()}
    shown = attributes or (names if len(names) <= MAX_DEFAULT_COMBINATION_ATTRIBUTES else [])
    stats["positive_share"] = {n: round(float(shares[n]), 4) for n in shown}
    if len(shown) < len(names):
        stats["positive_share_all"] = {"min": round(float(min(shares.values())), 4),
                                       "max": round(float(max(shares.values())), 4)}
    if check.selected is not None and not check.non_binary:
        rows = check.combination_rows
        stats["combinations"] = {"possible": 1 << len(check.selected),
                                 "present": int((rows > 0).sum()),
                                 "min_rows": int(rows.min()),
                                 "median_rows": float(np.median(rows)),
                                 "below_min_rows": int((rows < check.min_rows).sum())}
    if check.per_identity is not None:
        stats["identities"] = check.per_identity.height
    if SPLIT in table.columns and table[SPLIT].null_count() < table.height:
        stats["splits"] = {str(k): int(v) for k, v in
                           table[SPLIT].value_counts().sort(SPLIT).iter_rows()}


def _as_contract(table: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """The table with the contract's dtypes where the values allow them: integer (or boolean)
    attributes as int8 (values outside int8 become nulls, which the model reports as not 0/1),
    all-null identity or split columns typed."""
    casts = [pl.col(names).cast(ATTRIBUTE_DTYPE, strict=False)]
    schema = table.schema
    if schema.get(IDENTITY) in (pl.Null,) or (
            IDENTITY in schema and schema[IDENTITY].is_integer()):
        casts.append(pl.col(IDENTITY).cast(pl.Int64, strict=False))
    if schema.get(SPLIT) == pl.Null:
        casts.append(pl.col(SPLIT).cast(pl.String))
    return table.with_columns(casts)

