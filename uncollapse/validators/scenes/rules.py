"""Checks of a scene NPZ (docs/data-contracts.md, "Scene file") for object-centric training.

The keys, dtypes and shapes of the contract; masks whose labels agree with ``num_objects``
(no label above it, none of 1..num_objects missing); every object visible with at least
``min_visible`` pixels. Work is vectorised over scenes in chunks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uncollapse.data.scenes.contract import load_scenes
from uncollapse.report import Code, Report

CHUNK = 2048

SCENE_SCHEMA = Code(
    "SCENE_SCHEMA", "error",
    "The scene file breaks the contract: images [N,H,W,3] uint8, masks [N,H,W] uint8, "
    "num_objects [N] int8 (missing key, wrong dtype, or shapes that do not match).",
    "Write the three arrays with matching N, H and W (`uncollapse build scenes` does).")
SCENE_NUM_OBJECTS_INVALID = Code(
    "SCENE_NUM_OBJECTS_INVALID", "error",
    "num_objects is below 1 for some scenes.",
    "Every scene holds 1..K objects; drop empty scenes or fix the counts.")
SCENE_MASK_LABEL_OUT_OF_RANGE = Code(
    "SCENE_MASK_LABEL_OUT_OF_RANGE", "error",
    "Masks hold object labels above the scene's num_objects.",
    "Renumber the objects 1..num_objects or correct num_objects.")
SCENE_OBJECT_INVISIBLE = Code(
    "SCENE_OBJECT_INVISIBLE", "error",
    "Objects counted in num_objects have fewer than --min-visible pixels in the mask "
    "(fully occluded or missing), so no slot can find them.",
    "Redraw those scenes or remove the hidden objects and lower num_objects.")


def validate_scenes(scenes: str | Path | dict, *, min_visible: int = 4,
                 target: str | None = None) -> Report:
    """Check a scene file (path) or its arrays (dict); returns a Report (kind ``scenes``)."""
    if not isinstance(scenes, dict):
        target = target or str(scenes)
        scenes = load_scenes(scenes)
    target = target or "<scenes>"
    problems = _schema_problems(scenes)
    if problems:
        return Report(target, "scenes", [SCENE_SCHEMA.finding(
            "; ".join(problems), count=len(problems), examples=problems)],
            {"keys": sorted(scenes)})

    masks, num_objects = scenes["masks"], scenes["num_objects"].astype(np.int64)
    n, height, width = masks.shape
    max_label = max(int(masks.max(initial=0)), int(num_objects.max(initial=0)))
    visible = np.concatenate([_label_pixels(masks[s:s + CHUNK], max_label)
                              for s in range(0, n, CHUNK)])  # [n, max_label+1]
    labels = np.arange(max_label + 1)
    present = visible > 0
    # labels above num_objects that occur in the mask
    above = present & (labels[None, :] > num_objects[:, None])
    # objects 1..num_objects with too few pixels
    counted = (labels[None, :] >= 1) & (labels[None, :] <= num_objects[:, None])
    hidden = counted & (visible < min_visible)

    findings = []
    empty = num_objects < 1
    if empty.any():
        findings.append(SCENE_NUM_OBJECTS_INVALID.finding(
            f"{int(empty.sum())} scenes have num_objects < 1", count=int(empty.sum()),
            examples=[{"scene": int(i), "num_objects": int(num_objects[i])}
                      for i in np.flatnonzero(empty)[:10]]))
    scenes_above = np.flatnonzero(above.any(axis=1))
    if len(scenes_above):
        findings.append(SCENE_MASK_LABEL_OUT_OF_RANGE.finding(
            f"{len(scenes_above)} scenes have mask labels above their num_objects",
            count=len(scenes_above),
            examples=[{"scene": int(i), "num_objects": int(num_objects[i]),
                       "max_label": int(np.flatnonzero(present[i]).max())}
                      for i in scenes_above[:10]]))
    if hidden.any():
        scene, label = np.nonzero(hidden)
        findings.append(SCENE_OBJECT_INVISIBLE.finding(
            f"{len(scene)} objects in {len(np.unique(scene))} scenes have fewer than "
            f"{min_visible} visible pixels", count=len(scene),
            examples=[{"scene": int(s), "object": int(o), "pixels": int(visible[s, o])}
                      for s, o in zip(scene[:10], label[:10], strict=True)]))

    object_pixels = np.where(counted, visible, 0)
    stats = {"scenes": n, "height": height, "width": width,
             "objects": int(num_objects.clip(min=0).sum()),
             "objects_per_scene": {str(k): int(c) for k, c in
                                   enumerate(np.bincount(num_objects.clip(min=0))) if c},
             "min_object_pixels": int(object_pixels[counted].min()) if counted.any() else 0,
             "foreground_share": round(float(1 - visible[:, 0].sum() / masks.size), 4)}
    return Report(target, "scenes", findings, stats)


def _label_pixels(masks: np.ndarray, max_label: int) -> np.ndarray:
    """[n, max_label+1] pixels of each label per scene."""
    n = len(masks)
    offsets = (np.arange(n, dtype=np.int64) * (max_label + 1))[:, None]
    flat = masks.reshape(n, -1).astype(np.int64) + offsets
    return np.bincount(flat.ravel(), minlength=n * (max_label + 1)).reshape(n, -1)


def _schema_problems(scenes: dict) -> list[str]:
    expected = {"images": (4, np.uint8), "masks": (3, np.uint8), "num_objects": (1, np.int8)}
    problems = []
    for key, (ndim, dtype) in expected.items():
        if key not in scenes:
            problems.append(f"missing key {key!r}")
            continue
        array = scenes[key]
        if array.ndim != ndim:
            problems.append(f"{key} has {array.ndim} dimensions {array.shape}, expected {ndim}")
        if array.dtype != dtype:
            problems.append(f"{key} is {array.dtype}, expected {np.dtype(dtype)}")
    if problems:
        return problems
    images, masks, num_objects = scenes["images"], scenes["masks"], scenes["num_objects"]
    if images.shape[-1] != 3:
        problems.append(f"images have {images.shape[-1]} channels, expected 3 (RGB)")
    if images.shape[:3] != masks.shape:
        problems.append(f"images {images.shape[:3]} and masks {masks.shape} differ in N, H or W")
    if len(num_objects) != len(masks):
        problems.append(f"{len(num_objects)} num_objects for {len(masks)} masks")
    if len(masks) == 0:
        problems.append("no scenes (N = 0); the file holds empty arrays")
    return problems
