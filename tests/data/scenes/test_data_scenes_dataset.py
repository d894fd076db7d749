"""SceneDataset: scene files as float images, masks and object counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from uncollapse.data.scenes.contract import save_scenes
from uncollapse.data.scenes.dataset import SceneDataset
from uncollapse.errors import InputError
from uncollapse.pipeline.scenes import generate_scenes
from uncollapse.samplers import SceneDataset as ExportedSceneDataset


@pytest.fixture(scope="module")
def scenes():
    return generate_scenes(24, 16, 4, seed=1)


def test_samplers_package_exports_the_scene_dataset():
    assert ExportedSceneDataset is SceneDataset


def test_saved_scenes_round_trip_as_float_images_masks_and_counts(scenes, tmp_path):
    path = tmp_path / "scenes.npz"
    save_scenes(scenes, path)
    data = SceneDataset(path)
    assert len(data) == 24
    item = data[5]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 16, 16)
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert torch.equal((item["image"] * 255).round().to(torch.uint8),
                       torch.from_numpy(scenes.images[5]).permute(2, 0, 1))
    assert torch.equal(item["mask"], torch.from_numpy(scenes.masks[5].astype(np.int64)))
    assert item["num_objects"].item() == scenes.num_objects[5]
    assert item["index"].item() == 5
    # the objects counted are the labels the mask holds
    assert item["mask"].unique().tolist() == list(range(int(scenes.num_objects[5]) + 1))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_batches_stack_the_scenes_in_order(scenes, tmp_path, num_workers):
    path = tmp_path / "scenes.npz"
    save_scenes(scenes, path, compress=False)
    loader = DataLoader(SceneDataset(path), batch_size=8, num_workers=num_workers)
    batches = list(loader)
    assert [b["index"].tolist() for b in batches] == [list(range(i, i + 8))
                                                      for i in (0, 8, 16)]
    images = torch.cat([b["image"] for b in batches])
    assert images.shape == (24, 3, 16, 16)
    assert torch.equal(images, torch.from_numpy(scenes.images).permute(0, 3, 1, 2) / 255.0)
    assert torch.cat([b["num_objects"] for b in batches]).tolist() == \
        scenes.num_objects.tolist()


def test_a_scene_set_and_a_mapping_serve_the_same_items(scenes):
    from_set = SceneDataset(scenes)[[3, -1]]
    from_dict = SceneDataset({"images": scenes.images, "masks": scenes.masks,
                              "num_objects": scenes.num_objects})[[3, 23]]
    for key in ("image", "mask", "num_objects", "index"):
        assert torch.equal(from_set[key], from_dict[key])
    items = SceneDataset(scenes).__getitems__([3, 23])
    assert torch.equal(items[1]["mask"], from_set["mask"][1])
    with pytest.raises(IndexError, match="out of range for 24 scenes"):
        SceneDataset(scenes)[[24]]


def test_a_file_breaking_the_contract_is_refused_with_every_problem(scenes, tmp_path):
    path = tmp_path / "broken.npz"
    np.savez(path, images=scenes.images.astype(np.float32), masks=scenes.masks[:, :8],
             num_objects=scenes.num_objects)
    with pytest.raises(InputError) as raised:
        SceneDataset(path)
    message = str(raised.value)
    assert str(path) in message
    assert "array 'images' is float32, expected uint8" in message
    assert "masks has shape [24, 8, 16], expected [N, H, W] = [24, 16, 16]" in message
    np.savez(path, images=scenes.images, num_objects=scenes.num_objects)
    with pytest.raises(InputError, match=r"array 'masks' \(\[N, H, W\] uint8\) is missing"):
        SceneDataset(path)
    with pytest.raises(ValueError, match="num_objects has shape \\[3\\], expected \\[N\\] = "
                                         "\\[24\\]"):
        SceneDataset({"images": scenes.images, "masks": scenes.masks,
                      "num_objects": scenes.num_objects[:3]})
