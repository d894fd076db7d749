"""The rules of a scene NPZ (docs/data-contracts.md, "Scene file") for object-centric training.

Each rule is declared once with its finding code (``RULES``): the keys, dtypes and shapes of
the contract; masks whose labels agree with ``num_objects`` (no label above it, none of
1..num_objects missing); every object visible with at least ``min_visible`` pixels.
``validate_scenes`` applies them in order; the pixels of each label are counted once, vectorised
over scenes in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uncollapse.data.scenes.contract import IMAGES, MASKS, NUM_OBJECTS, load_scenes
from uncollapse.report import Code, Report
from uncollapse.validators.rules import Failed, Rules, Run

__all__ = ["RULES", "SceneMeasurements", "validate_scenes"]

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


@dataclass
class SceneMeasurements:
    """The pixels of every label in every scene, counted once for the rules.

    ``visible[i, k]`` is the pixels of label ``k`` in scene ``i`` (label 0 is background);
    ``counted[i, k]``: label ``k`` is one of scene ``i``'s objects (1..num_objects).
    """

    masks: np.ndarray
    num_objects: np.ndarray
    visible: np.ndarray
    counted: np.ndarray

    @classmethod
    def of(cls, scenes: dict) -> SceneMeasurements:
        masks, num_objects = scenes[MASKS], scenes[NUM_OBJECTS].astype(np.int64)
        max_label = max(int(masks.max(initial=0)), int(num_objects.max(initial=0)))
        visible = np.concatenate([_label_pixels(masks[s:s + CHUNK], max_label)
                                  for s in range(0, len(masks), CHUNK)])  # [n, max_label+1]
        labels = np.arange(max_label + 1)
        counted = (labels[None, :] >= 1) & (labels[None, :] <= num_objects[:, None])
        return cls(masks, num_objects, visible, counted)

    def stats(self) -> dict:
        n, height, width = self.masks.shape
        num_objects, visible, counted = self.num_objects, self.visible, self.counted
        object_pixels = np.where(counted, visible, 0)
        return {"scenes": n, "height": height, "width": width,
                "objects": int(num_objects.clip(min=0).sum()),
                "objects_per_scene": {str(k): int(c) for k, c in
                                      enumerate(np.bincount(num_objects.clip(min=0))) if c},
                "min_object_pixels": int(object_pixels[counted].min()) if counted.any() else 0,
                "foreground_share": round(float(1 - visible[:, 0].sum() / self.masks.size), 4)}


def _label_pixels(masks: np.ndarray, max_label: int) -> np.ndarray:
    """[n, max_label+1] pixels of each label per scene."""
    n = len(masks)
    offsets = (np.arange(n, dtype=np.int64) * (max_label + 1))[:, None]
    flat = masks.reshape(n, -1).astype(np.int64) + offsets
    return np.bincount(flat.ravel(), minlength=n * (max_label + 1)).reshape(n, -1)


RULES = Rules()
"""The scene file rules, in the order their findings are listed."""


@RULES.rule(SCENE_SCHEMA)
def scene_file_fits_the_contract(scenes: dict) -> Failed | None:
    """The three arrays, with their dtypes, dimensions and matching N, H and W; N > 0."""
    expected = {IMAGES: (4, np.uint8), MASKS: (3, np.uint8), NUM_OBJECTS: (1, np.int8)}
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
    if not problems:
        images, masks, num_objects = scenes[IMAGES], scenes[MASKS], scenes[NUM_OBJECTS]
        if images.shape[-1] != 3:
            problems.append(f"{IMAGES} have {images.shape[-1]} channels, expected 3 (RGB)")
        if images.shape[:3] != masks.shape:
            problems.append(f"{IMAGES} {images.shape[:3]} and {MASKS} {masks.shape} differ in "
                            "N, H or W")
        if len(num_objects) != len(masks):
            problems.append(f"{len(num_objects)} {NUM_OBJECTS} for {len(masks)} {MASKS}")
        if len(masks) == 0:
            problems.append("no scenes (N = 0); the file holds empty arrays")
    if not problems:
        return None
    return Failed("; ".join(problems), count=len(problems), examples=problems)


@RULES.rule(SCENE_NUM_OBJECTS_INVALID)
def scenes_hold_objects(m: SceneMeasurements) -> Failed | None:
    """Every scene holds at least one object."""
    empty = m.num_objects < 1
    if not empty.any():
        return None
    return Failed(f"{int(empty.sum())} scenes have {NUM_OBJECTS} < 1", count=int(empty.sum()),
                  examples=[{"scene": int(i), NUM_OBJECTS: int(m.num_objects[i])}
                            for i in np.flatnonzero(empty)[:10]])


@RULES.rule(SCENE_MASK_LABEL_OUT_OF_RANGE)
def mask_labels_within_num_objects(m: SceneMeasurements) -> Failed | None:
    """No mask label above the scene's num_objects."""
    present = m.visible > 0
    labels = np.arange(m.visible.shape[1])
    above = np.flatnonzero((present & (labels[None, :] > m.num_objects[:, None])).any(axis=1))
    if not len(above):
        return None
    return Failed(f"{len(above)} scenes have mask labels above their {NUM_OBJECTS}",
                  count=len(above),
                  examples=[{"scene": int(i), NUM_OBJECTS: int(m.num_objects[i]),
                             "max_label": int(np.flatnonzero(present[i]).max())}
                            for i in above[:10]])


@RULES.rule(SCENE_OBJECT_INVISIBLE)
def objects_are_visible(m: SceneMeasurements, min_visible: int) -> Failed | None:
    """Every object 1..num_objects has at least ``min_visible`` pixels."""
    hidden = m.counted & (m.visible < min_visible)
    if not hidden.any():
        return None
    scene, label = np.nonzero(hidden)
    return Failed(f"{len(scene)} objects in {len(np.unique(scene))} scenes have fewer than "
                  f"{min_visible} visible pixels", count=len(scene),
                  examples=[{"scene": int(s), "object": int(o), "pixels": int(m.visible[s, o])}
                            for s, o in zip(scene[:10], label[:10], strict=True)])


def validate_scenes(scenes: str | Path | dict, *, min_visible: int = 4,
                    target: str | None = None) -> Report:
    """Check a scene file (path) or its arrays (dict); returns a Report (kind ``scenes``)."""
    if not isinstance(scenes, dict):
        target = target or str(scenes)
        scenes = load_scenes(scenes)
    target = target or "<scenes>"
    run = Run()
    if not run.check(scene_file_fits_the_contract, scenes):
        return Report(target, "scenes", run.findings, {"keys": sorted(scenes)})
    m = SceneMeasurements.of(scenes)
    run.check(scenes_hold_objects, m)
    run.check(mask_labels_within_num_objects, m)
    run.check(objects_are_visible, m, min_visible)
    return Report(target, "scenes", run.findings, m.stats())
