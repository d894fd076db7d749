"""`validate scenes`: each finding code on a scene file broken in one way."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.pipeline.scenes import generate_scenes
from uncollapse.validators.scenes import validate_scenes


def arrays(num=20, size=16, max_objects=4, seed=0) -> dict:
    scenes = generate_scenes(num, size, max_objects, seed=seed)
    return {"images": scenes.images, "masks": scenes.masks.copy(),
            "num_objects": scenes.num_objects.copy()}


def test_generated_scenes_pass_with_stats():
    data = arrays()
    report = validate_scenes(data)
    assert report.findings == []
    assert report.stats["scenes"] == 20 and report.stats["height"] == 16
    assert report.stats["objects"] == int(data["num_objects"].sum())
    assert report.stats["min_object_pixels"] >= 4


def test_num_objects_larger_than_the_mask_labels_means_invisible_objects():
    data = arrays()
    data["num_objects"][3] += 1
    report = validate_scenes(data)
    (finding,) = report.findings
    assert finding.code == "SCENE_OBJECT_INVISIBLE"
    assert finding.examples == [{"scene": 3, "object": int(data["num_objects"][3]),
                                 "pixels": 0}]


def test_mask_labels_above_num_objects():
    data = arrays()
    scene = int(np.flatnonzero(data["num_objects"] >= 2)[0])
    data["num_objects"][scene] -= 1
    report = validate_scenes(data)
    (finding,) = report.findings
    assert finding.code == "SCENE_MASK_LABEL_OUT_OF_RANGE"
    assert finding.examples[0]["scene"] == scene


def test_object_below_min_visible_pixels():
    data = arrays()
    mask = data["masks"][0]
    mask[mask == 1] = 0
    mask[0, 0] = 1  # object 1 keeps a single pixel
    report = validate_scenes(data, min_visible=2)
    assert report.codes() == ["SCENE_OBJECT_INVISIBLE"]
    assert report.findings[0].examples == [{"scene": 0, "object": 1, "pixels": 1}]
    assert validate_scenes(data, min_visible=1).findings == []


def test_zero_objects_is_invalid():
    data = arrays()
    data["num_objects"][0] = 0
    data["masks"][0] = 0
    assert validate_scenes(data).codes() == ["SCENE_NUM_OBJECTS_INVALID"]


def test_shapes_and_dtypes_that_break_the_contract():
    data = arrays()
    data["masks"] = data["masks"][:, :, :-1]
    (finding,) = validate_scenes(data).findings
    assert finding.code == "SCENE_SCHEMA" and "differ in N, H or W" in finding.message
    data = arrays()
    data["num_objects"] = data["num_objects"].astype(np.int64)
    del data["images"]
    (finding,) = validate_scenes(data).findings
    assert "missing key 'images'" in finding.message and "int64, expected int8" in finding.message


def test_command_exit_codes(tmp_path):
    data = arrays()
    np.savez(tmp_path / "ok.npz", **data)
    data["num_objects"][0] += 1
    np.savez(tmp_path / "bad.npz", **data)
    np.savez(tmp_path / "pickled.npz", images=np.array([{"a": 1}], dtype=object))
    run = CliRunner().invoke
    assert run(main, ["validate", "scenes", str(tmp_path / "ok.npz")]).exit_code == 0
    bad = run(main, ["validate", "scenes", str(tmp_path / "bad.npz"), "--format", "json"])
    assert bad.exit_code == 1 and '"SCENE_OBJECT_INVISIBLE"' in bad.output
    pickled = run(main, ["validate", "scenes", str(tmp_path / "pickled.npz")])
    assert pickled.exit_code == 2 and "pickle" in pickled.output


def test_a_file_without_scenes_is_a_schema_finding_not_a_crash(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, images=np.zeros((0, 8, 8, 3), np.uint8), masks=np.zeros((0, 8, 8), np.uint8),
             num_objects=np.zeros(0, np.int8))
    report = validate_scenes(path)
    assert report.codes() == ["SCENE_SCHEMA"]
    assert "no scenes" in report.findings[0].message
    result = CliRunner().invoke(main, ["validate", "scenes", str(path)])
    assert result.exit_code == 1, result.output
