"""The command line as a whole: fast start, exit code 2 on errors, documented codes, build -o."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import polars as pl
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.validators.codes import all_codes, markdown_table

ROOT = Path(__file__).resolve().parents[2]
COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"


def test_cli_import_does_not_load_heavy_modules():
    code = ("import sys, uncollapse.cli; "
            "print(sorted(m for m in ('torch', 'datasets', 'pandera', 'polars', 'sklearn', "
            "'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_every_group_lists_its_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for group in ("build", "validate", "diagnose", "cache"):
        assert group in result.output
    assert "captions" in CliRunner().invoke(main, ["build", "--help"]).output


def test_every_command_help_ends_with_an_example():
    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield path, command

    missing = [" ".join(path) for path, command in walk(main, [])
               if "Example:" not in (command.help or "")]
    assert missing == []


def test_docs_table_lists_every_finding_code():
    docs = (ROOT / "docs" / "finding-codes.md").read_text()
    assert docs == markdown_table(), ("docs/finding-codes.md is stale: run "
                                      "python -m uncollapse.validators.codes > "
                                      "docs/finding-codes.md")
    assert {"GROUPS_ALL_UNIQUE", "IMAGE_ID_POSITIONAL", "CACHE_HASH_MISMATCH"} <= set(all_codes())


def test_unexpected_error_is_exit_2_with_a_message_not_a_traceback(tmp_path):
    not_parquet = tmp_path / "table.parquet"
    not_parquet.write_text("this is not parquet")
    result = CliRunner().invoke(main, ["validate", "captions", str(not_parquet)])
    assert result.exit_code == 2
    assert str(not_parquet) in result.output and "Traceback" not in result.output


def test_build_writes_output_atomically_and_rebuild_forces_a_build(tmp_path):
    out = tmp_path / "out" / "captions.parquet"
    out.parent.mkdir()  # an output folder that does not exist is refused
    args = ["build", "captions", str(COCO), "--cache-dir", str(tmp_path / "c"), "--quiet",
            "-o", str(out)]
    runner = CliRunner()
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "built: captions" in first.output
    assert pl.read_parquet(out).height == 5005
    assert [p.name for p in out.parent.iterdir()] == ["captions.parquet"]  # no temp files left
    second = runner.invoke(main, args)
    assert "cache hit: captions" in second.output
    third = runner.invoke(main, args + ["--rebuild"])
    assert "built: captions" in third.output


def test_a_run_that_could_not_happen_is_an_annotation_under_github(tmp_path):
    not_parquet = tmp_path / "a,b.parquet"
    not_parquet.write_text("this is not parquet")
    result = CliRunner().invoke(main, ["validate", "captions", str(not_parquet),
                                       "--format", "github"])
    assert result.exit_code == 2
    annotation = result.stdout.strip()
    assert annotation.startswith("::error ")
    assert "title=uncollapse could not run::" in annotation
    assert "a%2Cb.parquet" in annotation.split("::")[1]  # escaped in the file= property
    assert "\n" not in annotation


def test_a_run_that_could_not_happen_is_json_with_ok_false(tmp_path):
    not_parquet = tmp_path / "table.parquet"
    not_parquet.write_text("this is not parquet")
    report_path = tmp_path / "report.json"
    report_path.write_text('{"ok": true}')  # a stale report of an earlier run
    result = CliRunner().invoke(main, ["validate", "captions", str(not_parquet),
                                       "--format", "json", "--json", str(report_path)])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["exit_code"] == 2
    assert str(not_parquet) in data["error"]
    assert data["command"] == "uncollapse validate captions"
    assert json.loads(report_path.read_text()) == data


def test_a_bad_argument_is_json_too_when_json_was_asked_for(tmp_path):
    missing = tmp_path / "missing.npy"
    result = CliRunner().invoke(main, ["diagnose", "embeddings", str(missing),
                                       "--format", "json"])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False and "missing.npy" in data["error"]


def test_an_input_error_is_located_at_its_file_and_line(tmp_path, monkeypatch):
    from uncollapse.errors import InputError
    from uncollapse.validators import captions

    def broken(*args, **kwargs):
        raise InputError("src: table.txt", "expected 3 fields", line=7)

    monkeypatch.setattr(captions, "validate_captions", broken)
    table = tmp_path / "t.parquet"
    table.write_text("x")
    result = CliRunner().invoke(main, ["validate", "captions", str(table), "--format", "github"])
    assert result.exit_code == 2
    assert result.stdout.startswith("::error file=src%3A table.txt,line=7,"
                                    "title=uncollapse could not run::src: table.txt, line 7: ")


def test_a_missing_optional_dependency_exits_2_naming_the_extra(tmp_path, monkeypatch):
    import numpy as np

    pred = tmp_path / "pred.npy"
    np.save(pred, np.zeros((4, 3), dtype=np.float32))
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    result = CliRunner().invoke(main, ["diagnose", "embeddings", str(pred)])
    assert result.exit_code == 2
    assert "pip install -e '.[torch]' in a checkout of uncollapse" in result.stderr
    assert "Traceback" not in result.output


def _groups(group: click.Group, path=()):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _groups(command, (*path, name))


def test_command_summaries_are_whole_sentences_never_cut():
    for path, _group in _groups(main):
        listing = CliRunner().invoke(main, [*path, "--help"]).output.split("Commands:", 1)[1]
        assert "..." not in listing, f"uncollapse {' '.join(path)} --help: {listing}"
    listing = CliRunner().invoke(main, ["--help"]).output
    assert "Rebuild datasets from their real sources with correct grouping\n" in listing
    assert "doctor    Diagnose a training run.\n" in listing


def test_top_level_help_has_examples_that_run(tmp_path, monkeypatch):
    monkeypatch.setenv("UNCOLLAPSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    shown = CliRunner().invoke(main, ["--help"], terminal_width=200).output
    examples = [line.split() for line in shown.splitlines()
                if line.strip().startswith("uncollapse ")]
    assert [words[1:3] for words in examples] == [["build", "captions"],
                                                  ["validate", "captions"],
                                                  ["validate", "batches"], ["cache", "ls"]]
    for words in examples:
        args = [str(ROOT / w) if w.startswith("data/") else w for w in words[1:]]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (words, result.output)
