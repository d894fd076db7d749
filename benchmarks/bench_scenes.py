"""Scene generation speed: 10,000 scenes of 64x64 with up to 6 shapes and instance masks.

Run: .venv/bin/python benchmarks/bench_scenes.py [--num 10000] [--repeats 3]
Target: under 10 s for 10,000 scenes. The peer is the usual way to write such a generator: a
Python loop over scenes that paints each shape with numpy on one H x W grid (same shapes, same
visibility rule), timed in the same process.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
from timing import median_time

from uncollapse.data.scenes.contract import save_scenes
from uncollapse.pipeline.scenes.generate import (
    SHAPE_KINDS,
    _inside,
    generate_scenes,
    shape_radius_range,
)
from uncollapse.validators.scenes import validate_scenes


def per_scene_loop(num: int, size: int, max_objects: int, seed: int, min_visible: int = 4):
    """The peer: one scene at a time, one shape at a time, redrawing a scene until every
    object keeps ``min_visible`` pixels."""
    rng = np.random.default_rng(seed)
    r_min, r_max = shape_radius_range(size)
    grid = np.arange(size, dtype=np.float32)
    images = np.empty((num, size, size, 3), dtype=np.uint8)
    masks = np.empty((num, size, size), dtype=np.uint8)
    counts = np.empty(num, dtype=np.int8)
    for i in range(num):
        while True:
            k = int(rng.integers(1, max_objects + 1))
            mask = np.zeros((size, size), dtype=np.uint8)
            colours = rng.integers(72, 256, size=(k + 1, 3)).astype(np.uint8)
            colours[0] = rng.integers(0, 48, size=3)
            for slot in range(k):
                r = rng.uniform(r_min, r_max)
                cx, cy = rng.uniform(r, size - 1 - r, size=2)
                kind = int(rng.integers(len(SHAPE_KINDS)))
                inside = _inside(kind, (grid - cx)[None, None, :], (grid - cy)[None, :, None],
                                 np.float32(r))[0]
                mask[inside] = slot + 1
            if (np.bincount(mask.ravel(), minlength=k + 1)[1:] >= min_visible).all():
                break
        masks[i], counts[i], images[i] = mask, k, colours[mask]
    return images, masks, counts




def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--max-objects", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{platform.machine()} {platform.python_version()} numpy {np.__version__}; "
          f"{args.num} scenes {args.size}x{args.size}, 1-{args.max_objects} objects, "
          f"median of {args.repeats}")

    gen_s, scenes = median_time(lambda: generate_scenes(args.num, args.size, args.max_objects,
                                                  seed=0), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenes.npz"
        save_s, _ = median_time(lambda: save_scenes(scenes, path), args.repeats)
        raw_s, _ = median_time(lambda: save_scenes(scenes, Path(tmp) / "raw.npz", compress=False),
                         args.repeats)
        megabytes = path.stat().st_size / 1e6
        raw_megabytes = (Path(tmp) / "raw.npz").stat().st_size / 1e6
        check_s, report = median_time(lambda: validate_scenes(path), args.repeats)
    loop_s, (_, loop_masks, loop_counts) = median_time(
        lambda: per_scene_loop(args.num, args.size, args.max_objects, seed=0), args.repeats)

    rows = [
        ("generate_scenes (vectorised per shape slot)", gen_s,
         f"{int(scenes.num_objects.sum())} objects; redrawn {scenes.redrawn}, "
         f"reduced {scenes.reduced}"),
        ("per-scene Python loop (peer)", loop_s, f"{int(loop_counts.sum())} objects"),
        ("save_scenes, compressed NPZ", save_s, f"{megabytes:.1f} MB"),
        ("save_scenes, uncompressed NPZ", raw_s, f"{raw_megabytes:.1f} MB"),
        ("validate_scenes (validate scenes)", check_s,
         "ok" if report.ok else ",".join(report.codes())),
    ]
    print("| step | seconds | notes |\n|---|---:|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {seconds:.2f} | {note} |")
    print(f"speed-up of generation over the per-scene loop: {loop_s / gen_s:.1f}x "
          f"(peer masks {loop_masks.shape})")


if __name__ == "__main__":
    main()
