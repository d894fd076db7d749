"""`uncollapse diagnose match-ids`: what uniformly random batches of a caption table hold."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from uncollapse.data.captions.table import CAPTION_SCHEMA
from uncollapse.errors import ToolError
from uncollapse.validators.captions.match_ids import (
    diagnose_match_id_array,
    diagnose_match_ids,
    random_batch_positives,
)


def grouped_table(n_groups: int, size: int) -> pl.DataFrame:
    """``n_groups`` images with ``size`` captions each, rows in file order."""
    n = n_groups * size
    group = pl.int_range(n, eager=True) // size
    return pl.DataFrame({
        "image_id": ("img" + group.cast(pl.String) + "x"),
        "match_id": group.cast(pl.Int64),
        "caption_idx": (pl.int_range(n, eager=True) % size).cast(pl.Int16),
        "caption": "caption " + pl.int_range(n, eager=True).cast(pl.String),
        "split": ["train"] * n,
        "source_row": pl.int_range(n, eager=True).cast(pl.Int64),
        "image_path": [None] * n,
    }, schema=CAPTION_SCHEMA)


def analytic_positives_per_row(n: int, size: int, batch: int) -> float:
    # A row has size-1 positives among the n-1 other rows; a batch holds batch-1 others.
    return (size - 1) * (batch - 1) / (n - 1)


def test_simulated_positives_agree_with_the_analytic_expectation(tmp_path, write):
    n_groups, size, batch = 10_000, 5, 500
    path = write(grouped_table(n_groups, size), tmp_path / "captions.parquet")

    report = diagnose_match_ids(path, batch_size=batch, seed=3)

    expected = analytic_positives_per_row(n_groups * size, size, batch)
    assert report.stats["expected_positives_per_row"] == pytest.approx(expected, rel=1e-9)
    assert report.stats["mean_positives_per_row"] == pytest.approx(expected, rel=0.1)
    assert report.stats["group_size_histogram"] == {5: 10_000}
    assert report.stats["rows"] == 50_000 and report.stats["groups"] == 10_000
    assert report.findings == []
    assert report.stats["verdict"].startswith("healthy")


def test_share_without_positives_matches_poisson_estimate():
    n_groups, batch = 20_000, 32
    match_ids = np.repeat(np.arange(n_groups), 2)
    np.random.default_rng(1).shuffle(match_ids)

    without, per_row = random_batch_positives(match_ids, batch, seed=7, max_batches=2000)

    expected_per_row = analytic_positives_per_row(2 * n_groups, 2, batch)
    pairs_per_batch = batch * expected_per_row / 2
    assert without == pytest.approx(math.exp(-pairs_per_batch), abs=0.03)
    assert per_row == pytest.approx(expected_per_row, rel=0.5)


def test_exact_counts_on_extreme_tables():
    assert random_batch_positives(np.zeros(40, dtype=np.int64), 8) == (0.0, 7.0)
    assert random_batch_positives(np.arange(40), 8) == (1.0, 0.0)
    # Two groups of 20 in batches of 40: every row has 19 positives.
    assert random_batch_positives(np.repeat([3, 9], 20), 40) == (0.0, 19.0)


def test_simulation_is_seeded_and_uses_at_most_max_batches():
    match_ids = np.repeat(np.arange(300), 5)
    a = random_batch_positives(match_ids, 16, seed=5, max_batches=50)
    b = random_batch_positives(match_ids, 16, seed=5, max_batches=50)
    c = random_batch_positives(match_ids, 16, seed=6, max_batches=50)
    assert a == b
    assert a != c
    # 50 batches: the share is a multiple of 1/50.
    assert round(a[0] * 50, 9) == int(round(a[0] * 50))


def test_all_singletons_are_broken(tmp_path, run, write):
    path = write(grouped_table(400, 1), tmp_path / "captions.parquet")

    report = diagnose_match_ids(path, batch_size=32)
    assert report.codes() == ["GROUPS_ALL_UNIQUE"]
    assert report.findings[0].count == 400
    assert report.stats["mean_positives_per_row"] == 0.0
    assert report.stats["share_batches_without_positive"] == 1.0
    assert report.stats["verdict"].startswith("broken")

    result = run("diagnose", "match-ids", path, "--batch-size", "32")
    assert result.exit_code == 1
    assert "GROUPS_ALL_UNIQUE" in result.output


def test_groups_of_two_in_small_random_batches_have_few_positives(tmp_path, run, write):
    path = write(grouped_table(20_000, 2), tmp_path / "captions.parquet")

    result = run("diagnose", "match-ids", path, "--batch-size", "16", "--format", "json")

    assert result.exit_code == 0  # a warning: the groups are right, the sampler is not
    report = json.loads(result.stdout)
    assert [f["code"] for f in report["findings"]] == ["FEW_POSITIVES_IN_RANDOM_BATCHES"]
    assert report["findings"][0]["severity"] == "warning"
    assert report["stats"]["share_batches_without_positive"] > 0.9
    assert report["stats"]["group_size_histogram"] == {"2": 20_000}
    assert "GroupedBatchSampler" in report["findings"][0]["message"]
    strict = run("diagnose", "match-ids", path, "--batch-size", "16", "--strict")
    assert strict.exit_code == 1


def test_healthy_table_exits_0(tmp_path, run, write):
    path = write(grouped_table(100, 5), tmp_path / "captions.parquet")

    result = run("diagnose", "match-ids", path, "-b", "64", "--strict")

    assert result.exit_code == 0, result.output
    assert "healthy" in result.output
    assert "group_size_histogram" in result.output
    report = diagnose_match_ids(path, batch_size=64)
    assert report.stats["share_batches_without_positive"] == 0.0
    assert report.stats["mean_positives_per_row"] > 0.3


def test_bad_batch_sizes_exit_2(tmp_path, run, write):
    path = write(grouped_table(10, 5), tmp_path / "captions.parquet")

    too_big = run("diagnose", "match-ids", path, "--batch-size", "64")
    assert too_big.exit_code == 2
    assert "50 rows, fewer than one batch of 64" in too_big.output
    assert run("diagnose", "match-ids", path, "--batch-size", "1").exit_code == 2
    with pytest.raises(ToolError, match="at least 2"):
        diagnose_match_id_array(np.arange(10), 0)
    no_batches = run("diagnose", "match-ids", path, "-b", "8", "--max-batches", "0")
    assert no_batches.exit_code == 2
    assert "--max-batches must be at least 1" in no_batches.output


def test_unreadable_table_exits_2(tmp_path, run, write):
    bad = write(grouped_table(10, 5).drop("match_id"), tmp_path / "captions.parquet")

    result = run("diagnose", "match-ids", bad, "-b", "8")
    assert result.exit_code == 2
    assert str(bad) in result.output
    assert run("diagnose", "match-ids", tmp_path / "missing.parquet", "-b", "8").exit_code == 2


def test_help_has_an_example(run):
    result = run("diagnose", "match-ids", "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
