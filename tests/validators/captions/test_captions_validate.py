"""`uncollapse validate captions`: every finding code triggered and not, schema errors, output."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from uncollapse.data.captions.table import CAPTION_SCHEMA
from uncollapse.errors import InputError
from uncollapse.pipeline.captions import read_captions
from uncollapse.validators.captions import (
    CaptionTable,
    normalised_caption,
    validate_caption_frame,
    validate_captions,
)

REPO = Path(__file__).resolve().parents[3]
COCO_1000 = REPO / "data" / "coco" / "captions_val2017_1000.json"

FLICKR_IDS = ["1000092795", "10002456", "1000268201", "1000344755", "1000366164",
              "1000523639", "1000919630", "10010052", "1001465944", "1001545525"]


def caption_table(image_ids, *, captions=None, match_ids=None, splits=None,
                  caption_idx=None) -> pl.DataFrame:
    """A caption table in the contract's dtypes; groups follow image_id unless given."""
    n = len(image_ids)
    if match_ids is None:
        order = {v: i for i, v in enumerate(sorted({i for i in image_ids if i is not None}))}
        match_ids = [order.get(i) for i in image_ids]
    if captions is None:
        captions = [f"photo {image_id} described in words number {k}"
                    for k, image_id in enumerate(image_ids)]
    if caption_idx is None:
        seen: dict = {}
        caption_idx = []
        for image_id in image_ids:
            caption_idx.append(seen.get(image_id, 0))
            seen[image_id] = caption_idx[-1] + 1
    return pl.DataFrame({
        "image_id": image_ids, "match_id": match_ids, "caption_idx": caption_idx,
        "caption": captions, "split": splits if splits is not None else ["train"] * n,
        "source_row": [1000 + 3 * k for k in range(n)],
        "image_path": [None if i is None else f"{i}.jpg" for i in image_ids],
    }, schema=CAPTION_SCHEMA)


def grouped_ids(ids=FLICKR_IDS, size=5) -> list[str]:
    return [i for i in ids for _ in range(size)]


def healthy_table() -> pl.DataFrame:
    return caption_table(grouped_ids())


def codes_of(frame: pl.DataFrame, **kwargs) -> list[str]:
    return validate_caption_frame(frame, **kwargs).codes()


# Healthy tables -------------------------------------------------------------------------------

def test_healthy_table_has_no_findings_and_exits_0(tmp_path, run, write):
    path = write(healthy_table(), tmp_path / "captions.parquet")

    report = validate_captions(path, min_group=5, max_group=5)
    assert report.findings == []
    assert report.ok
    assert report.stats == {"rows": 50, "images": 10, "groups": 10, "group_size_min": 5,
                            "group_size_max": 5, "singleton_groups": 0}

    result = run("validate", "captions", path, "--group-size", "5", "--strict")
    assert result.exit_code == 0, result.output
    assert "no findings" in result.output


def test_built_bundled_coco_is_valid_for_groups_of_5_to_7(tmp_path):
    table, _ = read_captions(COCO_1000)

    report = validate_caption_frame(table, min_group=5, max_group=7)

    assert report.ok
    assert report.errors == []
    # The real data has a few repeated captions: warnings only.
    assert set(report.codes()) <= {"CAPTION_DUPLICATE_IN_GROUP", "CAPTION_SHARED_ACROSS_GROUPS"}


# GROUPS_ALL_UNIQUE ----------------------------------------------------------------------------

