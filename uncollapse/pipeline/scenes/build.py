"""``build_scenes``: generated scenes written as a scene file, through the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uncollapse.cache.store import BuildOutput, Cache, Stage
from uncollapse.data.scenes.contract import IMAGES, MASKS, NUM_OBJECTS, save_scenes
from uncollapse.pipeline.result import Built, built_from, with_report
from uncollapse.pipeline.scenes.generate import check_arguments, generate_scenes
from uncollapse.report import Report

__all__ = ["SCENES_FILE", "SCENES_STAGE", "build_scenes"]

SCENES_FILE = "scenes.npz"
SCENES_STAGE = Stage("scenes", 2, ("uncollapse.pipeline.scenes.build",))


def build_scenes(num: int, size: int, max_objects: int, *, seed: int = 0,
                 min_objects: int = 1, min_visible: int = 4, compress: bool = True,
                 cache: Cache | None = None, rebuild: bool = False) -> Built:
    """``generate_scenes`` + ``save_scenes`` through the cache.

    ``built.path`` is the NPZ; ``built.report.stats`` counts the scenes, the objects, and the
    scenes redrawn or reduced by the visibility rule.

    Example:
        >>> built = build_scenes(1000, 64, 6, seed=0)
        >>> built.report.stats["objects_per_scene"]
    """
    check_arguments(num, size, max_objects, min_objects, min_visible)
    options = {"num": num, "size": size, "max_objects": max_objects, "seed": seed,
               "min_objects": min_objects, "min_visible": min_visible, "compress": compress}

    def builder(out_dir: Path) -> BuildOutput:
        scenes = generate_scenes(num, size, max_objects, seed=seed, min_objects=min_objects,
                                 min_visible=min_visible)
        save_scenes(scenes, out_dir / SCENES_FILE, compress=compress)
        histogram = np.bincount(scenes.num_objects, minlength=max_objects + 1)
        stats = {"scenes": len(scenes), "objects": int(scenes.num_objects.sum()),
                 "objects_per_scene": {str(k): int(c) for k, c in enumerate(histogram) if c},
                 "redrawn_scenes": scenes.redrawn, "reduced_scenes": scenes.reduced}
        output = BuildOutput(
            rows={SCENES_FILE: len(scenes)},
            schema={IMAGES: f"[{num}, {size}, {size}, 3] uint8",
                    MASKS: f"[{num}, {size}, {size}] uint8", NUM_OBJECTS: f"[{num}] int8"})
        return with_report(output, Report(f"{num} scenes, {size}x{size}, seed {seed}",
                                          "build scenes", [], stats))

    entry = (cache or Cache()).build(SCENES_STAGE, options=options, inputs={}, builder=builder,
                                     rebuild=rebuild)
    return built_from(entry, SCENES_FILE)
