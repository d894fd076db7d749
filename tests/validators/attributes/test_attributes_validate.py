"""`validate attributes`: every finding code on tables built to trigger it."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.errors import InputError
from uncollapse.validators.attributes import validate_attributes


def healthy(rows_per_combination: int = 10) -> pl.DataFrame:
    """Every combination of three attributes, ``rows_per_combination`` times, identity-clean."""
    combos = np.array(list(itertools.product([0, 1], repeat=3)), dtype=np.int8)
    values = np.repeat(combos, rows_per_combination, axis=0)
    n = len(values)
    identity = np.arange(n) // 4
    split = np.array(["train", "val", "test"])[identity % 3]
    return pl.DataFrame({"image_id": [f"{i:06d}.jpg" for i in range(n)],
                         "identity": identity.astype(np.int64), "split": split,
                         "Smiling": values[:, 0], "Male": values[:, 1],
                         "Eyeglasses": values[:, 2]})


def test_healthy_table_passes_with_stats():
    report = validate_attributes(healthy(), min_rows=8)
    assert report.findings == []
    assert report.stats["combinations"] == {"possible": 8, "present": 8, "min_rows": 10,
                                            "median_rows": 10.0, "below_min_rows": 0}
    assert report.stats["positive_share"]["Smiling"] == 0.5
    assert report.stats["identities"] == 20


def test_non_binary_values_are_an_error_with_the_failing_value():
    table = healthy().with_columns(
        pl.when(pl.col("image_id") == "000005.jpg").then(-1).otherwise(pl.col("Male"))
        .cast(pl.Int8).alias("Male"))
    report = validate_attributes(table)
    (finding,) = report.findings
    assert finding.code == "ATTR_NON_BINARY" and finding.count == 1
    assert finding.examples == [{"column": "Male", "row": 5, "image_id": "000005.jpg",
                                 "value": -1}]
    assert not report.ok


def test_null_attribute_values_count_as_non_binary():
    table = healthy().with_columns(
        pl.when(pl.col("image_id") == "000001.jpg").then(None).otherwise(pl.col("Smiling"))
        .alias("Smiling"))
    assert validate_attributes(table).codes() == ["ATTR_NON_BINARY"]


def test_constant_attribute_is_a_warning():
    table = healthy().with_columns(pl.lit(1, dtype=pl.Int8).alias("Young"))
    report = validate_attributes(table, attributes=["Smiling", "Male"])
    (finding,) = report.findings
    assert finding.code == "ATTR_CONSTANT" and finding.severity == "warning"
    assert finding.examples == [{"column": "Young", "value": 1}]
    assert report.ok and report.exit_code(strict=True) == 1


def test_combination_with_too_few_rows_is_an_error_naming_it():
    table = healthy().filter(~((pl.col("Smiling") == 1) & (pl.col("Male") == 1)
                               & (pl.col("Eyeglasses") == 1) & (pl.col("identity") > 17)))
    report = validate_attributes(table, min_rows=8)
    (finding,) = report.findings
    assert finding.code == "ATTR_COMBINATION_TOO_SMALL" and finding.count == 1
    # the all-ones combination keeps rows 70 and 71 (identity 17) only
    assert finding.examples == [{"combination_id": 7, "rows": 2, "Smiling": 1, "Male": 1,
                                 "Eyeglasses": 1}]
    assert validate_attributes(table, min_rows=2).findings == []


def test_absent_combinations_count_as_too_small():
    table = healthy().filter(pl.col("Smiling") == 0)
    report = validate_attributes(table, attributes=["Smiling", "Male"], min_rows=1)
    assert report.codes() == ["ATTR_CONSTANT", "ATTR_COMBINATION_TOO_SMALL"]
    finding = report.findings[1]
    assert finding.count == 2 and "2 have none" in finding.message
    assert {(e["Smiling"], e["Male"]) for e in finding.examples} == {(1, 0), (1, 1)}


def test_many_attributes_need_a_selection_for_the_combination_check():
    rng = np.random.default_rng(0)
    names = [f"A{j}" for j in range(40)]
    table = pl.DataFrame({"image_id": [str(i) for i in range(200)],
                          **{n: rng.integers(0, 2, 200).astype(np.int8) for n in names}})
    assert validate_attributes(table).codes() == ["ATTR_COMBINATIONS_NOT_CHECKED"]
    assert validate_attributes(table, attributes=["A0"], min_rows=5).findings == []
    with pytest.raises(InputError, match="unknown attributes"):
        validate_attributes(table, attributes=["Bald"])


def test_identity_in_two_splits_is_identity_leakage():
    table = healthy().with_columns(
        pl.when(pl.col("image_id") == "000001.jpg").then(pl.lit("test"))
        .otherwise(pl.col("split")).alias("split"))
    report = validate_attributes(table)
    (finding,) = report.findings
    assert finding.code == "IDENTITY_LEAKAGE" and finding.count == 1
    assert finding.examples == [{"identity": 0, "splits": ["test", "train"], "images": 4}]


def test_duplicate_image_ids_and_broken_schema():
    table = pl.concat([healthy(), healthy().head(1)])
    assert "ATTR_DUPLICATE_IMAGE_ID" in validate_attributes(table).codes()
    broken = healthy().with_columns(pl.col("Male").cast(pl.String))
    report = validate_attributes(broken.drop("image_id"))
    (finding,) = report.findings
    assert finding.code == "ATTR_TABLE_SCHEMA"
    assert "no image_id column" in finding.message and "Male (String)" in finding.message


def test_command_exit_codes_and_json(tmp_path):
    healthy().write_parquet(tmp_path / "ok.parquet")
    healthy().with_columns(
        pl.when(pl.col("image_id") == "000001.jpg").then(pl.lit("test"))
        .otherwise(pl.col("split")).alias("split")).write_parquet(tmp_path / "leaky.parquet")
    ok = CliRunner().invoke(main, ["validate", "attributes", str(tmp_path / "ok.parquet")])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(main, ["validate", "attributes", str(tmp_path / "leaky.parquet"),
                                    "--format", "json", "--min-rows", "1"])
    assert bad.exit_code == 1
    assert '"IDENTITY_LEAKAGE"' in bad.output
    missing = CliRunner().invoke(main, ["validate", "attributes", str(tmp_path / "no.parquet")])
    assert missing.exit_code == 2
    assert f"{tmp_path / 'no.parquet'}: does not exist; expected a regular file" in missing.output


def test_csv_table_with_numeric_looking_image_ids_keeps_them_as_strings(tmp_path):
    table = healthy()
    table = table.with_columns(pl.col("image_id").str.replace(r"\.jpg$", ""))
    path = tmp_path / "attrs.csv"
    table.write_csv(path)
    report = validate_attributes(path)
    assert report.codes() == []
    assert report.stats["rows"] == table.height
