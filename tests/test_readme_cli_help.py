"""Every command's help shows its Example block line by line, as written, not re-wrapped."""

from __future__ import annotations

import click
from click.testing import CliRunner

from uncollapse.cli import main


def _commands(group: click.Group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_example_lines_survive_in_every_help_text():
    checked = 0
    for path, command in _commands(main):
        result = CliRunner().invoke(main, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        example = command.help.split("Example:", 1)[1]
        lines = [line.strip() for line in example.splitlines()
                 if line.strip().startswith("uncollapse ")]
        assert lines, f"{' '.join(path)}: no example command in its help"
        shown = [line.strip() for line in result.output.splitlines()]
        for line in lines:
            assert line in shown, f"{' '.join(path)}: example re-wrapped: {line!r}"
        checked += 1
    assert checked >= 18
