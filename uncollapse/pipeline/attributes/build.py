"""Attribute tables (docs/data-contracts.md, "Attribute table") from CelebA text files, CSV or
Parquet.

The source is CelebA's ``list_attr_celeba.txt`` (``celeba_text``) or a CSV/Parquet table
(``tables``); CelebA's identity and partition files are joined when given (``side_files``).

Irregular input never passes silently: a count line that disagrees with the rows, every
malformed row (with its line number), duplicates, and images missing from the identity or
partition file are findings of the build report (codes in ``codes``). By default malformed
rows are skipped and counted; ``strict=True`` makes any irregularity fatal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.cache.store import BuildOutput, Cache, Stage
from uncollapse.data.attributes.contract import IDENTITY, IMAGE_ID, RESERVED_COLUMNS, SPLIT
from uncollapse.data.readable import PARQUET, check_input_file
from uncollapse.errors import InputError
from uncollapse.pipeline.attributes.celeba_text import read_celeba_text
from uncollapse.pipeline.attributes.codes import (
    ATTR_COUNT_MISMATCH,
    ATTR_DUPLICATE_IMAGE,
    ATTR_IDENTITY_MISSING,
    ATTR_MALFORMED_ROW,
    ATTR_NO_COUNT_LINE,
    ATTR_PARTITION_MISSING,
    ATTR_SIDE_FILE_DUPLICATE,
    ATTR_SIDE_FILE_EXTRA,
    ATTR_SIDE_FILE_MALFORMED_ROW,
)
from uncollapse.pipeline.attributes.rows import first_occurrence
from uncollapse.pipeline.attributes.side_files import (
    join_side,
    read_partition_file,
    read_side_file,
)
from uncollapse.pipeline.attributes.table_sources import (
    identity_column,
    read_csv_table,
    read_parquet_table,
)
from uncollapse.pipeline.attributes.values import binary_values, select_attributes
from uncollapse.pipeline.result import (
    Built,
    SourceTable,
    built_from,
    irregularities,
    with_report,
)
from uncollapse.report import Finding, Report

__all__ = [
    "ATTRIBUTES_FILE", "ATTRIBUTES_STAGE", "ATTR_COUNT_MISMATCH", "ATTR_DUPLICATE_IMAGE",
    "ATTR_IDENTITY_MISSING", "ATTR_MALFORMED_ROW", "ATTR_NO_COUNT_LINE", "ATTR_PARTITION_MISSING",
    "ATTR_SIDE_FILE_DUPLICATE", "ATTR_SIDE_FILE_EXTRA", "ATTR_SIDE_FILE_MALFORMED_ROW",
    "build_attributes", "read_attributes",
]

ATTRIBUTES_FILE = "attributes.parquet"
ATTRIBUTES_STAGE = Stage("attributes", 2, ("uncollapse.pipeline.attributes.build",))


SOURCE_KINDS = ("an attribute source (CelebA's list_attr_celeba.txt, or a CSV or Parquet table "
                "with an image_id column)")


def read_attributes(source: str | Path, *, identities: str | Path | None = None,
                    partition: str | Path | None = None, attributes: list[str] | None = None,
                    strict: bool = False) -> SourceTable:
    """Read an attribute source into the attribute table (no cache).

    Args:
        source: CelebA ``list_attr_celeba.txt`` (any other suffix than .csv/.parquet is read
            as that layout), or a ``.csv``/``.parquet`` table with an ``image_id`` column (or
            ``image``, ``filename``, ...), optional ``identity`` and ``split`` columns, and one
            column per attribute with values -1/1 or 0/1.
        identities: CelebA ``identity_CelebA.txt`` (``<image> <identity>`` per line).
        partition: CelebA ``list_eval_partition.txt`` (``<image> 0|1|2`` per line).
        attributes: keep only these attribute columns, in this order.
        strict: raise ``InputError`` on any irregularity instead of reporting and skipping.

    Returns:
        The table (``image_id`` as in the source, ``identity`` Int64, ``split`` String, one
        Int8 0/1 column per attribute) and the build report of every irregularity.

    Example:
        >>> table, report = read_attributes("list_attr_celeba.txt",
        ...                                 partition="list_eval_partition.txt")
    """
    source = Path(source)
    check_input_file(source, SOURCE_KINDS, "give one of them", accept=(PARQUET,))
    findings: list[Finding] = []
    stats: dict = {"source": str(source)}
    reader = source_reader(source)
    if reader == "parquet":
        parsed = read_parquet_table(source)
    elif reader == "csv":
        parsed = read_csv_table(source)
    else:
        parsed = read_celeba_text(source, findings, stats)
    where = "row" if reader == "parquet" else "line"

    columns = select_attributes(source, parsed.names, attributes)
    values, encoding, keep = binary_values(source, parsed, columns, where, findings)
    stats["source_encoding"] = encoding
    keep &= first_occurrence(parsed.image_ids, parsed.locations, where, keep, findings,
                             ATTR_DUPLICATE_IMAGE, "attribute source")
    stats["source_rows"] = int(len(parsed.image_ids))
    stats["skipped_rows"] = int((~keep).sum())
    stats["skipped_lines"] = parsed.locations[~keep].tolist()

    names = [parsed.names[c] for c in columns]
    table = pl.DataFrame({IMAGE_ID: parsed.image_ids.filter(pl.Series(keep))})
    table = table.with_columns(
        identity_column(source, parsed.identity, keep, parsed.locations[keep], where),
        pl.Series(SPLIT, parsed.split[keep] if parsed.split is not None
                  else np.full(int(keep.sum()), None), dtype=pl.String))
    # column-major, so each attribute column is one contiguous block
    attribute_values = np.asfortranarray(values[keep])
    table = pl.concat([table, pl.from_numpy(attribute_values, schema=names, orient="row")],
                      how="horizontal")
    if table.height == 0:
        why = refused(findings)
        raise InputError(source, "no valid attribute rows; why the rows were rejected:" + why
                         if why else "no valid attribute rows: the source has no data rows "
                         "after its header; add rows of an image id and -1/1 or 0/1 values")

    if identities is not None:
        side = read_side_file(Path(identities), IDENTITY, findings)
        table = join_side(table, side, IDENTITY, Path(identities), findings,
                          ATTR_IDENTITY_MISSING)
    if partition is not None:
        side = read_partition_file(Path(partition), findings)
        table = join_side(table, side, SPLIT, Path(partition), findings,
                          ATTR_PARTITION_MISSING)
    table = table.select([*RESERVED_COLUMNS, *names])

    stats.update(rows=table.height, attributes=len(names),
                 identities=int(table[IDENTITY].n_unique() - table[IDENTITY].has_nulls()),
                 splits={str(k): int(v) for k, v in
                         table[SPLIT].value_counts().sort(SPLIT).iter_rows()})
    report = Report(str(source), "build attributes", findings, stats)
    if strict and irregularities(report):
        raise InputError(source, "irregular input refused (strict)" + refused(findings))
    return SourceTable(table, report)


def source_reader(source: str | Path) -> str:
    """How a source is read, from its suffix: ``parquet``, ``csv`` or ``celeba-text``."""
    suffix = Path(source).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "csv" if suffix == ".csv" else "celeba-text"


def build_attributes(source: str | Path, *, identities: str | Path | None = None,
                     partition: str | Path | None = None, attributes: list[str] | None = None,
                     strict: bool = False, cache: Cache | None = None,
                     rebuild: bool = False) -> Built:
    """``read_attributes`` through the cache: the table is ``attributes.parquet``.

    With ``strict`` any irregularity raises ``InputError``, on a cache hit as well.

    Example:
        >>> built = build_attributes("list_attr_celeba.txt", identities="identity_CelebA.txt")
        >>> built.table().height, built.report.findings
    """
    check_input_file(source, SOURCE_KINDS, "give one of them", accept=(PARQUET,))
    inputs = {"source": source}
    if identities is not None:
        inputs["identities"] = identities
    if partition is not None:
        inputs["partition"] = partition

    def builder(out_dir: Path) -> BuildOutput:
        table, report = read_attributes(source, identities=identities, partition=partition,
                                        attributes=attributes)
        table.write_parquet(out_dir / ATTRIBUTES_FILE)
        schema = {name: str(dtype) for name, dtype in table.schema.items()}
        return with_report(BuildOutput(rows={ATTRIBUTES_FILE: table.height}, schema=schema),
                           report)

    entry = (cache or Cache()).build(
        ATTRIBUTES_STAGE, options={"attributes": list(attributes) if attributes else None,
                                   "reader": source_reader(source)},
        inputs=inputs, builder=builder, rebuild=rebuild)
    built = built_from(entry, ATTRIBUTES_FILE)
    if strict and irregularities(built.report):
        raise InputError(source, "irregular input refused (strict)"
                         + refused(built.report.findings))
    return built


def refused(findings: list[Finding]) -> str:
    """One line per irregular finding: its code, how many of what it names, and its message."""
    return "".join(f"\n  {f.code} ({f.count}): {f.message}" for f in findings
                   if f.severity != "info")
