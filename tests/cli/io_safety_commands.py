"""Every command of the CLI and its path parameters, found by walking the Click group.

The I/O safety tests build their cases from this, so a command added later is covered without
editing them: each path parameter gets the hostile value under test, every other required
parameter a harmless one of its type.
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path

import click
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.cli_paths import DirectoryPath, OutputPath

READS_NO_FILE = {"build scenes", "cache path", "cache ls", "cache verify", "cache explain",
                 "cache clear"}
"""Commands whose only path parameters name a directory they create or outputs."""

STRING_PATHS = {("validate flips", "--dataset"): "{path}:NAME"}
"""Parameters that take a path inside a larger string: the value pattern for a path."""


@dataclass(frozen=True)
class Command:
    name: str  # "build captions"
    command: click.Command

    @property
    def words(self) -> list[str]:
        return self.name.split()

    def params(self) -> list[click.Parameter]:
        return [p for p in self.command.params if p.name not in ("help",)]

    def path_params(self, kind: type) -> list[click.Parameter]:
        return [p for p in self.params() if isinstance(p.type, kind)]

    def input_params(self) -> list[click.Parameter]:
        """Parameters naming something the command reads (or a directory it uses)."""
        found = [p for p in self.params() if isinstance(p.type, click.Path)
                 and not isinstance(p.type, OutputPath)]
        return found + [p for p in self.params() if (self.name, flag(p)) in STRING_PATHS]


def commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[Command]:
    """Every leaf command under ``group``, by its full name."""
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += commands(command, (*prefix, name))
        else:
            found.append(Command(" ".join((*prefix, name)), command))
    return found


def flag(param: click.Parameter) -> str:
    return max(param.opts, key=len) if isinstance(param, click.Option) else param.name


def harmless(param: click.Parameter, files: dict[str, Path]) -> str:
    """A value of ``param``'s type that parses and names nothing dangerous."""
    kind = param.type
    if isinstance(kind, OutputPath):
        return str(files["out"] / f"{param.name}.out")
    if isinstance(kind, DirectoryPath):
        return str(files["out"] / f"{param.name}.d")
    if isinstance(kind, click.Path):
        return str(files["file"] if kind.file_okay else files["dir"])
    if isinstance(kind, click.Choice):
        return str(kind.choices[0])
    if isinstance(kind, (click.types.IntParamType, click.types.FloatParamType)):
        low = getattr(kind, "min", None)  # a range type's smallest allowed value
        return str(max(1, low)) if low is not None else "1"
    return "x"


def argv(command: Command, values: dict[str, str], files: dict[str, Path],
         outputs_first: bool = False) -> list[str]:
    """The command line: ``values`` (by parameter name) plus harmless required parameters."""
    positional, options = [], []
    for param in command.params():
        if param.name in values:
            value = values[param.name]
        elif param.required or isinstance(param, click.Argument):
            value = harmless(param, files)
        else:
            continue
        if isinstance(param, click.Argument):
            positional.append(value)
        elif (command.name, flag(param)) in STRING_PATHS:
            options += [flag(param), STRING_PATHS[command.name, flag(param)].format(path=value)]
        else:
            options += [flag(param), value]
    return command.words + (options + positional if outputs_first else positional + options)


class Hung(Exception):
    """The command blocked past the watchdog."""


@contextlib.contextmanager
def watchdog(seconds: float):
    """Interrupt a command that blocks (in ``open()`` of a FIFO, say) instead of hanging the
    test run; ``fired`` says whether it had to."""
    state = {"fired": False}

    def alarm(signum, frame):
        state["fired"] = True
        raise Hung(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield state
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def invoke(args: list[str], seconds: float = 10):
    """Run the CLI in-process under the watchdog; (result, whether it hung)."""
    with watchdog(seconds) as state:
        result = CliRunner().invoke(main, args)
    return result, state["fired"]
