"""The pandera model CaptionTable: fields from the contract, one check per rule, lazy errors,
thresholds, the new caption-text rules, CSV and standard-input reading, lazy pandera import."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest
from click.testing import CliRunner
from pandera.errors import SchemaErrors, SchemaWarning

from uncollapse.cli import main
from uncollapse.data.captions.contract import NON_NULL, OPTIONAL_COLUMNS
from uncollapse.data.captions.table import CAPTION_SCHEMA, read_caption_table
from uncollapse.errors import InputError
from uncollapse.validators import captions as captions_module
from uncollapse.validators.captions import (
    CaptionTable,
    caption_table_model,
    validate_caption_frame,
    validate_captions,
)

REPO = Path(__file__).resolve().parents[3]
COCO_1000 = REPO / "data" / "coco" / "captions_val2017_1000.json"
IDS = ["1000092795", "10002456", "1000268201", "1000344755", "1000366164", "1000523639"]

ERROR_CHECKS = {"captions_are_not_empty", "groups_are_not_all_unique",
                "image_ids_are_not_row_numbers", "one_match_id_per_image",
                "no_image_in_two_splits", "captions_hold_no_record_key"}
WARNING_CHECKS = {"image_ids_are_not_an_image_counter", "groups_have_expected_size",
                  "no_duplicate_caption_in_group", "no_caption_shared_across_groups",
                  "captions_have_no_control_characters", "captions_have_plausible_length"}


def table(ids=IDS, size=5, captions=None, splits=None) -> pl.DataFrame:
    """Healthy unless told: ``size`` distinct captions per image, groups in image order."""
    image_id = [i for i in ids for _ in range(size)]
    group = {v: k for k, v in enumerate(sorted(set(ids)))}
    n = len(image_id)
    return pl.DataFrame({
        "image_id": image_id,
        "match_id": [group[i] for i in image_id],
        "caption_idx": [k % size for k in range(n)],
        "caption": captions or [f"a photo of scene {k} with a dog" for k in range(n)],
        "split": splits or ["train"] * n,
        "source_row": [7 + k for k in range(n)],
        "image_path": [f"{i}.jpg" for i in image_id],
    }, schema=CAPTION_SCHEMA)


def with_caption(frame: pl.DataFrame, row: int, text: str | None) -> pl.DataFrame:
    return frame.with_columns(caption=pl.when(pl.int_range(pl.len()) == row).then(pl.lit(text))
                              .otherwise(pl.col("caption")))


def failed_checks(model, frame) -> tuple[set[str], set[str]]:
    """(checks failing as errors, checks failing as warnings) of one lazy validation."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.validate(frame, lazy=True)
            errors = set()
        except SchemaErrors as exc:
            errors = {getattr(e.check, "name", e.check) for e in exc.schema_errors}
    warned = {name for w in caught if issubclass(w.category, SchemaWarning)
              for name in WARNING_CHECKS if f"check {name} failed" in str(w.message)}
    return errors, warned


@pytest.fixture(scope="module")
def coco_table(tmp_path_factory) -> pl.DataFrame:
    tmp = tmp_path_factory.mktemp("coco")
    out = tmp / "coco.parquet"
    result = CliRunner().invoke(main, ["build", "captions", str(COCO_1000), "-o", str(out),
                                       "--cache-dir", str(tmp / "cache"), "--quiet"])
    assert result.exit_code == 0, result.output
    return pl.read_parquet(out)


# The model ------------------------------------------------------------------------------------

def test_fields_are_the_contract():
    schema = CaptionTable.to_schema()
    assert {name: column.dtype.type for name, column in schema.columns.items()} == {
        name: dtype() for name, dtype in CAPTION_SCHEMA.items()}
    assert list(schema.columns) == list(CAPTION_SCHEMA)
    assert {n for n, c in schema.columns.items() if not c.nullable} == set(NON_NULL)
    assert {n for n, c in schema.columns.items() if not c.required} == set(OPTIONAL_COLUMNS)
    assert issubclass(CaptionTable, pa.DataFrameModel)


def test_every_rule_is_a_named_check():
    names = {check.name for check in CaptionTable.to_schema().checks}
    assert names == ERROR_CHECKS | WARNING_CHECKS
    warning = {c.name for c in CaptionTable.to_schema().checks if c.raise_warning}
    assert warning == WARNING_CHECKS