def test_classic_failure_row_number_ids_on_the_bundled_coco(tmp_path, run, write):
    table, _ = read_captions(COCO_1000)
    positional = table.with_columns(image_id=pl.int_range(pl.len()).cast(pl.String),
                                    match_id=pl.int_range(pl.len(), dtype=pl.Int64))
    path = write(positional, tmp_path / "positional.parquet")

    result = run("validate", "captions", path, "--format", "json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    found = {f["code"]: f for f in report["findings"]}
    assert found["GROUPS_ALL_UNIQUE"]["count"] == 5005
    assert "IMAGE_ID_POSITIONAL" in found
    assert report["stats"]["singleton_groups"] == 5005


def test_groups_all_unique_when_every_row_is_its_own_group(tmp_path, run, only, write):
    ids = [f"img_{chr(97 + k % 26)}{k}" for k in range(40)]
    path = write(caption_table(ids), tmp_path / "captions.parquet")

    report = validate_captions(path)

    found = only(report, "GROUPS_ALL_UNIQUE")
    assert found.severity == "error"
    assert found.count == 40
    assert "40 of 40 groups" in found.message
    assert {"match_id", "image_id", "caption"} <= set(found.examples[0])
    assert run("validate", "captions", path).exit_code == 1


def test_groups_all_unique_when_almost_all_groups_are_singletons():
    ids = [f"s{k:03d}x" for k in range(95)] + grouped_ids(["pairA", "pairB"], 2)
    assert "GROUPS_ALL_UNIQUE" in codes_of(caption_table(ids))

    # 8 of 10 groups are singletons: below the default 90% share, above a stricter one.
    mostly = caption_table([f"s{k}x" for k in range(8)] + grouped_ids(["pairA", "pairB"], 2))
    assert "GROUPS_ALL_UNIQUE" not in codes_of(mostly)
    assert "GROUPS_ALL_UNIQUE" in codes_of(mostly, max_singleton_share=0.8)


def test_max_singleton_share_option(tmp_path, run, write):
    ids = [f"s{k}x" for k in range(8)] + grouped_ids(["pairA", "pairB"], 2)
    path = write(caption_table(ids), tmp_path / "captions.parquet")

    lenient = run("validate", "captions", path, "--format", "json")
    strict = run("validate", "captions", path, "--max-singleton-share", "0.5", "--format",
                 "json")

    assert "GROUPS_ALL_UNIQUE" not in [f["code"] for f in json.loads(lenient.stdout)["findings"]]
    assert "GROUPS_ALL_UNIQUE" in [f["code"] for f in json.loads(strict.stdout)["findings"]]
    assert strict.exit_code == 1


# IMAGE_ID_POSITIONAL --------------------------------------------------------------------------

def test_image_id_positional_for_a_counter(only):
    ids = [str(5000 + k) for k in range(30)]
    shuffled = ids[7:] + ids[:7]

    report = validate_caption_frame(caption_table(shuffled))

    found = only(report, "IMAGE_ID_POSITIONAL")
    assert found.severity == "error"
    assert "counter from 5000 to 5029" in found.message
    assert "GROUPS_ALL_UNIQUE" in report.codes()


def test_image_id_positional_for_row_numbers(only):
    # Row numbers with a few repeats, so it is not a clean counter.
    ids = [str(k) for k in range(40)]
    ids[5] = ids[6] = "77"

    found = only(validate_caption_frame(caption_table(ids)), "IMAGE_ID_POSITIONAL")
    assert "row number" in found.message
    assert found.examples[0] == {"row": 0, "image_id": "0", "source_row": 1000}

    one_based = caption_table([str(k + 1) for k in range(40)])
    assert "IMAGE_ID_POSITIONAL" in codes_of(one_based)

    from_source_rows = caption_table(["x"] * 40).with_columns(
        image_id=pl.col("source_row").cast(pl.String), match_id=pl.int_range(40, dtype=pl.Int64))
    assert "IMAGE_ID_POSITIONAL" in codes_of(from_source_rows)


def test_real_numeric_ids_are_not_positional():
    assert "IMAGE_ID_POSITIONAL" not in codes_of(healthy_table())
    coco_like = caption_table(grouped_ids(["139", "285", "632", "724", "776", "785"]))
    assert codes_of(coco_like) == []


def test_per_image_counter_is_a_positional_warning_not_an_error(only):
    # 0,0,0,0,0,1,1,... groups correctly (positives exist) but names no image of the source,
    # like the running `img_id` of the nlphuji/flickr30k layout.
    dense = caption_table(grouped_ids([str(k) for k in range(10)]))
    report = validate_caption_frame(dense)
    finding = only(report, "IMAGE_ID_POSITIONAL")
    assert finding.severity == "warning" and finding.count == 10
    assert report.ok and report.exit_code(strict=True) == 1


# GROUP_SIZE_OUT_OF_RANGE ----------------------------------------------------------------------

def sizes_table() -> pl.DataFrame:
    ids = (grouped_ids(FLICKR_IDS[:4], 5) + grouped_ids(["10002456x"], 3)
           + grouped_ids(["9999999999"], 7))
    return caption_table(ids)


def test_group_size_out_of_range_lists_ids_and_sizes(tmp_path, only, write):
    path = write(sizes_table(), tmp_path / "captions.parquet")

    exact = validate_captions(path, min_group=5, max_group=5)
    found = only(exact, "GROUP_SIZE_OUT_OF_RANGE")
    assert found.severity == "warning"
    assert found.count == 2
    assert sorted((e["image_id"], e["size"]) for e in found.examples) == [
        ("10002456x", 3), ("9999999999", 7)]
    assert all(isinstance(e["match_id"], int) for e in found.examples)
    assert "5..5" in found.message

    ranged = only(validate_captions(path, min_group=5, max_group=7), "GROUP_SIZE_OUT_OF_RANGE")
    assert [(e["image_id"], e["size"]) for e in ranged.examples] == [("10002456x", 3)]
    assert validate_captions(path, min_group=3, max_group=7).findings == []


def test_group_size_cli_options_and_strict(tmp_path, run, write):
    path = write(sizes_table(), tmp_path / "captions.parquet")

    exact = run("validate", "captions", path, "--group-size", "5", "--format", "json")
    assert exact.exit_code == 0  # a warning
    assert json.loads(exact.stdout)["findings"][0]["count"] == 2
    assert run("validate", "captions", path, "--group-size", "5", "--strict").exit_code == 1
    ranged = run("validate", "captions", path, "--min-group", "5", "--max-group", "7",
                 "--format", "json")
    assert json.loads(ranged.stdout)["findings"][0]["examples"][0]["size"] == 3
    wide = run("validate", "captions", path, "--min-group", "3", "--max-group", "7", "--strict")
    assert wide.exit_code == 0


def test_default_minimum_group_is_two(only):
    ids = grouped_ids(FLICKR_IDS, 5) + ["lonely"]
    found = only(validate_caption_frame(caption_table(ids)), "GROUP_SIZE_OUT_OF_RANGE")
    assert found.examples == [{"match_id": 10, "image_id": "lonely", "size": 1}]


# MATCH_ID_INCONSISTENT ------------------------------------------------------------------------

def test_image_under_several_match_ids(only):
    table = healthy_table().with_columns(
        match_id=pl.when(pl.int_range(pl.len()) == 3).then(99).otherwise(pl.col("match_id")))

    found = only(validate_caption_frame(table), "MATCH_ID_INCONSISTENT")
    assert found.severity == "error"
    assert found.examples[0] == {"image_id": FLICKR_IDS[0], "match_ids": [0, 99]}
    assert "1 image_id(s) under several match_ids, 0 match_id(s)" in found.message


def test_match_id_covering_several_images(only):
    table = healthy_table().with_columns(
        match_id=pl.when(pl.col("image_id") == FLICKR_IDS[1]).then(0)
        .otherwise(pl.col("match_id")))

    found = only(validate_caption_frame(table), "MATCH_ID_INCONSISTENT")
    assert "0 image_id(s) under several match_ids, 1 match_id(s)" in found.message
    assert found.examples[0]["match_id"] == 0
    assert sorted(found.examples[0]["image_ids"]) == sorted(FLICKR_IDS[:2])


def test_consistent_match_ids_need_not_be_dense_or_positive():
    table = healthy_table().with_columns(match_id=pl.col("match_id") * 1000 - 4007)
    assert table["match_id"].min() < 0
    assert codes_of(table, min_group=5, max_group=5) == []


def test_row_order_does_not_matter():
    splits = ["train"] * 50
    splits[7] = "test"
    broken = caption_table(grouped_ids(), splits=splits).with_columns(
        match_id=pl.when(pl.int_range(pl.len()) == 13).then(99).otherwise(pl.col("match_id")))
    for table, expected in ((healthy_table(), []),
                            (broken, ["MATCH_ID_INCONSISTENT", "SPLIT_LEAKAGE"])):
        for seed in range(3):
            shuffled = table.sample(fraction=1.0, shuffle=True, seed=seed)
            found = [c for c in codes_of(shuffled, min_group=4, max_group=5)
                     if c != "GROUP_SIZE_OUT_OF_RANGE"]
            assert found == expected


# SPLIT_LEAKAGE --------------------------------------------------------------------------------

def test_split_leakage(tmp_path, run, only, write):
    splits = ["train"] * 50
    splits[7] = "test"  # a caption of the second image in test
    path = write(caption_table(grouped_ids(), splits=splits), tmp_path / "captions.parquet")

    report = validate_captions(path)
    found = only(report, "SPLIT_LEAKAGE")
    assert found.severity == "error"
    assert found.examples == [{"image_id": FLICKR_IDS[1], "splits": ["test", "train"]}]
    assert run("validate", "captions", path).exit_code == 1


def test_no_split_leakage_for_one_split_per_image_or_null_splits():
    splits = [("train", "val", "test")[k // 5 % 3] for k in range(50)]
    assert codes_of(caption_table(grouped_ids(), splits=splits)) == []
    with_nulls = [None if k % 5 == 0 else "train" for k in range(50)]
    assert codes_of(caption_table(grouped_ids(), splits=with_nulls)) == []


# Caption duplicates ---------------------------------------------------------------------------

def test_normalised_caption_ignores_case_spacing_and_end_punctuation():
    variants = ["A dog running.", "  a DOG running ", "a dog running!", "A DOG RUNNING"]
    different = ["A cat running.", "A dog running fast.", "Ein Hund läuft."]
    keys = pl.DataFrame({"c": variants + different}).select(
        normalised_caption(pl.col("c")))["c"].to_list()
    assert len(set(keys[:4])) == 1
    assert len(set(keys)) == 4


def test_caption_duplicate_in_group(only):
    captions = [f"caption {k}" for k in range(50)]
    captions[1] = "A dog runs across the grass."
    captions[3] = "a dog runs across the grass"
    table = caption_table(grouped_ids(), captions=captions)

    found = only(validate_caption_frame(table), "CAPTION_DUPLICATE_IN_GROUP")
    assert found.severity == "warning"
    assert found.count == 1
    assert [e["row"] for e in found.examples] == [1, 3]
    assert "CAPTION_SHARED_ACROSS_GROUPS" not in validate_caption_frame(table).codes()


def test_caption_shared_across_groups(only):
    captions = [f"caption {k}" for k in range(50)]
    captions[2] = "Two young guys with shaggy hair."
    captions[12] = "two young guys with shaggy hair"
    captions[22] = "TWO YOUNG GUYS WITH SHAGGY HAIR !"
    table = caption_table(grouped_ids(), captions=captions)

    found = only(validate_caption_frame(table), "CAPTION_SHARED_ACROSS_GROUPS")
    assert found.severity == "warning"
    assert found.count == 1
    assert found.examples == [{"caption": "Two young guys with shaggy hair.",
                               "match_ids": [0, 2, 4]}]
    assert "CAPTION_DUPLICATE_IN_GROUP" not in validate_caption_frame(table).codes()


def test_distinct_captions_have_no_duplicate_findings():
    captions = [f"A dog number {k} runs." for k in range(50)]
    assert codes_of(caption_table(grouped_ids(), captions=captions)) == []


def test_duplicates_are_warnings_exit_0_unless_strict(tmp_path, run, write):
    captions = [f"caption {k}" for k in range(50)]
    captions[0] = captions[1] = "same"
    path = write(caption_table(grouped_ids(), captions=captions), tmp_path / "captions.parquet")

    assert run("validate", "captions", path).exit_code == 0
    assert run("validate", "captions", path, "--strict").exit_code == 1


# EMPTY_CAPTION and NULL_VALUES ----------------------------------------------------------------

def test_empty_caption(only):
    captions = [f"caption {k}" for k in range(50)]
    captions[4], captions[9], captions[30] = "", "   \n", None
    found = only(validate_caption_frame(caption_table(grouped_ids(), captions=captions)),
                 "EMPTY_CAPTION")
    assert found.severity == "error"
    assert found.count == 3
    assert [e["row"] for e in found.examples] == [4, 9, 30]
    assert found.examples[0]["source_row"] == 1012


def test_punctuation_only_caption_is_not_empty(only):
    captions = [f"caption {k}" for k in range(50)]
    captions[4], captions[12], captions[33] = "?", "...", "  \t "
    found = only(validate_caption_frame(caption_table(grouped_ids(), captions=captions)),
                 "EMPTY_CAPTION")
    assert found.count == 1
    assert [e["row"] for e in found.examples] == [33]


def test_null_values(only):
    row = pl.int_range(pl.len())
    table = healthy_table().with_columns(
        image_id=pl.when(row == 7).then(None).otherwise(pl.col("image_id")),
        match_id=pl.when(row == 20).then(None).otherwise(pl.col("match_id")))

    found = only(validate_caption_frame(table), "NULL_VALUES")
    assert found.severity == "error"
    assert found.count == 2
    assert "image_id (1)" in found.message and "match_id (1)" in found.message
    assert [e["row"] for e in found.examples] == [7, 20]


def test_null_split_and_image_path_are_allowed():
    table = healthy_table().with_columns(split=pl.lit(None, dtype=pl.String),
                                         image_path=pl.lit(None, dtype=pl.String))
    assert codes_of(table) == []


# Schema and unreadable files: exit 2 ----------------------------------------------------------

@pytest.mark.parametrize("change, expected", [
    (lambda t: t.drop("caption_idx"), "caption_idx"),
    (lambda t: t.drop("match_id"), "match_id"),
    (lambda t: t.with_columns(pl.col("caption_idx").cast(pl.Int64)), "caption_idx"),
    (lambda t: t.with_columns(pl.col("image_id").cast(pl.Int64)), "image_id"),
    (lambda t: t.with_columns(pl.col("match_id").cast(pl.String)), "match_id"),
])
def test_schema_errors_exit_2_naming_the_file(tmp_path, change, expected, run, write):
    path = write(change(healthy_table()), tmp_path / "bad_table.parquet")

    with pytest.raises(InputError, match="caption table contract"):
        validate_captions(path)
    result = run("validate", "captions", path)
    assert result.exit_code == 2
    assert str(path) in result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_extra_columns_are_allowed(tmp_path, run, write):
    path = write(healthy_table().with_columns(score=pl.lit(0.5)), tmp_path / "captions.parquet")
    assert run("validate", "captions", path).exit_code == 0


def test_missing_or_unreadable_file_exits_2(tmp_path, run):
    missing = run("validate", "captions", tmp_path / "nowhere.parquet")
    assert missing.exit_code == 2
    assert "nowhere.parquet" in missing.output

    text = tmp_path / "captions.parquet"
    text.write_text("image_id,caption\n1,a dog\n")
    unreadable = run("validate", "captions", text)
    assert unreadable.exit_code == 2
    assert str(text) in unreadable.output
    assert "not a readable Parquet file" in unreadable.output


# Output formats -------------------------------------------------------------------------------

def broken_table() -> pl.DataFrame:
    captions = [f"caption {k}" for k in range(30)]
    captions[0] = captions[1] = "same words"
    return caption_table([f"img{k}z" for k in range(30)], captions=captions)


def test_json_format(tmp_path, run, write):
    path = write(broken_table(), tmp_path / "captions.parquet")

    result = run("validate", "captions", path, "--format", "json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert {"tool", "version", "target", "kind", "ok", "findings", "stats"} <= set(report)
    assert report["tool"] == "uncollapse"
    assert report["target"] == str(path)
    assert report["kind"] == "captions"
    assert report["ok"] is False
    assert report["stats"]["singleton_groups"] == 30
    codes = {f["code"]: f for f in report["findings"]}
    assert {"GROUPS_ALL_UNIQUE", "CAPTION_SHARED_ACROSS_GROUPS"} <= set(codes)
    for found in report["findings"]:
        assert set(found) == {"code", "severity", "message", "count", "examples", "hint"}
        assert found["hint"]
    assert codes["GROUPS_ALL_UNIQUE"]["severity"] == "error"
    assert codes["GROUPS_ALL_UNIQUE"]["count"] == 30
    assert len(codes["GROUPS_ALL_UNIQUE"]["examples"]) == 5


def test_json_path_is_written_beside_text_output(tmp_path, run, write):
    path = write(broken_table(), tmp_path / "captions.parquet")
    out = tmp_path / "reports" / "captions.json"
    out.parent.mkdir()

    result = run("validate", "captions", path, "--json", out)

    assert result.exit_code == 1
    assert "GROUPS_ALL_UNIQUE" in result.stdout
    written = json.loads(out.read_text())
    assert written["ok"] is False
    assert "GROUPS_ALL_UNIQUE" in [f["code"] for f in written["findings"]]

    healthy = write(healthy_table(), tmp_path / "healthy.parquet")
    assert run("validate", "captions", healthy, "--json", out).exit_code == 0
    rewritten = json.loads(out.read_text())
    assert (rewritten["target"], rewritten["ok"], rewritten["findings"]) == (
        str(healthy), True, [])


def test_github_format(tmp_path, run, write):
    path = write(broken_table(), tmp_path / "captions.parquet")

    result = run("validate", "captions", path, "--format", "github")

    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith(f"::error file={path},title=GROUPS_ALL_UNIQUE::")
               for line in lines)
    assert any(line.startswith(f"::warning file={path},title=CAPTION_SHARED_ACROSS_GROUPS::")
               for line in lines)

    healthy = write(healthy_table(), tmp_path / "healthy.parquet")
    clean = run("validate", "captions", healthy, "--format", "github")
    assert clean.exit_code == 0
    assert clean.stdout == ""


def test_every_rule_is_a_check_of_the_model_and_all_pass_on_a_healthy_table():
    checks = [check.name for check in CaptionTable.to_schema().checks]
    assert len(checks) == 12
    assert {"groups_are_not_all_unique", "no_image_in_two_splits",
            "captions_hold_no_record_key"} <= set(checks)
    assert CaptionTable.validate(healthy_table(), lazy=True).height == 50


def test_help_has_an_example(run):
    result = run("validate", "captions", "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
