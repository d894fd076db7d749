"""The caption table's pyarrow readers (the training path, where polars is not installed):
the columns a trainer needs, keyed by the contract's names, and a clear error naming the file
for everything else."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uncollapse.data.captions.contract import IMAGE_ID, MATCH_ID, SPLIT
from uncollapse.data.captions.table import read_caption_arrays, read_image_features
from uncollapse.errors import InputError


def _table(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


def test_reads_match_id_image_id_and_split_by_their_contract_names(tmp_path):
    path = _table(tmp_path / "t.parquet", image_id=["a", "a", "b"], match_id=[0, 0, 1],
                  split=["train", None, "test"], caption=["x", "y", "z"])
    arrays = read_caption_arrays(path)
    assert set(arrays) == {MATCH_ID, IMAGE_ID, SPLIT}
    assert arrays[MATCH_ID].dtype == np.int64 and arrays[MATCH_ID].tolist() == [0, 0, 1]
    assert arrays[IMAGE_ID].tolist() == ["a", "a", "b"]
    assert arrays[SPLIT].tolist() == ["train", None, "test"]


def test_a_table_without_split_reads_as_no_split(tmp_path):
    arrays = read_caption_arrays(_table(tmp_path / "t.parquet", image_id=["a"], match_id=[0]))
    assert arrays[SPLIT].tolist() == [None]


@pytest.mark.parametrize(("columns", "message"), [
    ({"image_id": ["a"]}, "has no 'match_id' column"),
    ({"image_id": ["a", None], "match_id": [0, 1]}, "match_id or image_id holds nulls"),
])
def test_a_table_a_trainer_cannot_use_is_refused_naming_the_file(tmp_path, columns, message):
    path = _table(tmp_path / "t.parquet", **columns)
    with pytest.raises(InputError, match=message) as caught:
        read_caption_arrays(path)
    assert str(path) in str(caught.value)


def test_a_file_that_is_not_parquet_is_refused(tmp_path):
    (tmp_path / "t.parquet").write_text("image_id,match_id\n")
    with pytest.raises(InputError, match="is another kind of file, not a Parquet caption table"):
        read_caption_arrays(tmp_path / "t.parquet")
    with pytest.raises(InputError, match="does not exist; expected a regular file"):
        read_caption_arrays(tmp_path / "missing.parquet")


def test_image_features_read_without_pickle_with_ids_as_strings(tmp_path):
    np.savez(tmp_path / "f.npz", features=np.eye(2, dtype=np.float32), image_ids=np.array([7, 9]))
    features, ids = read_image_features(tmp_path / "f.npz")
    assert features.shape == (2, 2) and ids.tolist() == ["7", "9"]
    np.savez(tmp_path / "g.npz", features=np.eye(2))
    with pytest.raises(InputError, match="needs 'features' and 'image_ids', it has"):
        read_image_features(tmp_path / "g.npz")
    np.savez(tmp_path / "h.npz", features=np.eye(2), image_ids=np.array(["a", 1], dtype=object))
    with pytest.raises(InputError, match="cannot be read without pickle"):
        read_image_features(tmp_path / "h.npz")
