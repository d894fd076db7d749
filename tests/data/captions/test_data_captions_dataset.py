"""CaptionDataset: caption rows with aligned features, batched by GroupedBatchSampler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torch.utils.data import DataLoader

from uncollapse.data.captions.dataset import CaptionDataset
from uncollapse.errors import InputError
from uncollapse.pipeline.captions.build import read_captions
from uncollapse.samplers import CaptionDataset as ExportedCaptionDataset
from uncollapse.samplers import GroupedBatchSampler, GroupedCollate

ROOT = Path(__file__).resolve().parents[3]
COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"


@pytest.fixture(scope="module")
def coco_table() -> pl.DataFrame:
    table, _ = read_captions(COCO)
    return table


def _text_features(n_rows: int) -> np.ndarray:
    """Row i of the text features is [i, -i], so every row can be checked."""
    return np.arange(n_rows, dtype=np.float32)[:, None] * np.array([1, -1], dtype=np.float32)


def _image_features(table: pl.DataFrame):
    """One feature row per image, in reverse sorted image_id order, with its ids."""
    ids = np.array(sorted(table["image_id"].unique().to_list(), reverse=True))
    # feature row j of image k is [k, k, k] for image id k, so every row can be checked
    features = np.repeat(ids.astype(np.float32)[:, None], 3, axis=1)
    return ids, features


def test_samplers_package_exports_the_caption_dataset():
    assert ExportedCaptionDataset is CaptionDataset


def test_item_is_the_rows_match_id_image_id_and_caption(coco_table):
    data = CaptionDataset(coco_table)
    item = data[7]
    assert len(data) == coco_table.height == 5005
    assert item["row"].item() == 7
    assert item["match_id"].item() == coco_table["match_id"][7]
    assert item["image_id"] == coco_table["image_id"][7]
    assert item["caption"] == coco_table["caption"][7]
    assert np.array_equal(data.match_ids, coco_table["match_id"].to_numpy())


def test_a_path_is_read_with_the_caption_contract(coco_table, tmp_path):
    path = tmp_path / "captions.parquet"
    coco_table.write_parquet(path)
    assert CaptionDataset(path)[3]["caption"] == coco_table["caption"][3]
    coco_table.drop("match_id").write_parquet(tmp_path / "broken.parquet")
    with pytest.raises(InputError, match="column 'match_id' is missing"):
        CaptionDataset(tmp_path / "broken.parquet")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_grouped_batches_hold_per_group_rows_of_each_group_with_aligned_features(
        coco_table, num_workers):
    text_features = _text_features(coco_table.height)
    image_ids, image_features = _image_features(coco_table)
    data = CaptionDataset(coco_table, text_features=text_features,
                          image_features=image_features, image_ids=image_ids)
    sampler = GroupedBatchSampler(data.match_ids, batch_size=40, per_group=5, seed=3)
    plan = sampler.plan(0)
    loader = DataLoader(data, batch_sampler=sampler, num_workers=num_workers,
                        collate_fn=GroupedCollate("match_id"))
    batches = list(loader)
    assert len(batches) == len(plan) == 1000 // 8
    for i, batch in enumerate(batches):
        rows = batch["row"].numpy()
        assert np.array_equal(rows, plan.batch(i))
        _, counts = np.unique(batch["match_id"].numpy(), return_counts=True)
        assert counts.tolist() == [5] * 8
        assert batch["positive_mask"].sum(1).tolist() == [4] * 40
        assert torch.equal(batch["text_features"], torch.from_numpy(text_features[rows]))
        assert batch["image_id"] == coco_table["image_id"].gather(rows).to_list()
        assert batch["image_features"][:, 0].tolist() == [float(i) for i in batch["image_id"]]
        assert batch["caption"] == coco_table["caption"].gather(rows).to_list()


def test_getitems_returns_the_same_items_as_getitem(coco_table):
    data = CaptionDataset(coco_table,
                          text_features=torch.from_numpy(_text_features(coco_table.height)))
    rows = [5, 0, 1999, -1]
    items = data.__getitems__(rows)
    for row, item in zip(rows, items, strict=True):
        single = data[row]
        assert item.keys() == single.keys()
        assert item["row"].item() == row % len(data)
        assert item["text_features"].tolist() == [row % len(data), -(row % len(data))]
        assert torch.equal(item["text_features"], single["text_features"])
        assert item["caption"] == single["caption"]
    batch = data[np.array(rows)]
    assert batch["text_features"].shape == (4, 2)
    with pytest.raises(IndexError, match="rows 5005 out of range for 5005"):
        data[[5005]]


def test_image_features_by_match_id_without_ids(coco_table):
    n_groups = coco_table["match_id"].n_unique()
    features = np.arange(n_groups, dtype=np.float32)[:, None] * 10
    data = CaptionDataset(coco_table, image_features=features, image_key="match_id")
    batch = data[[0, 100, 5004]]
    assert batch["image_features"][:, 0].tolist() == [m * 10.0 for m in
                                                     batch["match_id"].tolist()]


def test_image_features_from_a_mapping(coco_table):
    ids = sorted(coco_table["image_id"].unique().to_list())
    mapping = {image_id: len(ids) - 1 - j for j, image_id in enumerate(ids)}
    features = np.zeros((len(ids), 2), dtype=np.float32)
    for image_id, row in mapping.items():
        features[row] = int(image_id)
    data = CaptionDataset(coco_table, image_features=features, image_ids=mapping)
    batch = data[[0, 2500, 5004]]
    assert batch["image_features"][:, 1].tolist() == [float(i) for i in batch["image_id"]]


def test_integer_image_ids_match_the_tables_string_ids(coco_table):
    ids, features = _image_features(coco_table)
    data = CaptionDataset(coco_table, image_features=features, image_ids=ids.astype(np.int64))
    assert data[10]["image_features"][0].item() == float(coco_table["image_id"][10])


def test_missing_image_features_name_the_image_and_its_rows():
    table = pl.DataFrame({"image_id": ["a", "b", "b", "c"], "match_id": [0, 1, 1, 2],
                          "caption": ["x", "y", "z", "w"]})
    with pytest.raises(ValueError, match=r"no row for image_id 'b' \(table rows 1, 2\)"):
        CaptionDataset(table, image_features=np.zeros((2, 4)), image_ids=["a", "c"])
    with pytest.raises(ValueError, match="image_ids has 3 entries but image_features has 2"):
        CaptionDataset(table, image_features=np.zeros((2, 4)), image_ids=["a", "b", "c"])
    with pytest.raises(ValueError, match="image_ids names 'a' more than once"):
        CaptionDataset(table, image_features=np.zeros((3, 4)), image_ids=["a", "a", "c"])
    with pytest.raises(ValueError, match="table rows 3 have match_id 2 outside 0..1"):
        CaptionDataset(table, image_features=np.zeros((2, 4)), image_key="match_id")
    with pytest.raises(ValueError, match="image_ids is needed to align image_features by "
                                         "image_id"):
        CaptionDataset(table, image_features=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="maps 'c' to rows outside 0..1"):
        CaptionDataset(table, image_features=np.zeros((2, 4)),
                       image_ids={"a": 0, "b": 1, "c": 2})


def test_text_features_of_another_length_are_refused_with_both_counts():
    table = pl.DataFrame({"image_id": ["a", "a", "b"], "match_id": [0, 0, 1],
                          "caption": ["x", None, "z"]})
    with pytest.raises(ValueError, match="text_features has 2 rows but the caption table "
                                         "has 3"):
        CaptionDataset(table, text_features=np.zeros((2, 8)))
    assert CaptionDataset(table)[1]["caption"] == ""  # a null caption is empty text


def test_null_group_and_missing_columns_are_named():
    table = pl.DataFrame({"image_id": ["a", "b"], "match_id": [0, None], "caption": ["x", "y"]})
    with pytest.raises(ValueError, match="column match_id is null in table rows 1"):
        CaptionDataset(table)
    with pytest.raises(ValueError, match="no column.* caption"):
        CaptionDataset(table.drop("caption"))


def test_docs_datasets_example_runs_on_the_bundled_data(tmp_path):
    page = (ROOT / "docs" / "samplers.md").read_text()
    section = page.split("## Datasets: captions and scenes", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    checks = """
assert batch["image"].shape == (64, 3, 32, 32) and batch["mask"].shape == (64, 32, 32)
assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
caption_batch = next(iter(loader))
assert caption_batch["image_features"].shape == (250, 512)
assert caption_batch["positive_mask"].sum(1).tolist() == [4] * 250
assert len(set(caption_batch["image_id"][:5])) == 1
"""
    (tmp_path / "data").symlink_to(ROOT / "data")
    script = tmp_path / "example.py"
    script.write_text(code + checks)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "scenes.npz").exists()
