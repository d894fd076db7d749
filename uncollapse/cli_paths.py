"""Click types for the paths a command reads and writes, checked while the command line is parsed.

Every check happens before the command does any work and before anything is opened, so a FIFO
given as an input is refused instead of hanging the command, and an output that is one of the
inputs (the same path, a symlink or a hard link to it) is refused instead of overwriting it.
Each path is remembered in ``ctx.meta`` as it is parsed; whichever of an input and an output is
parsed second finds the other, so the order on the command line does not matter.
"""

from __future__ import annotations

import os

import click

from uncollapse.errors import ToolError
from uncollapse.paths import (
    CHAR_DEVICE,
    DIRECTORY,
    FIFO,
    REGULAR,
    check_input,
    check_output,
    check_tree,
    kind_of,
    same_file,
)

__all__ = [
    "JSON_PATH_KEY", "REPORT_HEAD", "SEEN_KEY", "DirectoryPath", "InputPath", "OutputPath",
    "PathError", "check_output_folder", "input_file", "may_hold_a_report", "remember",
]

REPORT_HEAD = b'{"tool":"uncollapse"'
"""How every JSON report (and could-not-run answer) starts, without its whitespace."""
SEEN_KEY = "uncollapse.paths"
"""``ctx.meta`` list of (role, path, parameter name) parsed so far: role is input or output."""
JSON_PATH_KEY = "uncollapse.json_path"
"""``ctx.meta`` entry of the ``--json`` path (set by ``cli_report.report_options``): a path
refused here must not get the could-not-run report either."""


class PathError(click.ClickException):
    """A path on the command line that cannot be used (exit 2), said as the library says it
    (``PATH: does not exist; expected a regular file``), so a missing or wrong file reads the
    same whether the command line or a reader finds it; no usage text: the command line itself
    was well formed."""

    exit_code = 2


class InputPath(click.Path):
    """An existing regular file (or directory, with ``dir_okay``) that a command reads.

    A FIFO, character or block device, or socket is refused (exit 2) before anything opens it,
    and so is a folder that holds one.
    ``missing_ok`` lets a value that names nothing on disk through unchanged (a hub dataset
    id, an installed model package). ``stream_hint`` tells the user how the command reads a
    stream instead, if it can. ``reads_inside``: for a folder, the names of its top-level
    entries that the command reads; an output may then go anywhere else in it (a report beside
    a run's checkpoints). Without it, any output inside the folder is refused.
    """

    def __init__(self, *, file_okay: bool = True, dir_okay: bool = False,
                 allow_dash: bool = False, missing_ok: bool = False,
                 stream_hint: str | None = None, reads_inside: frozenset[str] | None = None):
        super().__init__(exists=not missing_ok, file_okay=file_okay, dir_okay=dir_okay,
                         allow_dash=allow_dash)
        self.missing_ok = missing_ok
        self.stream_hint = stream_hint
        self.reads_inside = reads_inside

    def convert(self, value, param, ctx):
        try:
            if (self.allow_dash and value == "-") or (self.missing_ok and
                                                      kind_of(value) is None):
                return super().convert(value, param, ctx)
            kind = check_input(value, file_okay=self.file_okay, dir_okay=self.dir_okay,
                               stream_hint=self.stream_hint)
            if kind == DIRECTORY:
                check_tree(value)
            if not os.access(value, os.R_OK):
                raise ToolError(f"{value}: cannot be read (permission denied); check its "
                                "permissions")
        except ToolError as exc:
            raise PathError(str(exc)) from exc
        value = super().convert(value, param, ctx)
        remember(ctx, param, "input", value, reads_inside=self.reads_inside)
        return value


class OutputPath(click.Path):
    """A file a command writes: refused (exit 2) when it is a directory, block device or
    socket, when it is one of the command's inputs, or when its folder does not exist (a typo
    in a folder name must not silently create a tree); a character device (``/dev/null``) or
    FIFO is accepted and written in place (``uncollapse.atomic``)."""

    def __init__(self):
        super().__init__(dir_okay=False)

    def convert(self, value, param, ctx):
        try:
            kind = check_output(value)
            if kind == FIFO:
                _hold(ctx, value)
            elif kind is None:
                check_output_folder(value)
        except ToolError as exc:
            raise PathError(str(exc)) from exc
        value = super().convert(value, param, ctx)
        remember(ctx, param, "output", value)
        return value


def check_output_folder(path: str) -> None:
    """Refuse an output whose folder does not exist (or is not a folder), naming the folder."""
    folder = os.path.dirname(path) or "."
    kind = kind_of(folder)
    if kind is None:
        raise ToolError(f"{path}: the folder {folder} does not exist; create it first (mkdir -p "
                        f"{folder}) or give a path in an existing folder")
    if kind != DIRECTORY:
        raise ToolError(f"{path}: {folder} is a {kind}, not a folder; give a path in an "
                        "existing folder")


