"""Command-line users read flags, not the library's parameter names, in every error; an empty
caption table is a failure, not a pass."""

from __future__ import annotations

import polars as pl
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.data.captions.table import CAPTION_SCHEMA


def table(tmp_path, rows: int):
    frame = pl.DataFrame({"image_id": [str(i // 5) for i in range(rows)],
                          "match_id": [i // 5 for i in range(rows)],
                          "caption_idx": [i % 5 for i in range(rows)],
                          "caption": [f"caption number {i}" for i in range(rows)],
                          "split": ["train"] * rows, "source_row": list(range(rows)),
                          "image_path": [None] * rows}, schema=CAPTION_SCHEMA)
    path = tmp_path / f"captions_{rows}.parquet"
    frame.write_parquet(path)
    return path


def test_validate_captions_words_its_threshold_errors_with_flags(tmp_path):
    result = CliRunner().invoke(main, ["validate", "captions", str(table(tmp_path, 20)),
                                       "--min-group", "7", "--max-group", "5"])
    assert result.exit_code == 2
    assert "--max-group (5) must be >= --min-group (7)" in result.output
    assert "max_group" not in result.output


def test_validate_batches_words_its_sampler_errors_with_flags(tmp_path):
    result = CliRunner().invoke(main, ["validate", "batches", str(table(tmp_path, 60)),
                                       "--sampler", "grouped", "-b", "12", "-k", "5"])
    assert result.exit_code == 2
    assert "--batch-size 12 is not a multiple of --per-group 5" in result.output


def test_an_empty_caption_table_fails(tmp_path):
    result = CliRunner().invoke(main, ["validate", "captions", str(table(tmp_path, 0)),
                                       "--format", "json"])
    assert result.exit_code == 1
    assert '"CAPTION_TABLE_EMPTY"' in result.output
