"""A FIFO, device, socket or misplaced directory given as an input is refused up front (exit 2).

Opening a FIFO for reading blocks until a writer comes, so a command that opened one hung
forever. The cases are every path parameter of every command, found by walking the Click
group (tests/cli/io_safety_commands.py): a new command is covered without editing this file.
Commands run in-process under a watchdog that interrupts a blocked ``open()``.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from io_safety_commands import (
    READS_NO_FILE,
    STRING_PATHS,
    argv,
    commands,
    flag,
    invoke,
)

from uncollapse.cli_paths import DirectoryPath, InputPath
from uncollapse.paths import FIFO, file_kind

ROOT = Path(__file__).resolve().parents[2]
KIND_WORDS = {"fifo": "FIFO (named pipe)", "chardev": "character device", "socket": "socket",
              "directory": "directory", "file": "regular file"}


def _kinds(param) -> list[str]:
    """The wrong kinds for ``param``: a directory where a file is wanted, and the reverse."""
    file_okay = getattr(param.type, "file_okay", True)
    dir_okay = getattr(param.type, "dir_okay", False)
    return ["fifo", "chardev", "socket"] + (["directory"] if not dir_okay else []) + \
        (["file"] if not file_okay else [])


PARAMS = [(c, p) for c in commands() for p in c.input_params()]
CASES = [(c, p, k) for c, p in PARAMS for k in _kinds(p)]


@pytest.fixture(scope="module")
def specials(tmp_path_factory):
    """One of each non-regular file, in a short directory (a socket path has a length limit);
    each named .py so ``--dataset PATH.py:NAME`` reaches the check too."""
    where = tmp_path_factory.mktemp("sp")
    os.mkfifo(where / "fifo.py")
    os.mknod(where / "chardev.py", 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(where / "socket.py"))
    (where / "directory.py").mkdir()
    (where / "file.py").write_text("x\n")
    (where / "out").mkdir()
    yield {"specials": where, "file": where / "file.py", "dir": where / "directory.py",
           "out": where / "out"}
    server.close()


def test_every_command_is_covered_or_reads_no_file():
    names = {c.name for c in commands()}
    reading = {c.name for c, p in PARAMS if not isinstance(p.type, DirectoryPath)}
    assert len(names) >= 20
    assert names - reading == READS_NO_FILE
    assert len(PARAMS) >= 35 and len(CASES) >= 140


@pytest.mark.parametrize("command, param, kind", CASES,
                         ids=[f"{c.name}:{flag(p)}:{k}" for c, p, k in CASES])
def test_non_regular_input_is_refused_with_exit_2(specials, command, param, kind):
    path = specials["specials"] / f"{kind}.py"
    result, hung = invoke(argv(command, {param.name: str(path)}, specials))
    assert not hung, f"{command.name} {flag(param)} blocked on a {kind}"
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{path}: is a {KIND_WORDS[kind]}" in message, result.output
    assert "Traceback" not in result.output
    assert file_kind(os.stat(specials["specials"] / "fifo.py").st_mode) == FIFO


def test_fifo_message_says_what_to_do(specials):
    fifo = specials["specials"] / "fifo.py"
    result, hung = invoke(["validate", "captions", str(fifo)])
    assert not hung and result.exit_code == 2
    message = " ".join(result.output.split())
    # validate captions also reads a folder of Parquet shards
    assert (f"{fifo}: is a {FIFO}, not a regular file or directory: opening it waits for a "
            "writer") in message
    assert "Give the path of a regular file" in message
    assert "pass - to read standard input" in message


def test_split_file_and_dataset_paths_are_checked(specials):
    fifo = specials["specials"] / "fifo.py"
    result, hung = invoke(["build", "captions", str(specials["file"]), "--split-file",
                           f"train={fifo}"])
    assert not hung and result.exit_code == 2 and FIFO in result.output
    assert ("validate flips", "--dataset") in STRING_PATHS
    result, hung = invoke(["validate", "flips", "--dataset", f"{fifo}:NAME"])
    assert not hung and result.exit_code == 2
    assert f"--dataset: {fifo}: is a {FIFO}" in " ".join(result.output.split())


@pytest.mark.parametrize("words", [["build", "captions"], ["validate", "sequences"]])
def test_real_process_on_a_fifo_exits_2_and_does_not_hang(tmp_path, words):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "uncollapse", *words, str(fifo)],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert f"{fifo}: is a {FIFO}" in " ".join(done.stderr.split())
    assert file_kind(os.stat(fifo).st_mode) == FIFO


def test_symlink_to_a_fifo_is_refused_like_the_fifo(specials, tmp_path):
    link = tmp_path / "table.parquet"
    link.symlink_to(specials["specials"] / "fifo.py")
    result, hung = invoke(["diagnose", "match-ids", str(link), "-b", "2"])
    assert not hung and result.exit_code == 2
    assert f"{link}: is a {FIFO}" in " ".join(result.output.split())


FOLDER_PARAMS = [(c, p) for c, p in PARAMS
                 if (isinstance(p.type, InputPath) and p.type.dir_okay)
                 or getattr(p.type, "check_contents", False)]


def test_folder_inputs_are_found():
    assert {f"{c.name}:{flag(p)}" for c, p in FOLDER_PARAMS} == {
        "build captions:source", "build chunks:source", "build sequences:--encoder",
        "doctor:run_dir", "doctor:--metrics",
        "evaluate:run_dir", "report:run_dir", "serve:run_dir", "train contrastive:--out",
        "train flow:--out", "train lvm:--out", "train slots:--out",
        "validate captions:table"}


@pytest.mark.parametrize("command, param", FOLDER_PARAMS,
                         ids=[f"{c.name}:{flag(p)}" for c, p in FOLDER_PARAMS])
@pytest.mark.parametrize("inner", ["config.json", "sub/data.txt"])
def test_a_folder_holding_a_fifo_is_refused_naming_it(specials, tmp_path, command, param,
                                                       inner):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("some text\n")
    os.mkfifo(folder / inner)
    result, hung = invoke(argv(command, {param.name: str(folder)}, specials))
    assert not hung, f"{command.name} {flag(param)} blocked on {inner}"
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{folder / inner}: is a {FIFO} inside the folder {folder}" in message, message


@pytest.mark.parametrize("args", [["validate", "scenes", "{loop}"], ["build", "scenes", "--num",
                                  "2", "-o", "{loop}"], ["cache", "ls", "--cache-dir", "{loop}"]])
def test_a_symlink_loop_is_exit_2_naming_it(tmp_path, args):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    result, hung = invoke([a.format(loop=loop) for a in args])
    assert not hung and result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"{loop}: cannot be examined (Too many levels of symbolic links)" in message, message
    assert "Traceback" not in result.output
