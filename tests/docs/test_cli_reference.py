"""docs/cli.md is generated from the Click tree and kept in sync; shell completion works as
the page documents it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.docs_cli import COMMAND, WIDTH, cli_markdown

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "cli.md"
BIN = Path(sys.executable).parent


def _command_paths(group: click.Group, path=("uncollapse",)):
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _command_paths(command, (*path, name))
        else:
            yield (*path, name)


def _section(page: str, path: str) -> str:
    """The text block under the heading ``path``."""
    match = re.search(rf"^#+ {re.escape(path)}\n\n```text\n(.*?)\n```$", page, re.M | re.S)
    assert match, f"no section for {path}"
    return match.group(1)


def test_committed_page_equals_the_generated_one():
    assert PAGE.read_text(encoding="utf-8") == cli_markdown(), (
        f"docs/cli.md is stale: run `{COMMAND}`")


def test_every_command_has_a_section_and_an_index_row():
    page = cli_markdown()
    paths = [" ".join(p) for p in _command_paths(main)]
    assert len(paths) >= 30
    for path in paths:
        _section(page, path)
        if path != "uncollapse":
            assert f"[`{path}`](#{path.replace(' ', '-')})" in page


def test_a_section_is_what_help_prints_at_the_page_width():
    page = cli_markdown()
    for args in (["validate", "captions"], ["train", "lvm"], ["build"], []):
        result = CliRunner().invoke(main, [*args, "--help"], terminal_width=WIDTH,
                                    prog_name="uncollapse")
        assert result.exit_code == 0, result.output
        assert _section(page, " ".join(["uncollapse", *args])) == result.output.rstrip()


def test_a_command_added_to_the_tree_appears_on_the_page():
    @click.group()
    def root():
        """Root."""

    @root.command()
    @click.option("--size", type=int, default=3, show_default=True, help="How many.")
    def extra(size):
        """A command that is not in uncollapse."""

    page = cli_markdown(root)
    assert "| [`uncollapse extra`](#uncollapse-extra) | A command that is not in uncollapse. |" \
        in page
    assert "--size INTEGER  How many.  [default: 3]" in _section(page, "uncollapse extra")


def _complete(words: list[str]) -> list[str]:
    """Load the documented bash completion script and complete ``words`` (the last one is
    being typed) as bash would on TAB."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    script = ('eval "$(_UNCOLLAPSE_COMPLETE=bash_source uncollapse)"\n'
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "_uncollapse_completion uncollapse\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completion_completes_commands_and_options():
    assert "_UNCOLLAPSE_COMPLETE=bash_source uncollapse" in PAGE.read_text(encoding="utf-8")
    assert _complete(["uncollapse", "va"]) == ["validate"]
    assert _complete(["uncollapse", "validate", ""]) == [
        "attributes", "batches", "captions", "flips", "scenes", "sequences"]
    assert set(_complete(["uncollapse", "validate", "captions", "--min-g"])) == {"--min-group"}
