"""`build captions SRC` on Parquet files in the nlphuji/flickr30k layout (a folder of shards, a
quoted glob, one file): read a slice at a time and written a partition at a time, giving the
very table and report that reading the source at once gives."""

from __future__ import annotations

import json

import polars as pl
import pytest

from uncollapse.cache.store import Cache
from uncollapse.data.parquet_pieces import rechunk, write_parquet_frames, write_shards_of
from uncollapse.data.shards import read_manifest, shard_files
from uncollapse.errors import InputError
from uncollapse.pipeline.captions import build_captions, read_captions
from uncollapse.pipeline.captions import hf as hf_module
from uncollapse.pipeline.captions.streamed import StreamedCaptionBuild


def flickr30k_rows(one_per_row: bool = False) -> pl.DataFrame:
    """60 images of five captions in the flickr30k layout, file names out of sorted order, with
    one of each irregularity the build reports, spread so that shards of 13 rows cut through
    them and an image's rows lie in several shards."""
    images = [f"{(1000 + 7919 * i) % 100_003}.jpg" for i in range(60)]
    captions = [[f"a dog {i} runs on grass {k}" for k in range(5)] for i in range(60)]
    captions[3][1] = "  padded caption  "                    # whitespace stripped
    captions[8][2] = "   "                                   # empty
    captions[9][0] = None                                    # null caption in the list
    captions[14][4] = "two dogs\tplay"                       # a TAB
    captions[21][3] = "a cat 1000092795.jpg#2 a dog"          # a record key
    captions[30] = ["", " ", "  ", "", "\t"]                  # an image of empty captions only
    captions[33] = captions[33] + ["a sixth caption"]        # an unusual caption count
    splits = ["train", "val", "test"] * 20
    rows = pl.DataFrame({"caption": captions, "filename": images, "split": splits,
                         "img_id": [str(i) for i in range(60)], "sentids": [[0]] * 60},
                        schema_overrides={"caption": pl.List(pl.String)})
    extra = pl.DataFrame({
        # a second row of image 4 (caption numbers 0..4 again), far from its first
        "caption": [["four again 0", "four again 1"], [], None, ["no file name"]],
        "filename": [images[4], images[40], images[41], None],
        "split": ["val", "train", "train", None],
        "img_id": ["60", "61", "62", "63"], "sentids": [[0]] * 4,
    }, schema=rows.schema)
    rows = pl.concat([rows.slice(0, 45), extra, rows.slice(45)])
    if one_per_row:
        rows = (rows.with_columns(pl.col("caption").fill_null([None])).explode("caption")
                .filter(pl.col("filename") != images[41]))
    return rows


def write_source(rows: pl.DataFrame, folder, per_shard: int = 13):
    folder.mkdir()
    for number, start in enumerate(range(0, rows.height, per_shard)):
        rows.slice(start, per_shard).write_parquet(folder / f"train-{number:05d}.parquet")
    return folder


def streamed(folder, tmp_path, splits=None):
    build = StreamedCaptionBuild(shard_files(folder), str(folder), spill=tmp_path,
                                 splits=splits, slice_rows=7, partition_rows=9)
    tables = list(build.tables())
    return tables, build.report()


@pytest.mark.parametrize("one_per_row", [False, True])
@pytest.mark.parametrize("splits", [None, ["train", "val"]])
def test_slices_and_partitions_give_the_table_and_report_of_the_source_read_at_once(
        tmp_path, one_per_row, splits):
    folder = write_source(flickr30k_rows(one_per_row), tmp_path / "source")
    whole, whole_report = read_captions(folder, splits=splits)
    expected = {"SOURCE_WHITESPACE_STRIPPED", "SOURCE_EMPTY_CAPTION", "SOURCE_TAB_IN_CAPTION",
                "SOURCE_RECORD_KEY_IN_CAPTION", "SOURCE_CAPTION_COUNT_UNUSUAL"}
    if not one_per_row:  # one caption a row has no numbers to repeat, nor an empty list
        expected |= {"SOURCE_DUPLICATE_CAPTION_NUMBER", "SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS"}
    if splits:
        expected.add("SOURCE_ROWS_OUTSIDE_SPLITS")
    assert expected <= set(whole_report.codes())

    tables, report = streamed(folder, tmp_path, splits)

    assert len(tables) > 3  # the build really went partition by partition
    table = pl.concat(tables)
    assert table.equals(whole)
    assert report.to_dict() == whole_report.to_dict()
    # no caption is lost without a finding: kept + skipped empties + left out = read
    skipped = sum(f.count for f in report.findings
                  if f.code in ("SOURCE_EMPTY_CAPTION", "SOURCE_ROWS_OUTSIDE_SPLITS"))
    source = flickr30k_rows(one_per_row)
    read = (source.height if one_per_row
            else source["caption"].list.len().fill_null(0).sum())
    assert table.height + skipped == read
    assert list(tmp_path.glob("partitions-*")) == []  # the spilled rows are gone


