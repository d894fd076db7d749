"""AttributeTable: each attribute table rule is a pandera check that fails on its planted defect."""

from __future__ import annotations

import itertools

import numpy as np
import pandera.polars as pa
import polars as pl
import pytest

from uncollapse.data.attributes.contract import attribute_columns
from uncollapse.validators.attributes import attribute_table_model, validate_attributes
from uncollapse.validators.bridge import pandera_failures

NAMES = ["Smiling", "Male", "Eyeglasses"]


def table(rows_per_combination: int = 10) -> pl.DataFrame:
    combos = np.array(list(itertools.product([0, 1], repeat=3)), dtype=np.int8)
    values = np.repeat(combos, rows_per_combination, axis=0)
    identity = np.arange(len(values)) // 4
    return pl.DataFrame({"image_id": [f"{i:06d}.jpg" for i in range(len(values))],
                         "identity": identity.astype(np.int64),
                         "split": np.array(["train", "val", "test"])[identity % 3],
                         **{name: values[:, j] for j, name in enumerate(NAMES)}})


def failures(frame: pl.DataFrame, **kwargs) -> dict:
    """{(check, column): failing rows} of the model for ``frame``'s attribute columns."""
    model = attribute_table_model(attribute_columns(frame), **kwargs)
    return {(f.check, f.schema): f.count
            for failures in pandera_failures(model.to_schema(), frame).values() for f in failures}


def test_a_healthy_table_passes_every_rule():
    frame = table()
    model = attribute_table_model(NAMES, flipped=NAMES, min_rows=10)
    assert model.validate(frame, lazy=True).height == 80
    assert failures(frame, flipped=NAMES, min_rows=10) == {}


def test_each_rule_fails_on_its_planted_defect():
    frame = table().with_columns(
        # two rows share an image id; identity 0 gets a test image (it is in train)
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("000000.jpg"))
        .otherwise(pl.col("image_id")).alias("image_id"),
        pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("test")).otherwise(pl.col("split"))
        .alias("split"),
        # one value 2, one null; Eyeglasses constant
        pl.when(pl.int_range(pl.len()) == 5).then(2).otherwise(pl.col("Male")).cast(pl.Int8)
        .alias("Male"),
        pl.when(pl.int_range(pl.len()) == 6).then(None).otherwise(pl.col("Smiling"))
        .alias("Smiling"),
        pl.lit(1, dtype=pl.Int8).alias("Eyeglasses"))
    assert failures(frame) == {
        ("image_ids_are_unique", "AttributeTable"): 1,
        ("identity_in_one_split", "AttributeTable"): 1,
        ("isin", "Male"): 1,
        ("not_nullable", "Smiling"): 1,
        ("attribute_varies", "Eyeglasses"): 1,
    }


def test_small_and_absent_combinations_fail_the_combination_rule():
    frame = table(rows_per_combination=10).filter(
        ~((pl.col("Smiling") == 1) & (pl.col("Male") == 1) & (pl.int_range(pl.len()) % 10 > 2)))
    # (1, 1) keeps 3 rows per Eyeglasses value: small, present
    assert failures(frame, flipped=["Smiling", "Male"], min_rows=8) == {
        ("combinations_have_min_rows", "AttributeTable"): 1}
    absent = table().filter(pl.col("Smiling") == 0)
    assert failures(absent, flipped=["Smiling", "Male"], min_rows=1)[
        ("combinations_have_min_rows", "AttributeTable")] == 1  # row 0 flags the absent ones
    assert failures(absent, flipped=["Male", "Eyeglasses"], min_rows=1) == {
        ("attribute_varies", "Smiling"): 1}


def test_lazy_validation_lists_several_failures_at_once():
    frame = pl.concat([table(), table().head(1)]).with_columns(
        pl.lit(0, dtype=pl.Int8).alias("Male"))
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        attribute_table_model(NAMES).validate(frame, lazy=True)
    checks = {error.check.name for error in caught.value.schema_errors}
    assert checks == {"image_ids_are_unique", "attribute_varies"}


def test_validate_attributes_maps_model_failures_to_codes_with_counts():
    frame = pl.concat([table(), table().head(2)]).with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(5).otherwise(pl.col("Male")).cast(pl.Int8)
        .alias("Male"))
    report = validate_attributes(frame)
    assert report.codes() == ["ATTR_DUPLICATE_IMAGE_ID", "ATTR_NON_BINARY"]
    duplicate, non_binary = report.findings
    assert duplicate.count == 2
    assert duplicate.examples == [{"image_id": "000000.jpg", "rows": 2},
                                  {"image_id": "000001.jpg", "rows": 2}]
    assert non_binary.count == 1 and non_binary.examples[0]["value"] == 5


def test_integer_attributes_wider_than_int8_keep_their_value_in_examples():
    frame = table().with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(300).otherwise(pl.col("Male"))
        .cast(pl.Int64).alias("Male"))
    (finding,) = validate_attributes(frame).findings
    assert finding.code == "ATTR_NON_BINARY"
    assert finding.examples == [{"column": "Male", "row": 3, "image_id": "000003.jpg",
                                 "value": 300}]


def test_model_arguments_are_checked():
    with pytest.raises(ValueError, match="not among the attributes"):
        attribute_table_model(NAMES, flipped=["Bald"])
    with pytest.raises(ValueError, match="min_rows must be at least 1"):
        attribute_table_model(NAMES, min_rows=0)
