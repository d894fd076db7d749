"""Caption tables read by Hugging Face ``datasets`` (and pandas): ``load_dataset("csv")`` gives
``image_id`` Int64 and ``caption_idx`` int64, ``load_dataset("json")`` ``caption_idx`` int64.
``to_caption_frame`` takes them to the contract's dtypes where no value changes, and a
``datasets.Dataset`` is accepted where a caption frame or source is."""

from __future__ import annotations

import json

import datasets
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cache.store import Cache
from uncollapse.cli import main
from uncollapse.data.captions.dataset import CaptionDataset
from uncollapse.data.captions.table import CAPTION_SCHEMA, to_caption_frame
from uncollapse.errors import InputError
from uncollapse.pipeline.captions import build_captions
from uncollapse.validators.captions import CaptionTable, validate_caption_frame

IMAGES = ["1000092795", "10002456", "1000268201", "1000344755"]


def table() -> pl.DataFrame:
    """Four images of three captions each; ids are numbers, as Flickr's are."""
    rows = [(image, n) for image in IMAGES for n in range(3)]
    return pl.DataFrame({
        "image_id": [image for image, _ in rows],
        "match_id": [IMAGES.index(image) for image, _ in rows],
        "caption_idx": [n for _, n in rows],
        "caption": [f"caption {n} of image {image} ." for image, n in rows],
        "split": ["train"] * len(rows),
        "source_row": list(range(1, len(rows) + 1)),
        "image_path": [f"{image}.jpg" for image, _ in rows],
    }, schema=CAPTION_SCHEMA)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def load(kind: str, path, tmp_path) -> datasets.Dataset:
    return datasets.load_dataset(kind, data_files=str(path), split="train",
                                 cache_dir=str(tmp_path / "hf-cache"))


@pytest.fixture
def from_csv(tmp_path) -> tuple[datasets.Dataset, object]:
    path = tmp_path / "captions.csv"
    table().write_csv(path)
    return load("csv", path, tmp_path), path


@pytest.fixture
def from_json(tmp_path) -> datasets.Dataset:
    path = tmp_path / "captions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in table().to_dicts()))
    return load("json", path, tmp_path)


def test_load_dataset_gives_other_dtypes_than_the_contract(from_csv, from_json):
    csv_frame = from_csv[0].to_polars()
    assert (csv_frame.schema["image_id"], csv_frame.schema["caption_idx"]) == (pl.Int64, pl.Int64)
    assert from_json.to_polars().schema["caption_idx"] == pl.Int64
    with pytest.raises(InputError, match="column 'image_id' is Int64, expected String.*"
                                         "coerce=True"):
        validate_caption_frame(csv_frame)


def test_a_csv_dataset_validates_as_the_command_line_validates_the_csv(from_csv):
    dataset, path = from_csv
    report = validate_caption_frame(dataset)
    assert report.ok and report.stats["rows"] == 12 and report.stats["groups"] == 4
    command_line = json.loads(CliRunner().invoke(main, ["validate", "captions", str(path),
                                                        "--format", "json"]).stdout)
    assert command_line["ok"] and report.codes() == [f["code"]
                                                     for f in command_line["findings"]]
    assert report.stats == command_line["stats"]


def test_to_caption_frame_gives_the_contract_dtypes_and_the_same_values(from_csv, from_json):
    for dataset in (from_csv[0], from_json):
        frame = to_caption_frame(dataset)
        assert dict(frame.schema) == CAPTION_SCHEMA
        assert frame.equals(table())
        assert CaptionTable.validate(frame, lazy=True).height == 12
    coerced = validate_caption_frame(from_json.to_polars(), coerce=True)
    assert coerced.ok and coerced.stats["images"] == 4


def test_a_value_that_does_not_fit_is_refused_never_cut(from_json, tmp_path):
    wide = table().with_columns(pl.col("caption_idx").cast(pl.Int64))
    wide = wide.with_columns(caption_idx=pl.when(pl.int_range(pl.len()) == 5).then(70000)
                             .otherwise(pl.col("caption_idx")))
    with pytest.raises(InputError, match=r"column 'caption_idx' holds 70000 at row 5, which is "
                                         r"not a Int16 \(1 value"):
        to_caption_frame(wide)
    fraction = table().to_pandas()
    fraction["match_id"] = fraction["match_id"].astype(float)
    assert to_caption_frame(fraction).equals(table())  # whole floats (pandas) are fine
    fraction.loc[3, "match_id"] = 1.5
    with pytest.raises(InputError, match="column 'match_id' holds 1.5 at row 3"):
        to_caption_frame(fraction)
    floats = table().with_columns(pl.col("image_id").cast(pl.Float64))
    with pytest.raises(InputError, match="column 'image_id' is Float64, expected String"):
        to_caption_frame(floats)
    with pytest.raises(TypeError, match="pass one of them, such as data\\['train'\\]"):
        to_caption_frame(datasets.DatasetDict({"train": from_json}))


def test_caption_dataset_takes_a_hugging_face_dataset(from_csv):
    data = CaptionDataset(from_csv[0], text_features=np.eye(12, dtype=np.float32))
    assert len(data) == 12
    item = data[4]
    assert (item["image_id"], item["match_id"], item["caption"]) == (
        "10002456", 1, "caption 1 of image 10002456 .")
    assert data.match_ids.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_build_captions_takes_a_dataset_in_the_flickr30k_layout(tmp_path):
    rows = {"caption": [["a dog .", "a dog runs ."], ["a cat .", "a cat sits ."]],
            "filename": ["1000092795.jpg", "10002456.jpg"], "split": ["train", "test"],
            "img_id": [0, 1]}
    cache = Cache(tmp_path / "cache")
    built = build_captions(datasets.Dataset.from_dict(rows), cache=cache)
    captions = built.table()
    assert captions["image_id"].to_list() == ["1000092795"] * 2 + ["10002456"] * 2
    assert captions["caption"].to_list() == ["a dog .", "a dog runs .", "a cat .",
                                             "a cat sits ."]
    again = build_captions(datasets.Dataset.from_dict(rows), cache=cache)
    assert again.entry.key == built.entry.key and again.hit  # the same rows: the same entry
    rows["caption"][1][1] = "a cat sleeps ."
    changed = build_captions(datasets.Dataset.from_dict(rows), cache=cache)
    assert changed.entry.key != built.entry.key
    split = build_captions(datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}),
                           hf_split="test", cache=cache)
    assert split.table()["caption"].to_list()[-1] == "a cat sleeps ."
