"""Every numeric option of every command refuses an impossible value with exit 2, naming the
flag, while parsing (before any file is read): NaN and infinity for every float, and the value
just outside each declared range (a zero or negative size, a negative seed, a share above 1).

The table is the command tree itself, so an option added later with a plain ``int`` or
``float`` fails here until it declares its range.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.cli_ranges import Finite


def _commands(command, path=()):
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def _numeric_options():
    for path, command in _commands(main):
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                yield path, param


NUMERIC = list(_numeric_options())


def _impossible(param) -> list[str]:
    kind = param.type
    values = []
    if isinstance(kind, Finite):
        values += ["nan", "inf", "-inf"]
    if kind.min is not None:
        low = kind.min if getattr(kind, "min_open", False) else kind.min - 1
        values += [str(low)] + (["-1"] if kind.min > -1 else [])
    if kind.max is not None:
        values.append(str(kind.max if getattr(kind, "max_open", False) else kind.max + 1))
    return values


CASES = [(path, param.opts[0], value) for path, param in NUMERIC for value in _impossible(param)]


def test_the_tree_has_numeric_options_of_every_family():
    families = {path[0] for path, _ in NUMERIC}
    assert {"build", "validate", "diagnose", "train", "serve"} <= families
    assert len(NUMERIC) > 100


@pytest.mark.parametrize("path, param", NUMERIC,
                         ids=[" ".join(p) + " " + q.opts[0] for p, q in NUMERIC])
def test_every_numeric_option_declares_its_range_and_accepts_its_default(path, param):
    kind = param.type
    assert isinstance(kind, (click.IntRange, Finite)), (
        f"{' '.join(path)} {param.opts[0]} is a plain {kind.name}: declare its range with "
        "uncollapse.cli_ranges")
    assert kind.min is not None or kind.max is not None or isinstance(kind, Finite)
    if isinstance(param.default, (int, float)):
        assert kind.convert(param.default, param, None) == param.default


@pytest.mark.parametrize("path, flag, value", CASES,
                         ids=[f"{' '.join(p)} {f}={v}" for p, f, v in CASES])
def test_an_impossible_value_exits_2_naming_the_flag(path, flag, value):
    result = CliRunner().invoke(main, [*path, f"{flag}={value}"])
    assert result.exit_code == 2, result.output
    assert flag in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, flags", [
    (["validate", "captions", "x.parquet", "--min-group", "7", "--max-group", "2"],
     ["--max-group (2) must be >= --min-group (7)"]),
    (["validate", "captions", "x.parquet", "--min-caption-chars", "50",
      "--max-caption-chars", "5"], ["--max-caption-chars (5) must be >= --min-caption-chars"]),
    (["validate", "flips", "--table", "x.parquet", "--min-flips", "3", "--max-flips", "2"],
     ["--max-flips (2) must be >= --min-flips (3)"]),
    (["diagnose", "embeddings", "x.npy", "--min-std-ratio", "3", "--max-std-ratio", "2"],
     ["--max-std-ratio (2.0) must be >= --min-std-ratio (3.0)"]),
])
def test_crossed_bounds_exit_2_naming_both_flags(tmp_path, args, flags):
    (tmp_path / "x.parquet").write_bytes(b"")
    (tmp_path / "x.npy").write_bytes(b"")
    args = [str(tmp_path / a) if a.startswith("x.") else a for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    for text in flags:
        assert text in result.output


@pytest.mark.parametrize("args, flag", [
    (["validate", "captions", "t.parquet", "--group-size", "0"], "--group-size"),
    (["validate", "captions", "t.parquet", "--group-size", "-1"], "--group-size"),
    (["validate", "captions", "t.parquet", "--max-singleton-share", "-1"],
     "--max-singleton-share"),
    (["diagnose", "embeddings", "t.npy", "--max-samples", "-1"], "--max-samples"),
    (["diagnose", "embeddings", "t.npy", "--min-rank-fraction", "nan"], "--min-rank-fraction"),
    (["build", "sequences", "t.parquet", "--encoder", "m", "--context", "2", "--batch-size",
      "0"], "--batch-size"),
    (["build", "sequences", "t.parquet", "--encoder", "m", "--context", "2", "--batch-size",
      "-1"], "--batch-size"),
    (["validate", "batches", "t.parquet", "--sampler", "random", "-b", "4", "--seed", "-1"],
     "--seed"),
    (["validate", "batches", "t.parquet", "--sampler", "random", "-b", "4", "--seed",
      str(2**32)], "--seed"),
])
def test_the_issue_cases_exit_2_before_reading_the_input(tmp_path, args, flag):
    """The input is an empty file: Click's own refusal of the value proves nothing was read."""
    for name in ("t.parquet", "t.npy"):
        (tmp_path / name).write_bytes(b"")
    args = [str(tmp_path / a) if a.startswith("t.") else a for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in result.output


@pytest.fixture(scope="module")
def caption_table(tmp_path_factory):
    import polars as pl

    from uncollapse.data.captions.table import CAPTION_SCHEMA

    path = tmp_path_factory.mktemp("huge") / "captions.parquet"
    pl.DataFrame({"image_id": [str(i // 5) for i in range(40)],
                  "match_id": [i // 5 for i in range(40)],
                  "caption_idx": [i % 5 for i in range(40)],
                  "caption": [f"caption {i}" for i in range(40)], "split": ["train"] * 40,
                  "source_row": list(range(40)), "image_path": [None] * 40},
                 schema=CAPTION_SCHEMA).write_parquet(path)
    return path


HUGE = str(2**31 - 1)
"""The largest count an option takes (MAX_COUNT): huge, yet accepted while parsing."""


@pytest.mark.parametrize("args, expected", [
    (["validate", "batches", "{t}", "--sampler", "random", "-b", HUGE],
     f"--batch-size {HUGE} is larger than the 40 rows"),
    (["validate", "batches", "{t}", "--sampler", "random", "-b", "4", "-e", HUGE],
     "--epochs must be in [1, 1000]"),
    (["validate", "batches", "{t}", "--sampler", "random", "-b", "1", "-w", HUGE],
     "--world-size must be in [1, 65536]"),
    (["diagnose", "match-ids", "{t}", "-b", HUGE], f"fewer than one batch of {HUGE}"),
    (["build", "scenes", "--num", HUGE, "--size", "8", "--cache-dir", "{c}"],
     "more than the"),
    (["build", "scenes", "--num", "1", "--size", HUGE, "--cache-dir", "{c}"],
     "lower --num or --size"),
])
def test_huge_sizes_exit_2_naming_the_option_not_a_memory_error(tmp_path, caption_table, args,
                                                                 expected):
    args = [a.format(t=caption_table, c=tmp_path / "cache") for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "MemoryError" not in result.output


def test_a_bare_memory_error_says_what_to_lower(monkeypatch, caption_table):
    import uncollapse.validators.batches.table as batches_table

    def exhausted(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(batches_table, "audit_table", exhausted)
    result = CliRunner().invoke(main, ["validate", "batches", str(caption_table), "--sampler",
                                       "random", "-b", "4"])
    assert result.exit_code == 2
    assert "ran out of memory (no detail given); lower the sizes given" in result.output