def test_a_source_without_caption_rows_builds_the_empty_table(tmp_path, caption_contract):
    rows = flickr30k_rows().slice(0, 3).with_columns(pl.lit(["  "]).alias("caption"))
    folder = write_source(rows, tmp_path / "source")
    tables, report = streamed(folder, tmp_path)
    whole, whole_report = read_captions(folder)
    assert len(tables) == 1 and tables[0].height == 0 and tables[0].schema == caption_contract
    assert report.to_dict() == whole_report.to_dict()
    assert report.stats["captions"] == 0 and "SOURCE_EMPTY_CAPTION" in report.codes()


@pytest.mark.parametrize("how", ["folder", "glob"])
def test_build_captions_reads_shards_lazily_and_writes_what_the_whole_source_gives(
        run, tmp_path, monkeypatch, how):
    folder = write_source(flickr30k_rows(), tmp_path / "source")
    source = str(folder) if how == "folder" else f"{folder}/train-*.parquet"
    whole, whole_report = read_captions(source)

    def never(*args, **kwargs):
        raise AssertionError("the whole source was read into memory")

    monkeypatch.setattr(hf_module, "load_hf_frame", never)
    cache = ["--cache-dir", tmp_path / "cache", "--format", "json", "--quiet"]
    single = run("build", "captions", source, "-o", tmp_path / "captions.parquet", *cache)
    assert single.exit_code == 0, single.output
    assert pl.read_parquet(tmp_path / "captions.parquet").equals(whole)
    report = json.loads(single.stdout)
    assert report["findings"] == whole_report.to_dict()["findings"]
    assert report["stats"] == whole_report.stats

    out = tmp_path / "captions"
    sharded = run("build", "captions", source, "-o", f"{out}/", "--shard-rows", 100, *cache)
    assert sharded.exit_code == 0, sharded.output
    assert read_manifest(out).rows == [100, 100, 97]
    assert pl.read_parquet(shard_files(out)).equals(whole)


def test_the_cache_keys_every_shard_a_glob_matches(tmp_path):
    folder = write_source(flickr30k_rows(), tmp_path / "source")
    cache = Cache(tmp_path / "cache")
    glob = f"{folder}/train-*.parquet"
    first = build_captions(glob, cache=cache)
    inputs = first.entry.manifest["key_inputs"]["inputs"]
    assert sorted(v["path"] for v in inputs.values()) == [str(f) for f in shard_files(glob)]
    assert build_captions(glob, cache=cache).hit

    last = shard_files(glob)[-1]
    pl.read_parquet(last).with_columns(pl.lit("test").alias("split")).write_parquet(last)
    changed = build_captions(glob, cache=cache)
    assert not changed.hit and changed.entry.key != first.entry.key
    assert changed.report.stats["splits"]["test"] > first.report.stats["splits"]["test"]


def test_a_glob_of_other_files_or_of_nothing_is_an_input_error(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(InputError, match="not a .parquet file"):
        build_captions(f"{tmp_path}/*.json", cache=Cache(tmp_path / "cache"))
    with pytest.raises(InputError, match="matches no file"):
        build_captions(f"{tmp_path}/*.parquet", cache=Cache(tmp_path / "cache"))


def test_a_damaged_shard_is_an_input_error_naming_the_source(tmp_path):
    folder = write_source(flickr30k_rows(), tmp_path / "source")
    (folder / "train-00002.parquet").write_bytes(b"PAR1 not parquet at all PAR1")
    with pytest.raises(InputError, match="source.*cannot read the Parquet"):
        build_captions(folder, cache=Cache(tmp_path / "cache"))


def test_pieces_become_the_same_file_however_they_arrive(tmp_path):
    table = pl.DataFrame({"a": range(1000), "b": [str(i) for i in range(1000)]})
    one = write_parquet_frames([table], tmp_path / "one.parquet", row_group_rows=64)
    pieces = [table.slice(0, 5), table.slice(5, 0), table.slice(5, 700), table.slice(705)]
    many = write_parquet_frames(iter(pieces), tmp_path / "many.parquet", row_group_rows=64)
    assert one == many == (1000, {"a": "Int64", "b": "String"})
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "many.parquet").read_bytes()
    assert pl.read_parquet(tmp_path / "many.parquet").equals(table)
    assert [f.height for f in rechunk(pieces, 300)] == [300, 300, 300, 100]
    assert [f.height for f in rechunk([table.clear()], 300)] == [0]


def test_shards_cut_from_pieces_are_the_same_bytes_however_the_pieces_arrive(tmp_path):
    table = pl.DataFrame({"a": range(1000), "b": [str(i) for i in range(1000)]})
    pieces = [table.slice(0, 5), table.slice(5, 0), table.slice(5, 700), table.slice(705)]
    one = write_shards_of([table], tmp_path / "one", 300)
    many = write_shards_of(iter(pieces), tmp_path / "many", 300)
    assert one.rows == many.rows == [300, 300, 300, 100] and one.sha256 == many.sha256
    assert pl.read_parquet(shard_files(tmp_path / "many")).equals(table)
    empty = write_shards_of([table.clear()], tmp_path / "empty", 300)
    assert empty.rows == [0] and empty.schema == {"a": "Int64", "b": "String"}
