"""``uncollapse validate batches`` on caption tables and sequence files."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cli import main


@pytest.fixture()
def captions(tmp_path):
    n_images = 2000
    match_id = np.repeat(np.arange(n_images, dtype=np.int64), 5)
    table = pl.DataFrame({
        "image_id": [f"{m:012d}" for m in match_id],
        "match_id": match_id,
        "caption_idx": np.tile(np.arange(5, dtype=np.int16), n_images),
        "caption": [f"caption {i % 700}" for i in range(len(match_id))],
        "doc_id": match_id // 40,
    })
    path = tmp_path / "captions.parquet"
    table.write_parquet(path)
    return path


def run(*args):
    return CliRunner().invoke(main, ["validate", "batches", *map(str, args)])


def test_random_sampler_fails_with_batches_without_positives(captions):
    result = run(captions, "--sampler", "random", "-b", "32", "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["kind"] == "batches" and not report["ok"]
    assert "BATCH_WITHOUT_POSITIVES" in [f["code"] for f in report["findings"]]
    assert report["stats"]["batches_without_positives"] > 0


def test_grouped_sampler_passes_on_two_ranks_and_two_epochs(captions, tmp_path):
    out = tmp_path / "report.json"
    result = run(captions, "--sampler", "grouped", "-b", "50", "-k", "5", "-w", "2", "-e", "2",
                 "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["ok"] and report["findings"] == []
    assert report["stats"]["batches_per_rank"] == [100, 100]
    assert report["stats"]["positives_per_row"]["min"] == 4
    assert report["stats"]["rows_on_several_ranks"] == 0


def test_grouped_with_exclude_duplicates_keeps_shared_captions_apart(captions):
    result = run(captions, "--sampler", "grouped", "-b", "50", "-k", "5",
                 "--exclude-duplicates", "caption", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["stats"]["sampler"]["linked_group_sets"] > 0


def test_diverse_sampler_on_doc_column_and_random_over_cap(captions):
    ok = run(captions, "--sampler", "diverse", "-b", "20", "-m", "4", "--doc-column", "doc_id",
             "--format", "json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["stats"]["max_rows_per_doc_in_batch"]["max"] <= 4
    bad = run(captions, "--sampler", "random", "-b", "20", "-m", "2", "--doc-column", "doc_id",
              "--format", "json")
    assert bad.exit_code == 1
    assert "DOC_OVER_CAP" in [f["code"] for f in json.loads(bad.output)["findings"]]


def test_diverse_sampler_on_an_npz_sequence_file(tmp_path):
    path = tmp_path / "seqs.npz"
    np.savez(path, doc_ids=np.repeat(np.arange(30), 7), target_vectors=np.zeros((210, 2)))
    result = run(path, "--sampler", "diverse", "-b", "16", "-m", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["stats"]["rows"] == 210


def test_diverse_sampler_on_a_compact_sequence_file_uses_its_sample_documents(tmp_path):
    # compact form: documents of 3, 7 and 12 chunks, C = 2 -> 1 + 5 + 10 samples
    path = tmp_path / "seq_compact.npz"
    np.savez(path, vectors=np.ones((22, 2), np.float32),
             doc_offsets=np.array([0, 3, 10, 22], np.int64), context_length=np.int64(2))
    result = run(path, "--sampler", "diverse", "-b", "3", "-m", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["stats"]["rows"] == 16
    assert report["stats"]["max_rows_per_doc_in_batch"]["max"] == 1


def test_unusable_requests_exit_2_with_the_reason(captions, tmp_path):
    result = run(captions, "--sampler", "grouped", "-b", "52", "-k", "5")
    assert result.exit_code == 2
    assert "--batch-size 52 is not a multiple of --per-group 5" in result.output
    result = run(captions, "--sampler", "grouped", "-b", "50")
    assert result.exit_code == 2 and "needs --per-group" in result.output
    result = run(captions, "--sampler", "grouped", "-b", "50", "-k", "5", "--group-column",
                 "img")
    assert result.exit_code == 2 and "has no column 'img'" in result.output
    nulls = tmp_path / "nulls.parquet"
    pl.DataFrame({"match_id": [1, None, 2]}, schema={"match_id": pl.Int64}).write_parquet(nulls)
    result = run(nulls, "--sampler", "random", "-b", "2")
    assert result.exit_code == 2 and "1 nulls (first at row 1)" in result.output
    result = run(captions, "--sampler", "random", "-b", "0")
    assert result.exit_code == 2


def test_options_that_would_check_nothing_exit_2_instead_of_passing(captions):
    result = run(captions, "--sampler", "grouped", "-b", "50", "-k", "5", "-m", "2")
    assert result.exit_code == 2
    assert "--max-per-doc needs document ids" in result.output and "--doc-column" in result.output
    result = run(captions, "--sampler", "random", "-b", "50", "-k", "5")
    assert result.exit_code == 2 and "--per-group applies to --sampler grouped" in result.output
    # with the document column the cap is checked, and this grouped plan breaks it
    result = run(captions, "--sampler", "grouped", "-b", "50", "-k", "5", "-m", "2",
                 "--doc-column", "doc_id")
    assert result.exit_code == 1 and "DOC_OVER_CAP" in result.output
