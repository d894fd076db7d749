"""The command-line reference (``docs/cli.md``), generated from the Click command tree.

``python -m uncollapse.docs_cli > docs/cli.md`` writes it; a test compares the committed file
with a fresh one, so the reference cannot drift from the commands. Each command's section is
its ``--help`` exactly as a terminal 100 columns wide shows it.
"""

from __future__ import annotations

import click

__all__ = ["COMMAND", "WIDTH", "cli_markdown", "walk"]

COMMAND = "python -m uncollapse.docs_cli > docs/cli.md"
WIDTH = 100
"""The terminal width the help texts are rendered at."""

_INTRO = f"""\
# Command line reference

Every `uncollapse` command with its full `--help`, as a terminal shows it. Generated from
the command tree by `{COMMAND}`; do not edit by hand (a test compares
this page with a fresh one).

Every command exits with 0 when the data is valid (warnings allowed unless `--strict`), 1 when
the data is invalid, and 2 when it could not run (unreadable input, bad arguments, a missing
optional dependency). `uncollapse COMMAND --help` prints the same text. Tab completion for
bash, zsh and fish: see [Shell completion](#shell-completion) at the end of this page.
"""

_COMPLETION = """\
## Shell completion

The command line completes commands, options and file names in bash (4.4 or newer), zsh and
fish, through Click's completion. Generate the script once and load it from your shell's
start-up file:

```sh
_UNCOLLAPSE_COMPLETE=bash_source uncollapse > ~/.uncollapse-complete.bash
echo '. ~/.uncollapse-complete.bash' >> ~/.bashrc
```

For zsh use `zsh_source` (and `~/.zshrc`); for fish,
`_UNCOLLAPSE_COMPLETE=fish_source uncollapse > ~/.config/fish/completions/uncollapse.fish`.
Then `uncollapse va<TAB>` completes to `validate`, and `uncollapse validate <TAB>` lists
`attributes batches captions flips scenes sequences`.
"""


def walk(group: click.Group, ctx: click.Context):
    """``(context, command)`` for ``group`` and every command under it, depth first, in the
    order ``--help`` lists them."""
    yield ctx, group
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = click.Context(command, info_name=name, parent=ctx, terminal_width=WIDTH,
                            max_content_width=WIDTH, **command.context_settings)
        if isinstance(command, click.Group):
            yield from walk(command, sub)
        else:
            yield sub, command


def _path(ctx: click.Context) -> str:
    return ctx.command_path


def _anchor(path: str) -> str:
    return path.replace(" ", "-")


def cli_markdown(main: click.Group | None = None) -> str:
    """The whole reference page as Markdown."""
    if main is None:
        from uncollapse.cli import main
    root = click.Context(main, info_name="uncollapse", terminal_width=WIDTH,
                         max_content_width=WIDTH, **main.context_settings)
    entries = list(walk(main, root))
    lines = [_INTRO, "| command | what it does |", "|---|---|"]
    for ctx, command in entries[1:]:
        summary = command.get_short_help_str(limit=WIDTH).replace("|", "\\|")
        lines.append(f"| [`{_path(ctx)}`](#{_anchor(_path(ctx))}) | {summary} |")
    lines.append("")
    for ctx, command in entries:
        heading = "##" if _path(ctx).count(" ") <= 1 else "###"
        lines += [f"{heading} {_path(ctx)}", "", "```text", command.get_help(ctx).rstrip(),
                  "```", ""]
    lines.append(_COMPLETION)
    return "\n".join(lines)


if __name__ == "__main__":
    click.echo(cli_markdown(), nl=False)
