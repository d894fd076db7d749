"""Each kind of mistake gets the same message shape and exit code in every command: a missing
input, an empty (0-byte) input, another kind of file (a JPEG), an unknown option under every
``--format``, an output in a folder that does not exist. The cases are every command of the
Click tree (tests/cli/io_safety_commands.py), so a command added later is covered too."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from io_safety_commands import Command, argv, commands, flag, invoke

from uncollapse.cli_paths import DirectoryPath, InputPath, OutputPath
from uncollapse.pipeline.build_cli import FileOrFolderOutput

JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffdb0043") + bytes(range(256))

EXTRA = {"train contrastive": ["--steps", "1"], "train lvm": ["--steps", "1"],
         "train flow": ["--steps", "1"], "train slots": ["--steps", "1"],
         "build sequences": ["--context", "2", "--vectors", "{file}"]}
"""Options a command needs before it reads its inputs (the length of a run, ...)."""

NOT_A_FILE_CHECK = {("build sequences", "--encoder")}
"""An encoder is a model folder or the name of an installed model package, not a data file."""

READ_AFTER = {("train contrastive", "--text-features"), ("train contrastive", "--image-features"),
              ("train flow", "--embeddings"), ("build sequences", "--vectors")}
"""Inputs a command reads only after another required input (which these tests fill with a
harmless text file that fails first)."""

RUN_DIRECTORY_FIRST = {"doctor", "evaluate"}
"""Commands that read a run directory before any input file."""


def file_inputs() -> list[tuple[Command, click.Parameter]]:
    """Every parameter that names an input file a command reads."""
    return [(c, p) for c in commands() for p in c.params()
            if isinstance(p.type, InputPath) and p.type.file_okay
            and (c.name, flag(p)) not in NOT_A_FILE_CHECK]


def first_inputs() -> list[tuple[Command, click.Parameter]]:
    """The input file each command reads first (walking the tree: every command that reads a
    file before anything else)."""
    found = {}
    for command, param in file_inputs():
        if command.name not in RUN_DIRECTORY_FIRST and (command.name, flag(param)) not in \
                READ_AFTER:
            found.setdefault(command.name, (command, param))
    return list(found.values())


def id_of(case) -> str:
    command, param = case
    return f"{command.name} {flag(param)}"


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    out, folder = tmp_path / "out", tmp_path / "dir"
    out.mkdir()
    folder.mkdir()
    harmless = tmp_path / "harmless.txt"
    harmless.write_text("x\n")
    return {"out": out, "dir": folder, "file": harmless}


def run_with(command: Command, param: click.Parameter, value: str, files, *extra: str):
    needed = [word.format(file=files["file"]) for word in EXTRA.get(command.name, [])]
    args = argv(command, {param.name: value}, files) + needed + list(extra)
    result, hung = invoke(args, seconds=120)
    assert not hung, args
    return result


@pytest.mark.parametrize("case", [c for c in file_inputs()
                                  if (c[0].name, flag(c[1])) not in READ_AFTER], ids=id_of)
def test_a_missing_input_reads_the_same_in_every_command(case, files, tmp_path):
    command, param = case
    missing = tmp_path / "no_such_file.parquet"
    result = run_with(command, param, str(missing), files)
    assert result.exit_code == 2, result.output
    expected = "a regular file or directory" if param.type.dir_okay else "a regular file"
    assert f"Error: {missing}: does not exist; expected {expected}" in result.stderr, \
        result.stderr
    assert "Usage:" not in result.stderr


@pytest.mark.parametrize("case", first_inputs(), ids=id_of)
def test_an_empty_input_reads_the_same_in_every_command(case, files, tmp_path):
    command, param = case
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    result = run_with(command, param, str(empty), files)
    assert result.exit_code == 2, result.output
    assert f"Error: {empty}: is empty (0 bytes), not " in result.stderr, result.stderr


@pytest.mark.parametrize("case", first_inputs(), ids=id_of)
def test_a_jpeg_is_named_as_one_and_its_bytes_are_never_printed(case, files, tmp_path):
    command, param = case
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(JPEG)
    result = run_with(command, param, str(photo), files)
    assert result.exit_code == 2, result.output
    assert f"Error: {photo}: is a JPEG image, not " in result.stderr, result.stderr
    assert "JFIF" not in result.output and "\ufffd" not in result.output


def with_format() -> list[Command]:
    return [c for c in commands() if any(flag(p) == "--format" for p in c.params())]


@pytest.mark.parametrize("command", commands(), ids=lambda c: c.name)
def test_an_unknown_option_is_exit_2_in_text(command, files):
    result, _ = invoke(argv(command, {}, files) + ["--no-such-option"])
    assert result.exit_code == 2
    assert "Error: No such option '--no-such-option'" in result.stderr, result.stderr


@pytest.mark.parametrize("command", with_format(), ids=lambda c: c.name)
def test_an_unknown_option_is_answered_in_the_format_asked_for(command, files):
    words = argv(command, {}, files)
    for args in (["--format", "json", "--no-such-option"], ["--no-such-option", "--format=json"]):
        result, _ = invoke(words + args)
        assert result.exit_code == 2
        answer = json.loads(result.stdout)
        assert answer["ok"] is False and answer["exit_code"] == 2
        assert answer["command"] == f"uncollapse {command.name}"
        assert answer["error"].startswith("No such option '--no-such-option'.")
    github, _ = invoke(words + ["--format", "github", "--no-such-option"])
    assert github.exit_code == 2
    assert github.stdout.startswith("::error title=uncollapse could not run::"
                                    "No such option '--no-such-option'.")


def outputs() -> list[tuple[Command, click.Parameter]]:
    return [(c, p) for c in commands() for p in c.params() if isinstance(p.type, OutputPath)]


@pytest.mark.parametrize("case", outputs(), ids=id_of)
def test_an_output_into_a_missing_folder_is_refused_naming_the_folder(case, files, tmp_path):
    command, param = case
    folder = tmp_path / "no" / "such"
    target = folder / "out.file"
    result = run_with(command, param, str(target), files)
    assert result.exit_code == 2, result.output
    assert (f"Error: {target}: the folder {folder} does not exist; create it first "
            f"(mkdir -p {folder}) or give a path in an existing folder") in result.stderr, \
        result.stderr
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("case", [(c, p) for c, p in outputs()
                                  if isinstance(p.type, FileOrFolderOutput)], ids=id_of)
def test_shards_into_a_missing_folder_are_refused_naming_the_folder(case, files, tmp_path):
    command, param = case
    folder = tmp_path / "no" / "such"
    target = folder / "shards"
    result = run_with(command, param, f"{target}/", files)
    assert result.exit_code == 2, result.output
    assert (f"Error: {target}: the folder {folder} does not exist; create it first "
            f"(mkdir -p {folder}) or give a path in an existing folder") in result.stderr, \
        result.stderr
    assert not (tmp_path / "no").exists()


def test_every_kind_of_path_parameter_is_covered():
    kinds = {next(k for k in (InputPath, OutputPath, DirectoryPath) if isinstance(p.type, k))
             for c in commands() for p in c.params() if isinstance(p.type, click.Path)}
    assert kinds == {InputPath, OutputPath, DirectoryPath}
    assert len(file_inputs()) >= 30 and len(outputs()) >= 15
    assert len(first_inputs()) >= 14  # every command but those that read a run directory


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("source, said", [
    ("Flickr8k.token.txt", "is not a caption table: its first line names none of the table's "
                           "columns"),
    ("captions_val2017.json", "is a JSON file, not a caption table (Parquet or CSV)"),
])
def test_a_caption_source_given_to_validate_says_to_build_the_table_first(tmp_path, source,
                                                                         said):
    path = tmp_path / source
    if source.endswith(".json"):
        path.write_bytes((REPO / "data" / "coco" / "captions_val2017_1000.json").read_bytes())
    else:
        path.write_text("1.jpg#0\tA dog runs .\n1.jpg#1\tA dog .\n")
    for command in (["validate", "captions"], ["diagnose", "match-ids", "-b", "4"]):
        result, _ = invoke([*command, str(path)])
        assert result.exit_code == 2, result.output
        assert f"Error: {path}: {said}" in result.stderr, result.stderr
        assert f"`uncollapse build captions {path} -o captions.parquet`" in result.stderr
