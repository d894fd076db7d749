"""Command-line glue for reports: the shared output options and exit codes."""

from __future__ import annotations

import functools
import sys

import click

from uncollapse.atomic import atomic_path
from uncollapse.report import Report


def report_options(command):
    """Add ``--format``, ``--json`` and ``--strict`` to a command that returns a Report."""

    @click.option("--format", "output_format", type=click.Choice(["text", "json", "github"]),
                  default="text", show_default=True,
                  help="text for people, json for tools, github for CI annotations.")
    @click.option("--json", "json_path", type=click.Path(dir_okay=False),
                  help="Also write the report as JSON to this path.")
    @click.option("--strict", is_flag=True, help="Treat warnings as failures (exit 1).")
    @functools.wraps(command)
    def wrapper(*args, output_format, json_path, strict, **kwargs):
        report = command(*args, **kwargs)
        emit_report(report, output_format=output_format, json_path=json_path, strict=strict)

    return wrapper


def emit_report(report: Report, *, output_format: str = "text", json_path: str | None = None,
                strict: bool = False) -> None:
    """Print ``report`` in the chosen format, write the JSON copy, and exit with its code."""
    if json_path:
        with atomic_path(json_path) as tmp:
            tmp.write_text(report.to_json())
    if output_format == "json":
        click.echo(report.to_json())
    elif output_format == "github":
        text = report.to_github()
        if text:
            click.echo(text)
    else:
        report.render_text(strict=strict)
    sys.exit(report.exit_code(strict))
