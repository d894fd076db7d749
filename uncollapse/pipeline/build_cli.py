"""What every ``uncollapse build ...`` command shares: its options, the report, publishing.

A build command returns a ``Built``; ``build_options`` prints its report like a validate
command does (``--format text|json|github``, ``--json PATH``, to stdout) and writes the output.
Status lines ("cache hit", "built", "wrote") go to stderr. ``--strict`` makes any irregularity
in the input fatal: exit 1, nothing written.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import click

from uncollapse.atomic import atomic_copy
from uncollapse.cache.store import Cache
from uncollapse.cli_paths import (
    DirectoryPath,
    OutputPath,
    PathError,
    check_output_folder,
    remember,
)
from uncollapse.cli_report import report_options
from uncollapse.data.shards import copy_shards
from uncollapse.errors import ToolError
from uncollapse.pipeline.empty import audit_empty_result
from uncollapse.pipeline.rejected import BuildRejected

__all__ = ["FileOrFolderOutput", "build_options", "publish"]


def is_folder_output(value: str) -> bool:
    """``-o DIR/`` (a trailing slash) or an existing folder: sharded output."""
    return value.endswith(("/", os.sep)) or Path(value).is_dir()


class FileOrFolderOutput(OutputPath):
    """``-o FILE``, or ``-o DIR/`` (a trailing slash, or an existing folder) for a table build:
    Parquet shards plus ``manifest.json``, replacing the folder only once all are written."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and is_folder_output(value):
            if Path(value).exists() and not Path(value).is_dir():
                self.fail(f"{value}: is not a folder; sharded output goes to a folder", param,
                          ctx)
            if not Path(value).exists():
                try:  # the shards' folder is made; the folder it goes in must exist
                    check_output_folder(value.rstrip("/" + os.sep) or value)
                except ToolError as exc:
                    raise PathError(str(exc)) from exc
            remember(ctx, param, "output", value)
            return value
        return super().convert(value, param, ctx)


def build_options(command=None, *, shards: bool = False):
    """Add ``-o/--output``, ``--rebuild``, ``--cache-dir``, ``--quiet`` and the report options.

    ``command`` is called with ``cache`` (a ``Cache``) and ``quiet`` besides its own options,
    and returns a ``Built`` (``uncollapse.pipeline.result``). With ``shards=True`` (table
    builds) ``-o DIR/`` writes Parquet shards, and ``command`` is also called with ``sharded``
    (whether ``-o`` names a folder).
    """
    if command is None:
        return functools.partial(build_options, shards=shards)

    @report_options
    @click.option("-o", "--output", type=FileOrFolderOutput() if shards else OutputPath(),
                  help="Also write the result here (atomically)"
                       + ("; DIR/ writes Parquet shards and manifest.json." if shards else "."))
    @click.option("--rebuild", is_flag=True, help="Build again even if the cache has it.")
    @click.option("--cache-dir", type=DirectoryPath(), default=None,
                  help="Cache root (default: $UNCOLLAPSE_CACHE, else the platform cache).")
    @click.option("--quiet", is_flag=True,
                  help="No progress bars or spinners; the report and errors still print.")
    @click.option("--allow-empty", is_flag=True,
                  help="An empty result (0 rows) is what you want: a warning, not an error.")
    @functools.wraps(command)
    def wrapper(*args, output, rebuild, cache_dir, quiet, allow_empty, **kwargs):
        if shards:
            kwargs["sharded"] = output is not None and is_folder_output(output)
        try:
            built = command(*args, cache=Cache(cache_dir), rebuild=rebuild, quiet=quiet,
                            **kwargs)
        except BuildRejected as exc:  # the output would fail its own check: exit 1
            codes = ", ".join(f.code for f in exc.report.errors)
            click.echo(f"the result is invalid [{codes}]; nothing written or cached", err=True)
            return exc.report
        built = dataclasses.replace(built, report=audit_empty_result(
            built.report, built.entry.stage, built.rows, allowed=allow_empty))
        # --strict belongs to the report options, which turn it into the exit code; here it
        # also decides whether the output may be published
        strict = click.get_current_context().params["strict"]
        irregular = [f for f in built.report.findings if f.severity != "info"]
        if strict and irregular:
            codes = ", ".join(f"{f.code} ({f.count})" for f in irregular)
            click.echo(f"--strict: {len(irregular)} kind(s) of irregularity in the input "
                       f"[{codes}]; nothing written", err=True)
        elif built.report.errors:
            codes = ", ".join(f.code for f in built.report.errors)
            click.echo(f"the result is invalid [{codes}]; nothing written", err=True)
        else:
            publish(built, output)
        return built.report

    return wrapper


def publish(built, output: str | None) -> Path:
    """Say where the built file is; copy it to ``output`` atomically when one is given."""
    entry = built.entry
    state = "cache hit" if built.hit else "built"
    click.echo(f"{state}: {entry.stage} {entry.key[:16]} -> {built.path}", err=True)
    if output and built.path.is_dir():
        manifest = copy_shards(built.path, output)
        click.echo(f"wrote {output} ({len(manifest.files)} shards, {manifest.total_rows} rows)",
                   err=True)
        return Path(output)
    if output:
        atomic_copy(built.path, output)
        click.echo(f"wrote {output}", err=True)
        return Path(output)
    return built.path


