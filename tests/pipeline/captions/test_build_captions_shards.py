"""`build captions -o DIR/`: the table as Parquet shards plus manifest.json, stored and
verified by the cache shard by shard, read as they are by polars, Hugging Face datasets and
`validate captions`."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from uncollapse.cache.store import Cache
from uncollapse.data.shards import SHARD_MANIFEST, read_manifest, shard_files
from uncollapse.pipeline.captions import build_captions

REPO = Path(__file__).resolve().parents[3]
COCO_1000 = REPO / "data" / "coco" / "captions_val2017_1000.json"


def test_folder_output_is_shards_the_tools_read(run, tmp_path):
    single = tmp_path / "captions.parquet"
    assert run("build", "captions", COCO_1000, "-o", single).exit_code == 0
    out = tmp_path / "captions"
    result = run("build", "captions", COCO_1000, "-o", f"{out}/", "--shard-rows", "1000")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}/ (6 shards, 5005 rows)" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        SHARD_MANIFEST, *(f"part-{n:05d}.parquet" for n in range(6))]
    manifest = read_manifest(out)
    assert manifest.rows == [1000] * 5 + [5] and manifest.schema["match_id"] == "Int64"

    whole = pl.read_parquet(single)
    assert pl.scan_parquet(out / "*.parquet").collect().equals(whole)
    from datasets import load_dataset

    dataset = load_dataset("parquet", data_files=[str(p) for p in shard_files(out)],
                           split="train", cache_dir=str(tmp_path / "hf"))
    assert dataset.num_rows == 5005 and dataset[4321] == whole.row(4321, named=True)

    checked = run("validate", "captions", out, "--min-group", "5", "--max-group", "7")
    assert checked.exit_code == 0, checked.output

    # the same folder again replaces the shards as a whole
    again = run("build", "captions", COCO_1000, "-o", out, "--shard-rows", "2500")
    assert again.exit_code == 0, again.output
    assert read_manifest(out).rows == [2500, 2500, 5]
    assert sorted(p.name for p in out.iterdir())[-1] == "part-00002.parquet"


def test_the_cache_stores_and_verifies_each_shard(run, tmp_path):
    cache = Cache(tmp_path / "cache")
    built = build_captions(COCO_1000, cache=cache, shard_rows=2000)
    assert built.path.is_dir() and built.rows == 5005
    files = built.entry.manifest["files"]
    assert sorted(files) == ["captions/manifest.json", "captions/part-00000.parquet",
                             "captions/part-00001.parquet", "captions/part-00002.parquet"]
    assert all(len(f["sha256"]) == 64 for f in files.values())
    assert built.table().height == 5005
    # another shard size is another entry; the same one is a hit
    assert build_captions(COCO_1000, cache=cache, shard_rows=2000).hit
    assert build_captions(COCO_1000, cache=cache).path.name == "captions.parquet"

    shard = built.path / "part-00001.parquet"
    shard.chmod(0o644)
    shard.write_bytes(shard.read_bytes()[:-20] + bytes(20))
    verified = run("cache", "verify", "--cache-dir", tmp_path / "cache")
    assert verified.exit_code == 1 and "captions/part-00001.parquet" in verified.output
    warnings = []
    rebuilt = build_captions(COCO_1000, cache=Cache(tmp_path / "cache", warn=warnings.append),
                             shard_rows=2000)
    assert not rebuilt.hit and warnings and "not what its manifest promises" in warnings[0]
    assert json.loads((rebuilt.path / SHARD_MANIFEST).read_text())["rows"] == 5005


def test_a_folder_output_where_a_command_writes_one_file_is_refused(run, tmp_path):
    (tmp_path / "scenes").mkdir()
    result = run("build", "scenes", "--num", "4", "-o", tmp_path / "scenes")
    assert result.exit_code == 2
    assert "is a directory; give the path of a file to write" in result.output
