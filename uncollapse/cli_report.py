"""Command-line glue for reports: the shared output options, one verdict, and exit codes.

Streams: a report (text, json or github) goes to stdout; progress bars, spinners and status
lines ("built: ...", "wrote ...") go to stderr, so ``> report.json`` captures the report alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import sys

import click

from uncollapse import __version__
from uncollapse.atomic import atomic_path
from uncollapse.cli_paths import JSON_PATH_KEY, OutputPath, may_hold_a_report
from uncollapse.errors import InputError, ToolError
from uncollapse.extras import MissingExtra
from uncollapse.report import EXIT_TOOL_ERROR, Report, github_annotation

__all__ = [
    "COMMAND_KEY", "FORMATS", "FORMAT_KEY", "PARSED_KEY", "could_not_run_dict",
    "emit_could_not_run", "emit_report", "flags_in_errors", "quiet_option", "report_options",
]

FORMATS = ("text", "json", "github")
"""The values of ``--format``."""
FORMAT_KEY = "uncollapse.output_format"
COMMAND_KEY = "uncollapse.command"
"""Where the chosen --format and the command (and --json: ``cli_paths.JSON_PATH_KEY``) live in
``ctx.meta``, which every nested context shares, so the root group can report a run that could
not happen in the same format."""
PARSED_KEY = "uncollapse.parsed"
"""Set once the command line is parsed: every input and output path has been checked."""


def _remember(key):
    def callback(ctx, param, value):
        ctx.meta[key] = value
        ctx.meta[COMMAND_KEY] = _command_name(ctx)
        return value

    return callback


def _command_name(ctx: click.Context) -> str:
    """``uncollapse validate captions``, however the program itself was invoked."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["uncollapse", *reversed(names)])


quiet_option = click.option(
    "--quiet", is_flag=True,
    help="No progress bars or spinners; the report and errors still print.")
"""``--quiet`` with the one meaning it has in every command that shows progress."""


def report_options(command):
    """Add ``--format``, ``--json`` and ``--strict`` to a command that returns a Report."""

    # Eager, so the format is known even when a later option fails to parse.
    @click.option("--format", "output_format", type=click.Choice(FORMATS),
                  default="text", show_default=True, is_eager=True,
                  callback=_remember(FORMAT_KEY),
                  help="text for people, json for tools, github for CI annotations.")
    @click.option("--json", "json_path", type=OutputPath(), is_eager=True,
                  callback=_remember(JSON_PATH_KEY),
                  help="Also write the report as JSON to this path.")
    @click.option("--strict", is_flag=True, help="Treat warnings as failures (exit 1).")
    @functools.wraps(command)
    def wrapper(*args, output_format, json_path, strict, **kwargs):
        click.get_current_context().meta[PARSED_KEY] = True
        report = command(*args, **kwargs)
        emit_report(report, output_format=output_format, json_path=json_path, strict=strict)

    return wrapper


def emit_report(report: Report, *, output_format: str = "text", json_path: str | None = None,
                strict: bool = False) -> None:
    """Print ``report`` in the chosen format, write the JSON copy, and exit with its code.

    ``strict`` becomes part of the report, so the exit code, the text verdict, ``"ok"`` in
    the JSON and the GitHub annotation levels are one verdict.
    """
    report = dataclasses.replace(report, strict=report.strict or strict)
    if json_path:
        with atomic_path(json_path) as tmp:
            tmp.write_text(report.to_json())
    try:
        if output_format == "json":
            click.echo(report.to_json())
        elif output_format == "github":
            text = report.to_github()
            if text:
                click.echo(text)
        else:
            report.render_text()
        sys.stdout.flush()
    except BrokenPipeError:
        reader_left()  # the reader left (`| head`): the verdict still decides the exit code
    sys.exit(report.exit_code())


def reader_left() -> None:
    """The reader of stdout went away (``uncollapse cache ls | head -1``): send what is left of
    the output nowhere, so the interpreter's final flush cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def could_not_run_dict(message: str, *, command: str | None = None, file: str | None = None,
                       line: int | None = None) -> dict:
    """The JSON answer of a run that could not happen (exit 2): ``ok`` false and the error."""
    data = {"tool": "uncollapse", "version": __version__, "command": command, "ok": False,
            "exit_code": EXIT_TOOL_ERROR, "error": message}
    if file is not None:
        data["file"] = str(file)
    if line is not None:
        data["line"] = int(line)
    return data


def emit_could_not_run(ctx: click.Context, message: str, *, file: str | None = None,
                       line: int | None = None) -> None:
    """Report a run that could not happen in the machine format the command was asked for.

    ``--format github`` prints an ``::error`` annotation, ``--format json`` a JSON object with
    ``"ok": false`` and ``"error"`` (stdout); ``--json PATH`` gets that object too, so a stale
    report is never left behind. Text needs nothing here: the message goes to stderr.
    """
    output_format = ctx.meta.get(FORMAT_KEY, "text")
    json_path = ctx.meta.get(JSON_PATH_KEY)
    data = could_not_run_dict(message, command=ctx.meta.get(COMMAND_KEY, _command_name(ctx)),
                              file=file, line=line)
    # every path was checked once parsing finished; before that --json may name an input
    if json_path and (ctx.meta.get(PARSED_KEY) or may_hold_a_report(json_path)):
        try:
            with atomic_path(json_path) as tmp:
                tmp.write_text(json.dumps(data, indent=2))
        except (OSError, ToolError):
            pass  # the path itself may be why the run failed; the message still goes out
    if output_format == "json":
        click.echo(json.dumps(data, indent=2))
    elif output_format == "github":
        click.echo(github_annotation("error", message, file=file, line=line,
                                     title="uncollapse could not run"))


@contextlib.contextmanager
def flags_in_errors(flags: dict[str, str]):
    """Reword the library's argument errors with the command's flags (``size`` -> ``--size``).

    The library names its parameters; a command-line user knows the flags. ``flags`` maps a
    parameter name as the library writes it (``size``, ``format=``) to the flag.
    """
    try:
        yield
    except MissingExtra:
        raise
    except ToolError as exc:
        message = str(exc)
        if isinstance(exc, InputError):  # reword what follows "path, line N: "
            where = exc.path if exc.line is None else f"{exc.path}, line {exc.line}"
            message = message.removeprefix(f"{where}: ")
        # a command quoted in backticks (`uncollapse build attributes`) keeps its words
        parts = message.split("`")
        for name, flag in flags.items():
            end = r"(?!\w)" if name[-1].isalnum() or name[-1] == "_" else ""
            parts[::2] = [re.sub(rf"(?<![\w-]){re.escape(name)}{end}", flag, part)
                          for part in parts[::2]]
        message = "`".join(parts)
        if isinstance(exc, InputError):
            raise InputError(exc.path, message, line=exc.line) from exc
        raise ToolError(message) from exc
