"""The attribute table's pyarrow reader (the training path, where polars is not installed):
the 0/1 attributes to use, identities and splits, and errors that name the row and column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uncollapse.data.attributes.contract import IDENTITY, SPLIT
from uncollapse.data.attributes.table import MAX_DEFAULT_ATTRIBUTES, read_attribute_arrays
from uncollapse.errors import InputError


def _table(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


def test_reads_every_attribute_column_and_the_reserved_ones(tmp_path):
    path = _table(tmp_path / "a.parquet", image_id=["x", "y"], identity=[3, 4],
                  split=["train", "test"], smiling=pa.array([1, 0], pa.int8()),
                  hat=pa.array([0, 0], pa.int8()))
    arrays = read_attribute_arrays(path)
    assert arrays["names"] == ["smiling", "hat"]
    assert arrays["attributes"].dtype == np.int8
    assert arrays["attributes"].tolist() == [[1, 0], [0, 0]]
    assert arrays[IDENTITY].tolist() == [3, 4] and arrays[SPLIT].tolist() == ["train", "test"]
    assert read_attribute_arrays(path, ["hat"])["attributes"].tolist() == [[0], [0]]


def test_a_table_without_identity_or_split_reads_them_as_none(tmp_path):
    arrays = read_attribute_arrays(_table(tmp_path / "a.parquet", image_id=["x"], smiling=[1]))
    assert arrays[IDENTITY].tolist() == [None] and arrays[SPLIT].tolist() == [None]


def test_errors_name_the_attribute_and_row(tmp_path):
    path = _table(tmp_path / "a.parquet", image_id=["x", "y"], smiling=[1, -1])
    with pytest.raises(InputError, match="attribute 'smiling' of row 1 is -1; attributes must "
                                         "be 0/1"):
        read_attribute_arrays(path)
    with pytest.raises(InputError, match=r"has no attribute column\(s\) \['hat'\]"):
        read_attribute_arrays(path, ["hat"])
    wide = _table(tmp_path / "w.parquet", image_id=["x"],
                  **{f"a{i}": [0] for i in range(MAX_DEFAULT_ATTRIBUTES + 1)})
    with pytest.raises(InputError, match=f"has {MAX_DEFAULT_ATTRIBUTES + 1} attribute columns"):
        read_attribute_arrays(wide)
    with pytest.raises(InputError, match="has no attribute columns"):
        read_attribute_arrays(_table(tmp_path / "n.parquet", image_id=["x"], split=["train"]))
