"""Caption tables larger than memory: Parquet shards checked by polars' streaming engine, the
per-partition measurements the local and Ray engines share, and pandera checking a LazyFrame's
data (a broken lazy table fails)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from pandera.errors import SchemaErrors

from uncollapse.cli import main
from uncollapse.data.captions.table import CAPTION_SCHEMA, scan_caption_shards
from uncollapse.engines.local import (
    check_captions_partition,
    merge_caption_measurements,
    partition_key,
    validate_caption_measurements,
)
from uncollapse.errors import InputError
from uncollapse.validators.captions import (
    CaptionMeasurements,
    CaptionTable,
    caption_table_model,
    validate_caption_frame,
    validate_captions,
)
from uncollapse.validators.captions import measure as measure_module
from uncollapse.validators.captions import rules as rules_module
from uncollapse.validators.captions.measure import CaptionLimits


def flawed_table(n_images: int = 40, size: int = 5) -> pl.DataFrame:
    """A table with one of each flaw, spread so that shards of 37 rows cut through groups,
    repeated captions and leaked images."""
    image_id = [f"img{i:04d}" for i in range(n_images) for _ in range(size)]
    n = len(image_id)
    caption = [f"photo {k} of a dog on grass" for k in range(n)]
    caption[3] = "photo 1 of a dog on grass."       # repeats row 1 in its group
    caption[150] = "Photo 7 of a dog on grass"      # repeats row 7 under another group
    caption[44] = "   "                             # blank
    caption[77] = "two dogs\tplay"                  # control character
    caption[90] = "a cat 1000092795.jpg#2 a dog"    # second record key
    caption[120] = "x"                              # implausibly short
    split = ["train"] * n
    split[13] = "test"                              # img0002 in two splits
    frame = pl.DataFrame({
        "image_id": image_id,
        "match_id": [k // size for k in range(n)],
        "caption_idx": [k % size for k in range(n)],
        "caption": caption, "split": split,
        "source_row": list(range(n)),
        "image_path": [f"{i}.jpg" for i in image_id],
    }, schema=CAPTION_SCHEMA)
    # a group of 2 rows and a group of 7: out of the expected size
    return frame.with_columns(match_id=pl.when(pl.col("match_id") == 9)
                              .then(pl.when(pl.col("caption_idx") < 2).then(9).otherwise(10))
                              .otherwise(pl.col("match_id")))


def write_shards(frame: pl.DataFrame, folder, rows_per_shard: int = 37):
    folder.mkdir()
    for number, start in enumerate(range(0, frame.height, rows_per_shard)):
        frame.slice(start, rows_per_shard).write_parquet(folder / f"part-{number:05d}.parquet")
    return folder


def comparable(report) -> dict:
    data = report.to_dict()
    data.pop("target")
    return data


def test_shards_report_exactly_what_the_table_in_memory_reports(tmp_path):
    frame = flawed_table()
    whole = validate_caption_frame(frame, min_group=5, max_group=5)
    assert set(whole.codes()) >= {"EMPTY_CAPTION", "SPLIT_LEAKAGE", "MATCH_ID_INCONSISTENT",
                                  "CAPTION_DUPLICATE_IN_GROUP", "CAPTION_SHARED_ACROSS_GROUPS",
                                  "CAPTION_CONTROL_CHARACTER", "CAPTION_HOLDS_RECORD_KEY",
                                  "CAPTION_LENGTH_IMPLAUSIBLE", "GROUP_SIZE_OUT_OF_RANGE"}
    folder = write_shards(frame, tmp_path / "shards")
    for source in (folder, f"{folder}/part-*.parquet"):
        sharded = validate_captions(source, min_group=5, max_group=5)
        assert comparable(sharded) == comparable(whole)
        assert sharded.target == str(source)
    # the examples carry rows numbered across the shards
    blank = next(f for f in whole.findings if f.code == "EMPTY_CAPTION")
    assert blank.examples[0]["row"] == 44


def test_one_parquet_file_is_measured_in_slices_of_row_groups_and_reports_as_in_memory(
        tmp_path, monkeypatch):
    frame = flawed_table()
    path = tmp_path / "captions.parquet"
    frame.write_parquet(path, row_group_size=30)
    today = validate_caption_frame(pl.read_parquet(path), min_group=5, max_group=5)
    slices = []
    real = measure_module.CaptionMeasurements.of_partitions.__func__

    def counting(cls, partitions, source, limits):
        partitions = list(partitions)
        slices.append(len(partitions))
        return real(cls, partitions, source, limits)

    monkeypatch.setattr(measure_module, "PARQUET_SLICE_ROWS", 65)
    monkeypatch.setattr(measure_module.CaptionMeasurements, "of_partitions",
                        classmethod(counting))
    monkeypatch.setattr(rules_module, "read_caption_table", None)  # never read whole
    report = validate_captions(path, min_group=5, max_group=5)
    assert slices == [4]  # 200 rows in row groups of 30, two groups a slice: 60, 60, 60, 20
    assert comparable(report) == comparable(today) and report.target == str(path)
    assert "SPLIT_LEAKAGE" in report.codes()


def test_partials_of_any_partitioning_merge_into_the_whole_tables_measurements(tmp_path):
    frame = flawed_table()
    limits = CaptionLimits(min_group=5, max_group=5)
    whole = CaptionMeasurements.of(frame, limits)
    buckets = partition_key(frame, "match_id", 4)
    # hash partitions of match_id (as Ray makes them) carry each row's position in a row column
    by_hash = [check_captions_partition(frame.with_row_index("row").filter(
        pl.Series(buckets == b)), limits) for b in range(4)]
    # plain shards cut groups in two: the merge re-aggregates them
    by_shard = [check_captions_partition(frame.slice(start, 37), limits, row_offset=start)
                for start in range(0, frame.height, 37)]
    for parts in (by_hash, by_shard):
        merged = merge_caption_measurements(parts, frame.lazy(), limits)
        assert merged.counts == whole.counts
        assert merged.groups.equals(whole.groups)
        assert merged.repeated_keys.sort().equals(whole.repeated_keys.sort())
        assert merged.n_images == whole.n_images
        assert comparable(validate_caption_measurements(merged, "t")) == comparable(
            validate_caption_frame(frame, min_group=5, max_group=5))
    assert sum(p.rows for p in by_hash) == frame.height
    # a partial is small beside its rows: no caption text, one row per group
    assert all(p.groups.height <= 40 and p.keys.dtype == np.uint64 for p in by_hash)


def test_a_broken_lazyframe_fails_the_model(monkeypatch):
    monkeypatch.delenv("PANDERA_VALIDATION_DEPTH", raising=False)
    broken = flawed_table().lazy()
    with pytest.raises(SchemaErrors) as caught:
        CaptionTable.validate(broken, lazy=True)
    failed = {getattr(e.check, "name", e.check) for e in caught.value.schema_errors}
    assert {"captions_are_not_empty", "no_image_in_two_splits",
            "captions_hold_no_record_key", "one_match_id_per_image"} <= failed
    # every image in its own group: positives nowhere, the lazy table fails on its data
    singletons = flawed_table().with_columns(match_id=pl.int_range(pl.len(), dtype=pl.Int64))
    with pytest.raises(SchemaErrors, match="groups_are_not_all_unique"):
        caption_table_model(min_group=1).validate(singletons.lazy(), lazy=True)
    healthy = flawed_table().filter(pl.col("match_id") < 2).with_columns(
        caption=pl.format("photo {} of a dog", pl.int_range(pl.len())), split=pl.lit("train"))
    assert CaptionTable.validate(healthy.lazy(), lazy=True).collect().height == 10


def test_sharded_command_exit_codes(tmp_path):
    broken = write_shards(flawed_table(), tmp_path / "broken")
    result = CliRunner().invoke(main, ["validate", "captions", str(broken), "--group-size", "5",
                                       "--format", "json"])
    assert result.exit_code == 1, result.output
    assert '"SPLIT_LEAKAGE"' in result.output
    healthy = flawed_table().filter(pl.col("match_id") < 8).with_columns(
        caption=pl.format("photo {} of a dog", pl.int_range(pl.len())), split=pl.lit("train"))
    good = write_shards(healthy, tmp_path / "good", rows_per_shard=7)
    result = CliRunner().invoke(main, ["validate", "captions", f"{good}/*.parquet",
                                       "--group-size", "5"])
    assert result.exit_code == 0, result.output


def test_a_shard_off_the_contract_is_named(tmp_path):
    folder = write_shards(flawed_table(), tmp_path / "shards")
    flawed_table().head(3).with_columns(pl.col("match_id").cast(pl.Utf8)).write_parquet(
        folder / "part-00009.parquet")
    with pytest.raises(InputError, match=r"part-00009\.parquet.*'match_id' is String"):
        scan_caption_shards(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["validate", "captions", str(empty)])
    assert result.exit_code == 2
    assert "holds no .parquet file" in result.output
    result = CliRunner().invoke(main, ["validate", "captions", f"{tmp_path}/nothing-*.parquet"])
    assert result.exit_code == 2
    assert "matches no file" in result.output


def test_repeated_hashes_are_found_across_partials_and_hash_ranges():
    from uncollapse.validators.captions.measure import CaptionPartial, _repeated_keys

    rng = np.random.default_rng(3)
    edge = np.uint64(2**64 // 16)
    special = np.array([0, 2**64 - 1, int(edge), int(edge) - 1, 15 * int(edge)], dtype=np.uint64)
    keys = np.concatenate([rng.integers(0, 2**64 - 1, size=3000, dtype=np.uint64), special,
                           special[:3]])  # the extremes and a range edge, twice
    keys = np.concatenate([keys, keys[rng.choice(3000, size=40, replace=False)]])
    rng.shuffle(keys)
    parts = [CaptionPartial(counts={}, groups=pl.DataFrame(), keys=np.sort(chunk))
             for chunk in np.array_split(keys, 7)]
    values, counts = np.unique(keys, return_counts=True)
    assert np.array_equal(np.sort(_repeated_keys(parts)), values[counts > 1])
    assert len(values[counts > 1]) == 43


def test_pandera_keeps_a_bounded_number_of_failing_rows_and_the_finding_counts_all(only):
    singletons = flawed_table(n_images=100).with_columns(
        match_id=pl.int_range(pl.len(), dtype=pl.Int64),
        caption=pl.format("photo {} of a dog", pl.int_range(pl.len())), split=pl.lit("train"))
    with pytest.raises(SchemaErrors) as caught:
        caption_table_model(min_group=1).validate(singletons.lazy(), lazy=True)
    (error,) = [e for e in caught.value.schema_errors
                if getattr(e.check, "name", None) == "groups_are_not_all_unique"]
    assert error.failure_cases.height == 100
    report = validate_caption_frame(singletons.lazy(), min_group=1)
    assert only(report, "GROUPS_ALL_UNIQUE").count == 500
