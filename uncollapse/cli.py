"""The root command group. Each package owns a small ``cli.py`` whose ``COMMANDS`` this collects.

``uncollapse.pipeline.cli`` and ``uncollapse.validators.cli`` gather the ``build``, ``validate``
and ``diagnose`` commands of every family in the families table (``uncollapse.families``);
``uncollapse.cache.cli`` and ``uncollapse.trainers.cli`` add the commands that belong to no
family. Heavy modules (torch, datasets, pandera, polars) are imported inside the commands that
need them, so ``uncollapse --help`` starts fast.

Library messages go to the ``logging`` logger ``uncollapse``; when nothing is configured to
receive them, the command line prints them on stderr (``warning: ...``).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re

import click

from uncollapse import __version__
from uncollapse.cli_engines import ENGINE_COMMANDS, add_engine_options
from uncollapse.cli_report import (
    COMMAND_KEY,
    FORMAT_KEY,
    FORMATS,
    emit_could_not_run,
    reader_left,
)
from uncollapse.errors import ToolError
from uncollapse.extras import missing_extra
from uncollapse.report import EXIT_TOOL_ERROR

__all__ = ["LOGGER", "PACKAGE_CLIS", "main", "make_main", "print_library_messages"]

PACKAGE_CLIS = (
    "uncollapse.pipeline.cli",
    "uncollapse.validators.cli",
    "uncollapse.cache.cli",
    "uncollapse.trainers.cli",
)
"""The modules whose ``COMMANDS`` (``{parent group: [commands]}``, ``""`` for the root) make up
the command line, in this order."""

SHORT_HELP_WIDTH = 100
"""A command's summary in its group's list is its help's first sentence; one longer than
this ends at its colon."""

ARGS_KEY = "uncollapse.args"
"""``ctx.meta`` entry of the words the command line was given (after the program name)."""

LOGGER = "uncollapse"
"""The logger every library module logs under (``logging.getLogger(__name__)``)."""


class _Group(click.Group):
    """A group that turns a ToolError (or any unexpected error) into exit code 2 and a message.

    The outermost group handles errors for every command below it, once: the message goes to
    stderr and, under ``--format json|github`` (or with ``--json``), the machine output says
    the run could not happen too.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        given = list(args)
        try:  # `uncollapse --help | head -1`
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except BrokenPipeError:
            reader_left()
            raise click.exceptions.Exit(0) from None
        if parent is None:
            ctx.meta[ARGS_KEY] = given
        return ctx

    def invoke(self, ctx):
        if ctx.parent is not None:
            return super().invoke(ctx)
        print_library_messages()
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:  # the reader of the output left (`| head`): not a failure
            reader_left()
            raise click.exceptions.Exit(0) from None
        except click.ClickException as exc:  # bad arguments, a bad option value
            if exc.exit_code == EXIT_TOOL_ERROR:
                _requested_format(ctx)
                emit_could_not_run(ctx, exc.format_message())
            raise
        except ToolError as exc:
            raise _could_not_run(ctx, str(exc), file=getattr(exc, "path", None),
                                 line=getattr(exc, "line", None)) from exc
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # a check that raised (or a Rust panic) is never a pass
            hint = missing_extra(exc) if isinstance(exc, ImportError) else None
            if hint is not None:
                raise _could_not_run(ctx, hint) from exc
            if isinstance(exc, MemoryError):  # numpy's says the size; a bare one says nothing
                raise _could_not_run(ctx, f"ran out of memory ({str(exc) or 'no detail given'}); "
                                          "lower the sizes given (a batch size, --num, "
                                          "--max-samples, --context) or use a machine with "
                                          "more memory") from exc
            if os.environ.get("UNCOLLAPSE_DEBUG"):
                raise
            raise _could_not_run(
                ctx, f"{type(exc).__name__}: {exc}\n(set UNCOLLAPSE_DEBUG=1 to see the traceback)"
            ) from exc


