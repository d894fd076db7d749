"""The local engine's side of the contract with the Ray engine: the stable partition of a
row, and sharded tables (Parquet shards plus manifest.json) that polars and Hugging Face
datasets read as they are."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl
import pytest

from uncollapse.data.shards import SHARD_MANIFEST, read_manifest, shard_files
from uncollapse.engines.local import (
    partition_expr,
    partition_key,
    stable_bucket,
    write_shards,
)
from uncollapse.errors import InputError, ToolError


def test_the_partition_of_a_key_is_pinned():
    # splitmix64 written out: these values may never change, or a rerun on a cluster would
    # spread the groups of an old table differently from a new one
    assert stable_bucket(np.array([0, 1, 2, 3]), 4).tolist() == [3, 1, 2, 1]
    keys = np.array([-1, 0, 2**62, -2**63, 12345], dtype=np.int64)
    assert stable_bucket(keys, 7).tolist() == [0, 2, 4, 6, 5]
    assert stable_bucket(keys, 1).tolist() == [0] * 5


def test_numpy_and_polars_agree_and_groups_stay_whole():
    rng = np.random.default_rng(0)
    match_id = np.repeat(rng.integers(-2**40, 2**40, size=2000), 5)
    frame = pl.DataFrame({"match_id": match_id})
    buckets = partition_key(frame, "match_id", 16)
    lazy = frame.lazy().select(partition_expr("match_id", 16)).collect().to_series().to_numpy()
    assert np.array_equal(buckets, lazy)
    assert np.array_equal(buckets, partition_key(frame.to_arrow(), "match_id", 16))
    assert np.array_equal(buckets, partition_key({"match_id": match_id}, "match_id", 16))
    # every group in one partition, and the partitions roughly even
    per_group = pl.DataFrame({"m": match_id, "b": buckets}).group_by("m").agg(
        pl.col("b").n_unique())
    assert per_group["b"].max() == 1
    counts = np.bincount(buckets, minlength=16)
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()
    with pytest.raises(ValueError, match="at least 1"):
        stable_bucket(match_id, 0)


def table(rows: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"match_id": np.arange(start, start + rows) // 5,
                         "caption": [f"caption {k}" for k in range(start, start + rows)]})


def test_sharded_output_is_read_by_polars_and_datasets(tmp_path):
    out = tmp_path / "captions"
    manifest = write_shards((table(100, s) for s in range(0, 300, 100)), out)
    assert sorted(p.name for p in out.iterdir()) == [
        SHARD_MANIFEST, "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    written = json.loads((out / SHARD_MANIFEST).read_text())
    assert written["rows"] == 300 and written["schema"] == {"match_id": "Int64",
                                                            "caption": "String"}
    for entry in written["files"]:
        data = (out / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["rows"] == 100
    assert read_manifest(out) == manifest

    scanned = pl.scan_parquet(out / "*.parquet").collect()
    assert scanned.equals(table(300))
    from datasets import load_dataset

    dataset = load_dataset("parquet", data_files=[str(p) for p in shard_files(out)],
                           split="train", cache_dir=str(tmp_path / "hf"))
    assert dataset.num_rows == 300
    assert dataset[150] == {"match_id": 30, "caption": "caption 150"}


def test_a_failed_write_leaves_the_old_folder_and_no_temporary(tmp_path):
    out = tmp_path / "captions"
    write_shards([table(10)], out)

    def frames():
        yield table(10)
        yield pl.DataFrame({"other": [1]})

    with pytest.raises(ToolError, match="same schema"):
        write_shards(frames(), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["captions"]
    assert read_manifest(out).rows == [10]
    write_shards([table(7), table(3, 7)], out)
    assert read_manifest(out).rows == [7, 3]
    assert pl.read_parquet(out / "*.parquet").height == 10


def test_a_manifest_naming_a_missing_shard_is_refused(tmp_path):
    out = tmp_path / "captions"
    write_shards([table(10), table(10, 10)], out)
    (out / "part-00001.parquet").unlink()
    with pytest.raises(InputError, match=r"lists 1 shard\(s\) the folder lacks"):
        shard_files(out)


def test_partitions_built_apart_make_the_table_built_whole():
    from pathlib import Path

    from uncollapse.engines.local import assign_match_ids, build_captions_partition
    from uncollapse.pipeline.captions import read_captions

    coco = Path(__file__).resolve().parents[2] / "data" / "coco" / "captions_val2017_1000.json"
    whole = read_captions(coco).table
    rows = whole.drop("match_id").sample(fraction=1.0, shuffle=True, seed=1)
    match_ids = assign_match_ids(rows.lazy())
    assert match_ids.height == 1000 and match_ids["match_id"].to_list() == list(range(1000))
    # any partitioning of the rows (here: thirds of a shuffle), built apart, then sorted
    parts = [build_captions_partition(rows.slice(start, 1700), match_ids)
             for start in range(0, rows.height, 1700)]
    assert all(p["match_id"].is_sorted() for p in parts)
    rebuilt = pl.concat(parts).sort("match_id", "caption_idx", "source_row")
    assert rebuilt.equals(whole)
    stranger = rows.head(1).with_columns(image_id=pl.lit("999999999"))
    with pytest.raises(ToolError, match="'999999999'.*assign_match_ids"):
        build_captions_partition(stranger, match_ids)
