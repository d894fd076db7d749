"""An empty result is invalid data: exit 1 with a finding that says why and what to do, and
nothing written, unless the user asked for it (``--allow-empty``). Every builder and every
validator that can meet 0 rows is here."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from uncollapse.data.captions.table import CAPTION_SCHEMA


def findings(result) -> dict[str, dict]:
    report = json.loads(result.stdout)
    return {f["code"]: f for f in report["findings"]}


@pytest.fixture
def coco(tmp_path):
    path = tmp_path / "captions_val2017.json"
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(3)],
        "annotations": [{"image_id": i // 2, "id": i, "caption": f"caption {i}"}
                        for i in range(6)]}))
    return path


@pytest.fixture
def chunks(run, tmp_path):
    """Two documents of 4 and 6 chunks, and their vectors."""
    text = tmp_path / "docs.jsonl"
    text.write_text("".join(json.dumps({"doc_id": d, "text": f"chunk {d} {i}"}) + "\n"
                            for d, n in (("a", 4), ("b", 6)) for i in range(n)))
    out = tmp_path / "chunks.parquet"
    result = run("build", "chunks", text, "--unit", "line", "--cache-dir", tmp_path / "cache",
                 "-o", out)
    assert result.exit_code == 0, result.output
    vectors = tmp_path / "vectors.npy"
    np.save(vectors, np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32))
    return out, vectors


@pytest.mark.parametrize("name", ["empty.txt", "empty.jsonl"])
def test_build_chunks_of_a_0_byte_file_is_the_empty_file_error_of_every_command(run, tmp_path,
                                                                                name):
    source = tmp_path / name
    source.write_bytes(b"")
    out = tmp_path / "chunks.parquet"
    result = run("build", "chunks", source, "--cache-dir", tmp_path / "cache", "-o", out)
    assert result.exit_code == 2, result.output
    assert f"{source}: is empty (0 bytes), not a corpus" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("name, content", [("blank.txt", "\n\n   \n"), ("blank.jsonl", "\n")])
def test_build_chunks_of_an_empty_source_exits_1_and_writes_nothing(run, tmp_path, name, content):
    source = tmp_path / name
    source.write_text(content)
    out = tmp_path / "chunks.parquet"
    result = run("build", "chunks", source, "--cache-dir", tmp_path / "cache", "-o", out,
                 "--format", "json")
    assert result.exit_code == 1, result.output
    empty = findings(result)["BUILD_EMPTY"]
    assert empty["severity"] == "error" and "no chunks" in empty["message"]
    assert "--text-field" in empty["hint"] and "--allow-empty" in empty["hint"]
    assert "nothing written" in result.stderr
    assert not out.exists()


def test_build_captions_of_a_split_the_source_lacks_exits_1(run, tmp_path, coco):
    out = tmp_path / "captions.parquet"
    result = run("build", "captions", coco, "--splits", "nosuchsplit", "--cache-dir",
                 tmp_path / "cache", "-o", out, "--format", "json")
    assert result.exit_code == 1, result.output
    codes = findings(result)
    assert codes["BUILD_EMPTY"]["examples"][0]["captions"] == 0
    assert "--splits" in codes["BUILD_EMPTY"]["hint"]
    assert codes["SOURCE_ROWS_OUTSIDE_SPLITS"]["count"] == 6
    assert not out.exists()


def test_build_captions_read_with_the_wrong_format_exits_1(run, tmp_path, coco):
    result = run("build", "captions", coco, "--source-format", "tokens", "--cache-dir",
                 tmp_path / "cache", "--format", "json")
    assert result.exit_code == 1, result.output
    assert "--source-format" in findings(result)["BUILD_EMPTY"]["hint"]


def test_build_sequences_with_a_context_longer_than_every_document_exits_1(run, tmp_path, chunks):
    table, vectors = chunks
    out = tmp_path / "seq.npz"
    result = run("build", "sequences", table, "--vectors", vectors, "--context", 5000,
                 "--cache-dir", tmp_path / "cache", "-o", out, "--format", "json")
    assert result.exit_code == 1, result.output
    empty = findings(result)["BUILD_EMPTY"]
    assert empty["examples"][0]["short_documents"] == 2 and "--context" in empty["hint"]
    assert not out.exists()


def test_allow_empty_writes_the_empty_result_with_a_warning(run, tmp_path, chunks):
    table, vectors = chunks
    out = tmp_path / "seq.npz"
    result = run("build", "sequences", table, "--vectors", vectors, "--context", 6,
                 "--cache-dir", tmp_path / "cache", "-o", out, "--format", "json",
                 "--allow-empty")
    assert result.exit_code == 0, result.output
    assert findings(result)["BUILD_EMPTY"]["severity"] == "warning"
    with np.load(out) as data:
        assert data["target_vectors"].shape == (0, 4)
    again = run("build", "sequences", table, "--vectors", vectors, "--context", 6,
                "--cache-dir", tmp_path / "cache")
    assert again.exit_code == 1  # the cached empty result is still an error without the flag


def test_a_context_that_leaves_samples_is_still_exit_0(run, tmp_path, chunks):
    table, vectors = chunks
    result = run("build", "sequences", table, "--vectors", vectors, "--context", 5,
                 "--cache-dir", tmp_path / "cache", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "BUILD_EMPTY" not in findings(result)
    assert json.loads(result.stdout)["stats"]["samples"] == 1


def _empty_tables(tmp_path):
    captions = tmp_path / "captions.parquet"
    pl.DataFrame(schema=CAPTION_SCHEMA).write_parquet(captions)
    csv = tmp_path / "captions.csv"
    pl.DataFrame(schema=CAPTION_SCHEMA).write_csv(csv)
    dense = tmp_path / "dense.npz"
    np.savez(dense, context_sequences=np.zeros((0, 2, 4), np.float32),
             target_vectors=np.zeros((0, 4), np.float32), doc_ids=np.zeros(0, np.int64),
             target_positions=np.zeros(0, np.int32))
    compact = tmp_path / "compact.npz"
    np.savez(compact, vectors=np.zeros((0, 4), np.float32), doc_offsets=np.zeros(1, np.int64),
             context_length=np.int64(2))
    attributes = tmp_path / "attributes.parquet"
    pl.DataFrame({"image_id": pl.Series([], dtype=pl.String),
                  "identity": pl.Series([], dtype=pl.Int64),
                  "split": pl.Series([], dtype=pl.String),
                  "Smiling": pl.Series([], dtype=pl.Int8),
                  "Male": pl.Series([], dtype=pl.Int8)}).write_parquet(attributes)
    return captions, csv, dense, compact, attributes


@pytest.mark.parametrize("command, which, code", [
    (["validate", "captions"], 0, "CAPTION_TABLE_EMPTY"),
    (["validate", "captions"], 1, "CAPTION_TABLE_EMPTY"),
    (["validate", "sequences"], 2, "SEQUENCES_EMPTY"),
    (["validate", "sequences"], 3, "SEQUENCES_EMPTY"),
    (["diagnose", "match-ids", "-b", "4"], 0, "CAPTION_TABLE_EMPTY"),
    (["validate", "batches", "--sampler", "random", "-b", "4"], 0, "NO_BATCHES"),
    (["validate", "batches", "--sampler", "diverse", "-b", "4", "-m", "1"], 2, "NO_BATCHES"),
    (["validate", "flips", "--table"], 4, "FLIPS_NO_SAMPLES"),
])
def test_validators_fail_a_table_without_rows(run, tmp_path, command, which, code):
    path = _empty_tables(tmp_path)[which]
    result = run(*command, path, "--format", "json")
    assert result.exit_code == 1, result.output
    assert findings(result)[code]["severity"] == "error"