def test_bundled_coco_table_passes_every_error_rule(coco_table):
    assert coco_table.height == 5005
    errors, warned = failed_checks(caption_table_model(min_group=5, max_group=7), coco_table)
    assert errors == set()
    # the real captions repeat a few times: warnings only
    assert warned <= {"no_duplicate_caption_in_group", "no_caption_shared_across_groups"}
    assert CaptionTable.validate(coco_table, lazy=True).height == 5005

    report = validate_caption_frame(coco_table, min_group=5, max_group=7)
    assert report.ok and report.errors == []
    assert report.stats["rows"] == 5005 and report.stats["groups"] == 1000


def row_number_ids(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(image_id=pl.int_range(pl.len()).cast(pl.String),
                              match_id=pl.int_range(pl.len(), dtype=pl.Int64))


def leak(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(split=pl.when(pl.int_range(pl.len()) == 6).then(pl.lit("test"))
                              .otherwise(pl.col("split")))


def merge_two_images(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(match_id=pl.when(pl.col("match_id") == 1).then(0)
                              .otherwise(pl.col("match_id")))


PLANTED = [
    ("captions_are_not_empty", lambda t: with_caption(t, 3, "   ")),
    ("groups_are_not_all_unique", lambda t: t.with_columns(
        image_id=pl.format("img{}z", pl.int_range(pl.len())),
        match_id=pl.int_range(pl.len(), dtype=pl.Int64))),
    ("image_ids_are_not_row_numbers", row_number_ids),
    ("image_ids_are_not_an_image_counter", lambda t: t.with_columns(
        image_id=pl.col("match_id").cast(pl.String))),
    ("groups_have_expected_size", lambda t: t.head(28)),
    ("one_match_id_per_image", merge_two_images),
    ("no_image_in_two_splits", leak),
    ("no_duplicate_caption_in_group", lambda t: with_caption(with_caption(
        t, 0, "A dog."), 1, "a dog")),
    ("no_caption_shared_across_groups", lambda t: with_caption(with_caption(
        t, 0, "A dog."), 12, "a DOG")),
    ("captions_have_no_control_characters", lambda t: with_caption(t, 4, "a dog\tsits")),
    ("captions_hold_no_record_key", lambda t: with_caption(
        t, 4, "A dog runs . 1000092795.jpg#2 Two men in a field .")),
    ("captions_have_plausible_length", lambda t: with_caption(t, 2, "x" * 1001)),
]


@pytest.mark.parametrize("check, plant", PLANTED, ids=[p[0] for p in PLANTED])
def test_each_rule_fails_on_its_planted_defect_and_only_there(check, plant):
    model = caption_table_model(min_group=5, max_group=5)
    assert failed_checks(model, table()) == (set(), set())

    errors, warned = failed_checks(model, plant(table()))

    assert check in (errors if check in ERROR_CHECKS else warned)
    if check not in {"groups_are_not_all_unique", "image_ids_are_not_row_numbers",
                     "one_match_id_per_image"}:
        # these also change group sizes; every other defect trips its own rule alone
        assert (errors | warned) == {check}


def test_lazy_validation_reports_several_failures_at_once():
    broken = leak(merge_two_images(with_caption(table(), 4, "a b.jpg#1 c")))
    with pytest.raises(SchemaErrors) as caught:
        CaptionTable.validate(broken, lazy=True)
    names = {getattr(e.check, "name", e.check) for e in caught.value.schema_errors}
    assert names == {"one_match_id_per_image", "no_image_in_two_splits",
                     "captions_hold_no_record_key"}
    # the failure cases are the offending rows
    record_key = [e for e in caught.value.schema_errors
                  if e.check.name == "captions_hold_no_record_key"][0]
    assert record_key.failure_cases["caption"].to_list() == ["a b.jpg#1 c"]


def test_nulls_fail_the_contract_fields():
    nulls = table().with_columns(match_id=pl.when(pl.int_range(pl.len()) == 2).then(None)
                                 .otherwise(pl.col("match_id")))
    with pytest.raises(SchemaErrors) as caught:
        CaptionTable.validate(nulls, lazy=True)
    assert "not_nullable" in {e.check for e in caught.value.schema_errors}
    found = [f for f in validate_caption_frame(nulls).findings if f.code == "NULL_VALUES"]
    assert found[0].count == 1 and found[0].examples[0]["row"] == 2


def test_thresholds_are_settable():
    three_and_five = table().head(28)  # groups of 5, the last of 3
    assert failed_checks(caption_table_model(min_group=5, max_group=5), three_and_five)[1] == {
        "groups_have_expected_size"}
    assert failed_checks(caption_table_model(min_group=3, max_group=5), three_and_five) == (
        set(), set())
    assert failed_checks(caption_table_model(group_size=5), table()) == (set(), set())
    assert caption_table_model() is CaptionTable
    assert issubclass(caption_table_model(min_group=5), CaptionTable)
    assert caption_table_model(min_group=5) is caption_table_model(min_group=5)

    short = with_caption(table(), 0, "dog")
    assert failed_checks(caption_table_model(min_caption_chars=4), short)[1] == {
        "captions_have_plausible_length"}
    assert failed_checks(caption_table_model(max_caption_chars=20), table())[1] == {
        "captions_have_plausible_length"}
    with pytest.raises(Exception, match="max_group .* must be >= min_group"):
        caption_table_model(min_group=5, max_group=3)


def test_a_failed_warning_rule_warns_in_one_short_line_and_the_frame_passes():
    duplicated = pl.concat([table(), table().head(1)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert CaptionTable.validate(duplicated, lazy=True).height == duplicated.height
    messages = [str(w.message) for w in caught if issubclass(w.category, SchemaWarning)]
    assert messages and all(len(m) < 250 for m in messages), messages
    assert ("CaptionTable: check no_duplicate_caption_in_group failed "
            "(CAPTION_DUPLICATE_IN_GROUP, a warning: the frame passes); validate_caption_frame"
            "(frame) gives its count, rows and fix") in messages
    assert all(w.filename == __file__ for w in caught)  # pointing at the caller's line


def test_one_validate_call_measures_the_frame_once(monkeypatch):
    calls = []
    original = captions_module.CaptionMeasurements.of

    def counting(frame, limits):
        calls.append(limits)
        return original(frame, limits)

    monkeypatch.setattr(captions_module.CaptionMeasurements, "of", staticmethod(counting))
    CaptionTable.validate(table(), lazy=True)
    assert len(calls) == 1
    validate_caption_frame(leak(table()))
    assert len(calls) == 2


# The new caption-text rules as findings -------------------------------------------------------

def test_tab_and_second_record_key_in_a_caption(only):
    merged = "A dog runs .\t1000092795.jpg#2\tTwo men in a field ."
    report = validate_caption_frame(with_caption(table(), 4, merged))

    key = only(report, "CAPTION_HOLDS_RECORD_KEY")
    assert key.severity == "error" and key.count == 1
    assert key.examples[0]["row"] == 4 and key.examples[0]["source_row"] == 11
    assert key.examples[0]["record_key"] == "1000092795.jpg#2"
    control = only(report, "CAPTION_CONTROL_CHARACTER")
    assert control.severity == "warning" and control.count == 1
    assert control.examples[0]["characters"] == ["U+0009"]
    assert not report.ok


def test_control_characters_are_counted(only):
    frame = with_caption(with_caption(with_caption(table(), 1, "a\ndog"), 8, "a\x00dog"),
                         9, "a dog\r")
    found = only(validate_caption_frame(frame), "CAPTION_CONTROL_CHARACTER")
    assert found.count == 3
    assert [e["row"] for e in found.examples] == [1, 8, 9]
    assert found.examples[1]["characters"] == ["U+0000"]


def test_a_hash_sign_alone_is_not_a_record_key():
    frame = with_caption(with_caption(table(), 0, "player #2 scores"), 1, "file.jpg # 2")
    assert validate_caption_frame(frame).codes() == []


def test_implausible_lengths_are_counted_with_their_lengths(only):
    frame = with_caption(with_caption(with_caption(table(), 2, "x"), 5, "y" * 1001), 6, "ok")
    found = only(validate_caption_frame(frame), "CAPTION_LENGTH_IMPLAUSIBLE")
    assert found.severity == "warning" and found.count == 2
    assert "1 caption(s) shorter than 2 characters, 1 longer than 1000" in found.message
    assert [(e["row"], e["length"]) for e in found.examples] == [(2, 1), (5, 1001)]
    # a blank caption is EMPTY_CAPTION's, not also implausibly short
    assert validate_caption_frame(with_caption(table(), 2, " ")).codes() == ["EMPTY_CAPTION"]


def test_cli_length_options(tmp_path):
    path = tmp_path / "t.parquet"
    with_caption(table(), 2, "cat").write_parquet(path)
    default = CliRunner().invoke(main, ["validate", "captions", str(path), "--strict"])
    assert default.exit_code == 0, default.output
    strict = CliRunner().invoke(main, ["validate", "captions", str(path), "--min-caption-chars",
                                       "4", "--format", "json"])
    assert [f["code"] for f in json.loads(strict.stdout)["findings"]] == [
        "CAPTION_LENGTH_IMPLAUSIBLE"]


def test_every_schema_mismatch_is_named():
    bad = table().drop("caption_idx").with_columns(pl.col("match_id").cast(pl.String))
    with pytest.raises(InputError) as caught:
        validate_caption_frame(bad, "mine")
    message = str(caught.value)
    assert "column 'caption_idx' is missing" in message
    assert "column 'match_id' is String, expected Int64" in message
    assert "image_id (String), match_id (Int64)" in message


# CSV and standard input -----------------------------------------------------------------------

def csv_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()


def test_csv_keeps_ids_as_text_and_casts_to_the_contract(tmp_path):
    frame = table(ids=["000139", "000285"])
    path = tmp_path / "captions.csv"
    path.write_bytes(csv_bytes(frame.drop("image_path")))

    read = read_caption_table(path)

    assert read.schema == pl.Schema({k: v for k, v in CAPTION_SCHEMA.items()
                                     if k != "image_path"})
    assert read["image_id"].to_list()[:6] == ["000139"] * 5 + ["000285"]
    assert read.equals(frame.drop("image_path"))
    assert validate_captions(path, min_group=5, max_group=5).findings == []


def test_csv_value_that_does_not_cast_names_its_line(tmp_path):
    path = tmp_path / "captions.csv"
    text = csv_bytes(table()).decode().splitlines()
    text[3] = text[3].replace(",2,", ",two,", 1)  # caption_idx of the third data row
    path.write_text("\n".join(text) + "\n")

    with pytest.raises(InputError) as caught:
        read_caption_table(path)
    assert caught.value.line == 4
    assert "'caption_idx' holds 'two', which is not a Int16" in str(caught.value)
    result = CliRunner().invoke(main, ["validate", "captions", str(path)])
    assert result.exit_code == 2 and "line 4" in result.output


def test_csv_missing_columns_are_all_named(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_bytes(csv_bytes(table().drop("match_id", "source_row")))
    result = CliRunner().invoke(main, ["validate", "captions", str(path)])
    assert result.exit_code == 2
    assert "'match_id' is missing" in result.output and "'source_row' is missing" in result.output


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_standard_input(kind):
    frame = leak(table())
    if kind == "parquet":
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        data = buffer.getvalue()
        assert data[:4] == b"PAR1"
    else:
        data = csv_bytes(frame)

    result = CliRunner().invoke(main, ["validate", "captions", "-", "--format", "json"],
                                input=data)

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["target"] == "<stdin>"
    assert [f["code"] for f in report["findings"]] == ["SPLIT_LEAKAGE"]
    assert report["stats"]["rows"] == 30


# pandera stays out of commands that do not validate tables ------------------------------------

def test_diagnose_match_ids_does_not_import_pandera(tmp_path):
    path = tmp_path / "t.parquet"
    table().write_parquet(path)
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from uncollapse.cli import main\n"
        f"r = CliRunner().invoke(main, ['diagnose', 'match-ids', {str(path)!r}, '-b', '4'])\n"
        "print(r.exit_code, 'pandera' in sys.modules)\n"
        "CliRunner().invoke(main, ['validate', 'captions', "
        f"{str(path)!r}])\n"
        "print('pandera' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.split()
    assert out == ["0", "False", "True"]
