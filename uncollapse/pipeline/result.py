"""What every build returns: the output file, the build report and the cache entry behind them.

Every family's builder (``build_captions``, ``build_chunks``, ``build_sequences``,
``build_attributes``, ``build_scenes``) returns a ``Built``. The report is kept in the cache
entry, so a cache hit reports exactly what the build that made the file reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import polars as pl

from uncollapse.cache.store import BuildOutput, Entry
from uncollapse.data.shards import shard_files
from uncollapse.errors import ToolError
from uncollapse.extras import require
from uncollapse.report import Report

__all__ = ["Built", "SourceTable", "built_from", "irregularities", "with_report"]


class SourceTable(NamedTuple):
    """A source read into its family's table without the cache (``read_captions``,
    ``read_attributes``): the table and the build report; unpacks as ``table, report``."""

    table: pl.DataFrame
    report: Report


@dataclass(frozen=True)
class Built:
    """One build's result.

    Attributes:
        entry: the cache entry holding the output (``entry.key``, ``entry.manifest``).
        report: the build report: what was irregular in the source, and the counts as stats.
        name: the output's file name inside the entry (``captions.parquet``, ``scenes.npz``).

    Example:
        >>> built = build_captions("captions_val2017.json")
        >>> built.path, built.hit, built.report.stats["captions"]
    """

    entry: Entry
    report: Report
    name: str

    @property
    def path(self) -> Path:
        """The output file in the cache."""
        return self.entry.file(self.name)

    @property
    def hit(self) -> bool:
        """True when the cache already held the output and nothing was built."""
        return self.entry.hit

    @property
    def rows(self) -> int | None:
        """The output's rows as the cache entry records them (a sharded table's: the sum over
        its shards); None for outputs without rows."""
        rows = self.entry.manifest.get("rows", {})
        if self.name in rows:
            return rows[self.name]
        shards = [n for name, n in rows.items() if name.startswith(f"{self.name}/")]
        return sum(shards) if shards else None

    def table(self) -> pl.DataFrame:
        """The output read as a polars frame (builds whose output is a Parquet table, one
        file or a folder of shards)."""
        if self.path.is_dir():
            return pl.read_parquet(shard_files(self.path))
        if self.path.suffix != ".parquet":
            raise ToolError(f"{self.name} is not a table; open {self.path} with the reader of "
                            "its family (see docs/data-contracts.md)")
        return pl.read_parquet(self.path)

    def to_dataset(self):
        """The table as a Hugging Face ``datasets.Dataset`` (for code that expects one)."""
        datasets = require("datasets", "hf", "to_dataset()")
        return datasets.Dataset(self.table().to_arrow())


def with_report(output: BuildOutput, report: Report) -> BuildOutput:
    """``output`` with ``report`` kept in the cache entry (read back by ``built_from``)."""
    return BuildOutput(rows=output.rows, schema=output.schema,
                       result={**output.result, "report": report.to_dict()})


def built_from(entry: Entry, name: str) -> Built:
    """The ``Built`` of a cache entry whose builder stored its report with ``with_report``."""
    return Built(entry, Report.from_dict(entry.result["report"]), name)


def irregularities(report: Report) -> list:
    """The findings that make a build irregular (warnings and errors; info is not)."""
    return [f for f in report.findings if f.severity != "info"]
