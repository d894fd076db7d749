"""Procedural scenes: masks agree with images and counts, every object visible, NPZ contract."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from uncollapse.cli import main
from uncollapse.data.scenes.contract import load_scenes, save_scenes
from uncollapse.errors import ToolError
from uncollapse.pipeline.scenes.generate import (
    _drop_hidden,
    generate_scenes,
    smallest_shape_area,
)
from uncollapse.validators.scenes import validate_scenes


def labels_per_scene(masks: np.ndarray) -> list[set[int]]:
    return [set(np.unique(m).tolist()) - {0} for m in masks]


@settings(max_examples=40, deadline=None)
@given(num=st.integers(1, 40), size=st.integers(8, 48), max_objects=st.integers(1, 8),
       seed=st.integers(0, 2**32 - 1), min_visible=st.integers(1, 6))
def test_masks_hold_exactly_objects_one_to_num_objects_each_visible(num, size, max_objects,
                                                                    seed, min_visible):
    scenes = generate_scenes(num, size, max_objects, seed=seed, min_visible=min_visible)
    assert scenes.images.shape == (num, size, size, 3) and scenes.images.dtype == np.uint8
    assert scenes.masks.shape == (num, size, size) and scenes.masks.dtype == np.uint8
    assert scenes.num_objects.dtype == np.int8
    assert ((scenes.num_objects >= 1) & (scenes.num_objects <= max_objects)).all()
    for labels, count in zip(labels_per_scene(scenes.masks), scenes.num_objects, strict=True):
        assert labels == set(range(1, count + 1))
    pixels = np.stack([np.bincount(m.ravel(), minlength=max_objects + 1) for m in scenes.masks])
    counted = np.arange(max_objects + 1)[None, :] <= scenes.num_objects[:, None]
    assert (pixels[:, 1:][counted[:, 1:]] >= min_visible).all()
    assert validate_scenes({"images": scenes.images, "masks": scenes.masks,
                         "num_objects": scenes.num_objects}, min_visible=min_visible).ok


def test_image_pixels_of_one_object_share_one_colour_distinct_from_background():
    scenes = generate_scenes(50, 32, 5, seed=2)
    for image, mask, count in zip(scenes.images, scenes.masks, scenes.num_objects, strict=True):
        for label in range(count + 1):
            colours = np.unique(image[mask == label], axis=0)
            assert len(colours) == 1
        background = image[mask == 0][0] if (mask == 0).any() else None
        if background is not None:
            assert (background < 48).all()
            assert (image[mask > 0] >= 72).all()


def test_later_shapes_occlude_earlier_ones():
    scenes = generate_scenes(400, 32, 6, seed=0)
    # with six shapes of up to 20% of the width, some earlier objects lose pixels to later
    # ones: their visible area is below the area of a full shape of their size
    full = generate_scenes(400, 32, 1, seed=0)
    assert np.median((scenes.masks == 1).sum(axis=(1, 2))) < np.median(
        (full.masks == 1).sum(axis=(1, 2)))
    assert (scenes.masks.max(axis=(1, 2)) == scenes.num_objects).all()


def test_same_seed_same_scenes_other_seed_other_scenes():
    a, b = generate_scenes(600, 16, 4, seed=5), generate_scenes(600, 16, 4, seed=5)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    c = generate_scenes(600, 16, 4, seed=6)
    assert not np.array_equal(a.masks, c.masks)


def test_hidden_objects_are_removed_and_the_rest_renumbered():
    masks = np.array([[[1, 2, 3], [3, 3, 0]]], dtype=np.uint8)
    hidden = np.array([[False, True, False]])
    new_masks, counts = _drop_hidden(masks, np.array([3]), hidden)
    assert new_masks.tolist() == [[[1, 0, 2], [2, 2, 0]]]
    assert counts.tolist() == [2]


def test_all_shape_kinds_are_drawn():
    scenes = generate_scenes(200, 64, 1, seed=1)
    areas = (scenes.masks == 1).sum(axis=(1, 2))
    heights = (scenes.masks == 1).any(axis=2).sum(axis=1)
    widths = (scenes.masks == 1).any(axis=1).sum(axis=1)
    # a square fills its bounding box, a circle ~79% of it, a triangle and a diamond ~50%
    fill = areas / (heights * widths)
    assert (fill > 0.95).any() and ((fill > 0.7) & (fill < 0.85)).any() and (fill < 0.6).any()


def test_npz_loads_without_pickle_and_bad_arguments_are_refused(tmp_path):
    scenes = generate_scenes(10, 16, 3, seed=0)
    save_scenes(scenes, tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["images", "masks", "num_objects"]
        assert np.array_equal(data["masks"], scenes.masks)
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]
    with pytest.raises(ToolError, match="min_visible must be"):
        generate_scenes(10, 16, 3, min_visible=smallest_shape_area(16) + 1)
    with pytest.raises(ToolError, match="255"):
        generate_scenes(10, 16, 300)
    with pytest.raises(ToolError, match="size must be at least 8"):
        generate_scenes(10, 4, 3)


def test_build_scenes_command_writes_the_contract_and_hits_the_cache(tmp_path):
    args = ["build", "scenes", "--num", "300", "--size", "32", "--max-objects", "5",
            "--seed", "3", "-o", str(tmp_path / "scenes.npz"),
            "--cache-dir", str(tmp_path / "cache")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "300 scenes" in first.output
    data = load_scenes(tmp_path / "scenes.npz")
    assert data["images"].shape == (300, 32, 32, 3)
    np.testing.assert_array_equal(data["masks"], generate_scenes(300, 32, 5, seed=3).masks)
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "cache hit" in second.output
    bad = CliRunner().invoke(main, ["build", "scenes", "--num", "0",
                                    "--cache-dir", str(tmp_path / "cache")])
    assert bad.exit_code == 2 and "--num must be at least 1, got 0" in bad.output


def test_crowded_scenes_drop_hidden_objects_after_redraws_and_stay_consistent():
    # 20 shapes on 8 x 8 pixels: redrawing rarely helps, so hidden objects are removed
    scenes = generate_scenes(50, 8, 20, seed=0, min_visible=6)
    assert scenes.reduced > 0 and scenes.redrawn > 0
    assert (scenes.num_objects < 20).all() and (scenes.num_objects >= 1).all()
    for labels, count in zip(labels_per_scene(scenes.masks), scenes.num_objects, strict=True):
        assert labels == set(range(1, count + 1))
    report = validate_scenes({"images": scenes.images, "masks": scenes.masks,
                           "num_objects": scenes.num_objects}, min_visible=6)
    assert report.findings == []
    # removed objects leave no colour behind: the image is painted from the mask
    for image, mask in zip(scenes.images, scenes.masks, strict=True):
        assert len(np.unique(image[mask == 0], axis=0)) <= 1