def _requested_format(ctx: click.Context) -> None:
    """An unknown option stops Click before it reads any option, ``--format`` included: find
    the format (and the command) in the words given, so ``--format json`` still gets JSON."""
    args = ctx.meta.get(ARGS_KEY, [])
    if FORMAT_KEY not in ctx.meta:
        for word, value in zip(args, [*args[1:], None], strict=True):
            if word.startswith("--format="):
                word, value = "--format", word.partition("=")[2]
            if word == "--format" and value in FORMATS:
                ctx.meta[FORMAT_KEY] = value
                break
    if COMMAND_KEY not in ctx.meta:
        names, command = ["uncollapse"], ctx.command
        for word in args:
            command = getattr(command, "commands", {}).get(word)
            if command is None:
                break
            names.append(word)
        ctx.meta[COMMAND_KEY] = " ".join(names)


def _could_not_run(ctx: click.Context, message: str, *, file: str | None = None,
                   line: int | None = None) -> click.ClickException:
    emit_could_not_run(ctx, message, file=file, line=line)
    error = click.ClickException(message)
    error.exit_code = EXIT_TOOL_ERROR
    return error


class _StderrHandler(logging.Handler):
    """Each record as ``warning: message`` on the stderr of the moment (a test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)
        except Exception:  # logging's own contract: report the failure, never raise
            self.handleError(record)


def print_library_messages() -> None:
    """Print the library's log records on stderr, unless logging is already configured.

    A program that configures ``logging`` (a handler on the root logger or on ``uncollapse``)
    decides itself where the messages go and which levels it keeps; the command line adds its
    handler only where nothing would receive them.
    """
    logger = logging.getLogger(LOGGER)
    if logger.hasHandlers():
        return
    logger.addHandler(_StderrHandler())


def _keep_examples(command: click.Command) -> None:
    """Mark each ``Example:`` block verbatim (click's ``\\b``) so help shows it line by line."""
    for sub in getattr(command, "commands", {}).values():
        _keep_examples(sub)
    text = inspect.cleandoc(command.help or "")
    if "Example:\n" in text and "Example:\n\n" not in text:
        command.help = text.replace("Example:\n", "Example:\n\n\b\n", 1)


def _whole_short_help(command: click.Command) -> None:
    """Give each command (and group) its help's first sentence as its summary in the list of
    commands (up to its colon, when a long sentence has one): Click's default cuts the summary
    at 45 characters, mid-phrase ("with correct..."); an explicit one is wrapped, never cut."""
    for sub in getattr(command, "commands", {}).values():
        _whole_short_help(sub)
    if command.short_help is None and command.help:
        first = inspect.cleandoc(command.help).split("\n\n", 1)[0]
        sentence = re.split(r"(?<=\.)\s", " ".join(first.split()), maxsplit=1)[0]
        if len(sentence) > SHORT_HELP_WIDTH and ": " in sentence:
            sentence = sentence.split(": ", 1)[0]
        command.short_help = sentence.rstrip(":.") + "."


def make_main() -> click.Group:
    """The root group with every command of ``PACKAGE_CLIS`` (a new group each call)."""

    @click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="uncollapse")
    def main():
        """Make the data of contrastive and representation-learning runs right, and prove it.

        Exit codes: 0 valid, 1 the data is invalid, 2 the tool could not run. Each command
        has its own --help and example; docs/cli.md lists them all.

        Example:
            uncollapse build captions data/coco/captions_val2017_1000.json -o captions.parquet
            uncollapse validate captions captions.parquet --group-size 5
            uncollapse validate batches captions.parquet --sampler grouped -b 50 -k 5
            uncollapse cache ls
        """

    @main.group(cls=_Group)
    def build():
        """Rebuild datasets from their real sources with correct grouping (cached)."""

    @main.group(cls=_Group)
    def validate():
        """Check datasets and what samplers put in each batch."""

    @main.group(cls=_Group)
    def diagnose():
        """Measure grouping health and collapse."""

    parents = {"": main, "build": build, "validate": validate, "diagnose": diagnose}
    for module_name in PACKAGE_CLIS:
        module = importlib.import_module(module_name)
        for parent, commands in getattr(module, "COMMANDS", {}).items():
            for command in commands:
                if (parent, command.name) in ENGINE_COMMANDS:
                    add_engine_options(command)
                parents[parent].add_command(command)
    _keep_examples(main)
    _whole_short_help(main)
    return main


main = make_main()
