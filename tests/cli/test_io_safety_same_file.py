"""An output that is one of the command's inputs is refused with exit 2 before any work.

``build captions x.txt -o x.txt`` used to overwrite its own input. The cases are every pair of
an input parameter and an output parameter of every command (walked from the Click group),
with the output given as the same path, as a symlink to the input and as a hard link to it,
and with the output before or after the input on the command line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from io_safety_commands import argv, commands, flag, invoke

from uncollapse.cli_paths import DirectoryPath, OutputPath

PAIRS = [(c, i, o) for c in commands() for i in c.input_params() for o in c.params()
         if isinstance(o.type, OutputPath) and isinstance(i.type, click.Path) and i.type.file_okay]
LINKS = ["same path", "symlink", "hard link", "relative path"]


def _files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "other.txt").write_text("other\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "out").mkdir()
    return {"file": tmp_path / "other.txt", "dir": tmp_path / "d", "out": tmp_path / "out"}


def _output_for(source: Path, link: str, tmp_path: Path, monkeypatch) -> str:
    if link == "same path":
        return str(source)
    if link == "relative path":
        monkeypatch.chdir(tmp_path)
        return os.path.join(".", "d", "..", source.name)
    out = tmp_path / "out" / f"{link.replace(' ', '-')}.out"
    if link == "symlink":
        out.symlink_to(source)
    else:
        os.link(source, out)
    return str(out)


def test_every_command_with_an_input_and_an_output_is_covered():
    covered = {c.name for c, _, _ in PAIRS}
    assert len(PAIRS) >= 30
    assert {"build captions", "build attributes", "build chunks", "build sequences",
            "validate captions", "validate batches", "validate sequences", "validate attributes",
            "validate flips", "validate scenes", "diagnose match-ids", "diagnose embeddings",
            "evaluate"} <= covered


@pytest.mark.parametrize("outputs_first", [False, True], ids=["input-first", "output-first"])
@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("command, source_param, output_param", PAIRS,
                         ids=[f"{c.name}:{flag(i)}->{flag(o)}" for c, i, o in PAIRS])
def test_output_equal_to_an_input_is_refused_and_the_input_kept(
        tmp_path, monkeypatch, command, source_param, output_param, link, outputs_first):
    source = tmp_path / "precious.dat"
    source.write_bytes(b"the only copy\n")
    before = os.stat(source)
    files = _files(tmp_path)
    output = _output_for(source, link, tmp_path, monkeypatch)
    args = argv(command, {source_param.name: str(source), output_param.name: output}, files,
                outputs_first=outputs_first)
    args += ["--cache-dir", str(tmp_path / "cache")] if command.name.startswith("build") else []
    result, hung = invoke(args)
    assert not hung and result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "is the same file as" in message and "would destroy the input" in message, message
    after = os.stat(source)
    assert source.read_bytes() == b"the only copy\n"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.*"))


def test_split_file_equal_to_output_is_refused(tmp_path):
    source, listing = tmp_path / "captions.txt", tmp_path / "train.txt"
    source.write_text("1.jpg#0\ta dog\n")
    listing.write_text("1.jpg\n")
    result, hung = invoke(["build", "captions", str(source), "--split-file", f"train={listing}",
                           "-o", str(listing), "--cache-dir", str(tmp_path / "cache")])
    assert not hung and result.exit_code == 2
    assert f"--output {listing} is the same file as --split-file {listing}" in \
        " ".join(result.output.split())
    assert listing.read_text() == "1.jpg\n"


def test_two_outputs_on_one_file_are_refused(tmp_path):
    report = tmp_path / "r.out"
    result, hung = invoke(["build", "scenes", "--num", "2", "--size", "16", "-o", str(report),
                           "--json", str(report), "--cache-dir", str(tmp_path / "cache")])
    assert not hung and result.exit_code == 2
    assert "two outputs would overwrite each other" in " ".join(result.output.split())
    assert not report.exists() and not (tmp_path / "cache").exists()


def test_json_equal_to_input_gets_no_could_not_run_report(tmp_path):
    """The refusal is reported on stdout (--format json), never written over the input."""
    table = tmp_path / "t.parquet"
    table.write_bytes(b"PAR1 not really\n")
    result, hung = invoke(["validate", "captions", str(table), "--json", str(table),
                           "--format", "json"])
    assert not hung and result.exit_code == 2
    assert '"ok": false' in result.stdout and "is the same file as" in result.stdout
    assert table.read_bytes() == b"PAR1 not really\n"


def _bad_option(command) -> click.Option | None:
    """An option whose value can be made invalid (a number or a choice)."""
    for param in command.params():
        if isinstance(param, click.Option) and not param.is_flag and isinstance(
                param.type, (click.types.IntParamType, click.types.FloatParamType,
                             click.Choice)) and flag(param) != "--format":
            return param
    return None


EARLY_FAILURES = [(c, i) for c, i, o in PAIRS if o.name == "json_path" and _bad_option(c)]


def test_early_failure_cases_cover_the_report_commands():
    assert len(EARLY_FAILURES) >= 20
    assert len({c.name for c, _ in EARLY_FAILURES}) >= 12


@pytest.mark.parametrize("command, source_param", EARLY_FAILURES,
                         ids=[f"{c.name}:{flag(i)}" for c, i in EARLY_FAILURES])
def test_a_bad_option_before_the_input_does_not_write_the_report_over_it(
        tmp_path, command, source_param):
    """``--json t.parquet --min-group abc t.parquet`` fails at --min-group before TABLE is
    checked; the could-not-run report must not land on the input then."""
    source = tmp_path / "precious.dat"
    source.write_bytes(b"the only copy\n")
    files = _files(tmp_path)
    rest = argv(command, {source_param.name: str(source)}, files)[len(command.words):]
    bad = _bad_option(command)
    result, hung = invoke([*command.words, "--json", str(source), flag(bad), "not-a-value",
                           *rest])
    assert not hung and result.exit_code == 2, result.output
    assert source.read_bytes() == b"the only copy\n"


def test_the_could_not_run_report_still_replaces_an_earlier_report(tmp_path):
    report = tmp_path / "report.json"
    report.write_text('{\n  "tool": "uncollapse",\n  "ok": true\n}\n')
    result, hung = invoke(["validate", "captions", "--json", str(report), "--min-group", "abc",
                           str(tmp_path / "t.parquet")])
    assert not hung and result.exit_code == 2
    written = json.loads(report.read_text())
    assert written["ok"] is False and "--min-group" in written["error"]


FOLDER_PAIRS = [(c, i, o) for c in commands() for i in c.input_params() for o in c.params()
                if isinstance(o.type, OutputPath) and isinstance(i.type, click.Path)
                and i.type.dir_okay and not isinstance(i.type, DirectoryPath)]


def test_folder_pairs_cover_builds_and_evaluate():
    assert {c.name for c, _, _ in FOLDER_PAIRS} == {"build captions", "build chunks",
                                                    "build sequences", "evaluate", "doctor",
                                                    "validate captions"}
    # doctor: RUN_DIR and --metrics, each with --html, --json; validate captions: TABLE (a
    # folder of shards) with --json
    assert len(FOLDER_PAIRS) == 12


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-file"])
@pytest.mark.parametrize("command, folder_param, output_param", FOLDER_PAIRS,
                         ids=[f"{c.name}:{flag(i)}->{flag(o)}" for c, i, o in FOLDER_PAIRS])
def test_output_inside_an_input_folder_is_refused(tmp_path, command, folder_param,
                                                  output_param, existing):
    """``build chunks docs/ -o docs/out.txt`` would add a document to its own input; for a
    folder whose type names what is read in it (a run directory), inside one of those."""
    folder = tmp_path / "input-folder"
    reads = folder_param.type.reads_inside
    sub = sorted(reads)[0] if reads else "sub"
    (folder / sub).mkdir(parents=True)
    (folder / "a.txt").write_text("some text\n")
    output = folder / sub / ("a.txt" if existing else "out.txt")
    if existing:
        output.write_text("kept\n")
    args = argv(command, {folder_param.name: str(folder), output_param.name: str(output)},
                _files(tmp_path))
    result, hung = invoke(args)
    assert not hung and result.exit_code == 2, result.output
    shown = flag(folder_param) if isinstance(folder_param, click.Option) else \
        folder_param.human_readable_name
    assert f"{output} is inside {shown} {folder}, a folder the command reads" in \
        " ".join(result.output.split())
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == \
        sorted(["a.txt", sub] + ([f"{sub}/a.txt"] if existing else []))


def test_a_report_beside_a_runs_own_files_is_not_refused(tmp_path):
    """``evaluate RUN --json RUN/eval_other.json`` writes beside the run: nothing it reads."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    result, hung = invoke(["evaluate", str(run), "--json", str(run / "eval_other.json")])
    assert not hung and "is inside" not in result.output
    refused, _ = invoke(["evaluate", str(run), "--json", str(run / "config.json")])
    assert refused.exit_code == 2 and "is inside" in " ".join(refused.output.split())
    assert (run / "config.json").read_text() == "{}"