def _hold(ctx: click.Context | None, path: str) -> None:
    """A FIFO output must have a reader before any work (or a run that cannot deliver would
    still write its other outputs); it stays open until the command line's run is over."""
    from uncollapse.atomic import hold_fifo, release_held

    hold_fifo(path)
    if ctx is not None:
        ctx.find_root().call_on_close(release_held)


class DirectoryPath(click.Path):
    """A directory a command creates or fills (a run directory, the cache root): refused
    (exit 2) when something other than a directory is there. ``check_contents`` also refuses
    an existing directory holding a FIFO, device or socket (a run directory is read back on
    --resume; the cache checks its own entries)."""

    def __init__(self, *, check_contents: bool = False):
        super().__init__(file_okay=False)
        self.check_contents = check_contents

    def convert(self, value, param, ctx):
        try:
            kind = kind_of(value)
        except ToolError as exc:
            raise PathError(str(exc)) from exc
        if kind not in (None, DIRECTORY):
            raise PathError(f"{value}: is a {kind}; expected a directory (or a path to create "
                            "one at)")
        if kind == DIRECTORY and self.check_contents:
            try:
                check_tree(value)
            except ToolError as exc:
                raise PathError(str(exc)) from exc
        return super().convert(value, param, ctx)


def input_file(ctx: click.Context | None, param: click.Parameter | None, value: str) -> str:
    """Check one input path parsed by a callback (``--split-file train=PATH``) like InputPath."""
    try:
        check_input(value)
    except ToolError as exc:
        raise PathError(str(exc)) from exc
    remember(ctx, param, "input", value)
    return value


def remember(ctx: click.Context | None, param: click.Parameter | None, role: str,
             value: str | os.PathLike, reads_inside: frozenset[str] | None = None) -> None:
    """Record a parsed path; refuse (exit 2) an output that is an input, lies inside an input
    folder (inside its entries ``reads_inside``, when the folder's type names them), or is
    another output."""
    if ctx is None or value is None or (role == "input" and kind_of(value) is None):
        return
    seen = ctx.meta.setdefault(SEEN_KEY, [])
    name = _name(param)
    for other_role, other, other_name, other_reads in seen:
        if "output" not in (role, other_role):
            continue
        output, output_name = (value, name) if role == "output" else (other, other_name)
        input_, input_name = (other, other_name) if role == "output" else (value, name)
        reads = other_reads if role == "output" else reads_inside
        if same_file(value, other):
            if role == other_role:
                why = "two outputs would overwrite each other"
            else:
                why = "writing the output would destroy the input"
            problem = f"is the same file as {input_name} {input_}: {why}"
        elif role != other_role and _inside(output, input_, reads):
            problem = (f"is inside {input_name} {input_}, a folder the command reads: writing "
                       "there would change its input")
        else:
            continue
        _forget_json_path(ctx, value, other)
        raise click.UsageError(f"{output_name} {output} {problem}. Give {output_name} another "
                               "path", ctx=ctx)
    seen.append((role, value, name, reads_inside))


def _inside(path: str | os.PathLike, folder: str | os.PathLike,
            reads: frozenset[str] | None = None) -> bool:
    """Whether ``path`` lies below the directory ``folder`` (symlinks resolved), and, when
    ``reads`` names the folder's entries that are read, below one of those."""
    if kind_of(folder) != DIRECTORY:
        return False
    real, root = os.path.realpath(path), os.path.realpath(folder)
    if real == root or os.path.commonpath([real, root]) != root:
        return False
    return reads is None or os.path.relpath(real, root).split(os.sep)[0] in reads


def may_hold_a_report(path: str | os.PathLike) -> bool:
    """Whether a could-not-run report may be written to ``path`` (``--json``).

    Parsing can stop at a bad option before the inputs are checked, so ``--json`` may still
    name an input then: only a path with nothing there, an empty file, a device or FIFO, or an
    earlier uncollapse JSON report is written; anything else is left alone.
    """
    kind = kind_of(path)
    if kind in (None, CHAR_DEVICE, FIFO):
        return True
    if kind != REGULAR:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(REPORT_HEAD) + 8)
    except OSError:
        return False
    return head == b"" or head.replace(b" ", b"").replace(b"\n", b"").startswith(REPORT_HEAD)


def _forget_json_path(ctx: click.Context, *paths) -> None:
    """A refused ``--json`` path must not get the could-not-run report either."""
    json_path = ctx.meta.get(JSON_PATH_KEY)
    if json_path and any(same_file(json_path, path) for path in paths):
        ctx.meta.pop(JSON_PATH_KEY)


def _name(param: click.Parameter | None) -> str:
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name if param is not None else "the path"
