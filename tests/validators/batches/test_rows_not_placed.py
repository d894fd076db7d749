"""ROWS_NOT_PLACED: rows an epoch leaves out are a finding with their count, share and bound."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.samplers import DiverseBatchSampler, GroupedBatchSampler
from uncollapse.samplers.planner import diverse_layout, max_full_batches
from uncollapse.validators.batches import ROWS_NOT_PLACED_WARN_SHARE, audit_batches

WIKITEXT = Path(__file__).resolve().parents[3] / "data" / "wikitext2" / "wikitext2_test.txt"


@pytest.fixture(scope="module")
def wikitext_chunks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wikitext")
    chunks = out / "chunks.parquet"
    result = CliRunner().invoke(main, ["build", "chunks", str(WIKITEXT), "--unit", "line",
                                       "-o", str(chunks), "--cache-dir", str(out / "cache")])
    assert result.exit_code == 0, result.output
    return chunks


def doc_sizes(doc_ids) -> np.ndarray:
    return np.unique(np.asarray(doc_ids), return_counts=True)[1]


def test_wikitext_cap_4_batch_128_leaves_rows_out_and_says_so(wikitext_chunks):
    doc_ids = pl.read_parquet(wikitext_chunks)["doc_id"].to_numpy()
    sizes = doc_sizes(doc_ids)
    sampler = DiverseBatchSampler(doc_ids, 128, 4)
    batches = sampler.stats["batches_per_epoch"]
    left_out = len(doc_ids) - batches * 128
    assert sampler.rows_unplaced() == left_out
    assert left_out / len(doc_ids) > 0.1  # the loss the issue reported, inherent to 128 / 4

    result = CliRunner().invoke(main, ["validate", "batches", str(wikitext_chunks),
                                       "--sampler", "diverse", "-b", "128", "-m", "4",
                                       "--format", "json"])
    assert result.exit_code == 0, result.output  # a warning, not a broken guarantee
    report = json.loads(result.output)
    (finding,) = [f for f in report["findings"] if f["code"] == "ROWS_NOT_PLACED"]
    assert finding["severity"] == "warning" and finding["count"] == left_out
    example = finding["examples"][0]
    bound = int(np.minimum(sizes, 4 * batches).sum())
    assert example == {"epoch": 0, "rows_not_placed": left_out,
                       "share": round(left_out / len(doc_ids), 4), "full_batches": batches,
                       "batch_size": 128, "bound": bound}
    assert f"{len(doc_ids) - bound} rows are over the cap" in finding["message"]
    assert "batch_size" in finding["hint"] and "max_per_doc" in finding["hint"]
    assert report["stats"]["rows_not_placed"] == left_out
    strict = CliRunner().invoke(main, ["validate", "batches", str(wikitext_chunks),
                                       "--sampler", "diverse", "-b", "128", "-m", "4",
                                       "--strict"])
    assert strict.exit_code == 1


def test_smaller_batches_place_almost_every_wikitext_row(wikitext_chunks):
    doc_ids = pl.read_parquet(wikitext_chunks)["doc_id"].to_numpy()
    sampler = DiverseBatchSampler(doc_ids, 32, 4)
    report = audit_batches(sampler, doc_ids=doc_ids, max_per_doc=4)
    (finding,) = report.findings
    assert finding.code == "ROWS_NOT_PLACED" and finding.severity == "info"
    assert finding.count == sampler.rows_unplaced() < 32  # only the last, partial batch
    assert finding.count / len(doc_ids) <= ROWS_NOT_PLACED_WARN_SHARE


@pytest.mark.parametrize("seed", range(5))
def test_the_planner_fills_the_most_full_batches_the_cap_allows(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 200, size=40)
    sizes[:3] = rng.integers(500, 2000, size=3)  # a few documents far larger than the rest
    doc_ids = np.repeat(np.arange(len(sizes)), sizes)
    cap = int(rng.integers(1, 6))
    batch_size = int(rng.integers(16, cap * len(sizes)))
    layout = diverse_layout(doc_ids, batch_size, cap)
    full = layout.full_batches
    assert full == max_full_batches(sizes, batch_size, cap)
    # B full batches fit under the cap (document d gives at most min(n_d, cap x B) rows) ...
    bound = int(np.minimum(sizes, cap * full).sum())
    assert full * batch_size <= bound < (full + 1) * batch_size
    # ... and B + 1 do not: no plan of full batches places more rows
    assert int(np.minimum(sizes, cap * (full + 1)).sum()) < (full + 1) * batch_size
    sampler = DiverseBatchSampler(doc_ids, batch_size, cap, seed=seed)
    assert sampler.rows_unplaced() == len(doc_ids) - full * batch_size
    plan = sampler.plan()
    placed_per_doc = np.bincount(doc_ids[plan.rows], minlength=len(sizes))
    assert (placed_per_doc <= np.minimum(sizes, cap * full)).all()


def test_grouped_sampler_rows_of_small_groups_and_ranks_are_counted():
    # 30 groups of 4 rows and 10 groups of 2: per_group=4 drops the small ones
    group_ids = np.repeat(np.arange(40), [4] * 30 + [2] * 10)
    ranks = [GroupedBatchSampler(group_ids, 16, 4, rank=r, world_size=2) for r in range(2)]
    report = audit_batches(ranks=ranks, group_ids=group_ids, per_group=4)
    (finding,) = report.findings
    # 7 full batches of 4 groups: 28 of the 30 groups; 6 go to the ranks (3 each), 1 to none
    assert ranks[0].stats["batches_per_epoch"] == 7
    assert finding.code == "ROWS_NOT_PLACED" and finding.severity == "warning"
    assert finding.count == len(group_ids) - 6 * 16 == ranks[0].rows_unplaced() == 44
    # one slot of 4 rows per group of 4 (min(rows // 4, 7)); 8 rows of it fill no full batch
    assert finding.examples[0]["bound"] == 30 * 4
    assert "20 rows are in groups too small or too large" in finding.message


def test_keeping_the_last_batch_places_more_and_the_finding_counts_what_is_left():
    doc_ids = np.repeat(np.arange(12), 9)  # 108 rows
    dropped = DiverseBatchSampler(doc_ids, 20, 2)
    kept = DiverseBatchSampler(doc_ids, 20, 2, drop_last=False)
    with_drop = audit_batches(dropped, doc_ids=doc_ids, max_per_doc=2).findings[0]
    assert with_drop.count == 108 - 5 * 20 == dropped.rows_unplaced()
    assert with_drop.severity == "warning"  # 8 of 108 rows: 7.4%, above the 5% share
    report = audit_batches(kept, doc_ids=doc_ids, max_per_doc=2)
    assert report.stats["rows_not_placed"] == kept.rows_unplaced() < with_drop.count
