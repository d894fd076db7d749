"""Procedural multi-object scenes with instance masks (docs/data-contracts.md, "Scene file"):
the source of the scene family.

Each scene is a background with 1..K flat-coloured shapes (circle, square, triangle, diamond)
of random position, size and colour. Shapes are painted in order, so later shapes occlude
earlier ones; ``masks`` holds, per pixel, the number (1..K) of the shape that is visible there,
0 for background. The image is painted from the mask, so image and mask always agree.

Every object keeps at least ``min_visible`` visible pixels: scenes where an occluded object
falls below that are drawn again; after a few rounds any object still hidden is removed and
the rest renumbered, with ``num_objects`` reduced to match (counted in ``SceneSet.redrawn`` and
``SceneSet.reduced``).

Generation is vectorised over scenes: one loop step per shape slot and kind, each a numpy
broadcast over every scene of a chunk.
"""

from __future__ import annotations

import os

import numpy as np

from uncollapse.data.scenes.contract import SceneSet
from uncollapse.errors import ToolError

__all__ = ["SHAPE_KINDS", "check_arguments", "generate_scenes", "physical_memory",
           "shape_radius_range", "smallest_shape_area"]

SHAPE_KINDS = ("circle", "square", "triangle", "diamond")
CHUNK = 512
REDRAW_ROUNDS = 8


def shape_radius_range(size: int) -> tuple[float, float]:
    """Smallest and largest shape half-extent (pixels) for images of ``size`` x ``size``."""
    return max(2.0, 0.08 * size), max(3.0, 0.2 * size)


def generate_scenes(num: int, size: int, max_objects: int, *, seed: int = 0,
                    min_objects: int = 1, min_visible: int = 4) -> SceneSet:
    """Draw ``num`` scenes of ``size`` x ``size`` pixels with ``min_objects..max_objects`` shapes.

    Args:
        num: number of scenes.
        size: image height and width in pixels (at least 8).
        max_objects: most shapes per scene (K, at most 255 so labels fit in uint8).
        seed: the result is a pure function of all arguments.
        min_objects: fewest shapes per scene (default 1).
        min_visible: every object keeps at least this many visible pixels.

    Example:
        >>> scenes = generate_scenes(100, 64, 5, seed=0)
        >>> scenes.images.shape, scenes.masks.max() <= 5
        ((100, 64, 64, 3), True)
    """
    check_arguments(num, size, max_objects, min_objects, min_visible)
    images = np.empty((num, size, size, 3), dtype=np.uint8)
    masks = np.empty((num, size, size), dtype=np.uint8)
    num_objects = np.empty(num, dtype=np.int8)
    redrawn = reduced = 0
    # each chunk has its own generator, so a chunk's scenes do not depend on the others
    for chunk, start in enumerate(range(0, num, CHUNK)):
        stop = min(start + CHUNK, num)
        rng = np.random.default_rng([seed, chunk])
        part = _draw_chunk(rng, stop - start, size, max_objects, min_objects, min_visible)
        images[start:stop], masks[start:stop], num_objects[start:stop] = part[:3]
        redrawn += part[3]
        reduced += part[4]
    return SceneSet(images, masks, num_objects, redrawn, reduced)


def check_arguments(num, size, max_objects, min_objects, min_visible) -> None:
    if num < 1:
        raise ToolError(f"num must be at least 1, got {num}")
    if size < 8:
        raise ToolError(f"size must be at least 8 pixels, got {size}")
    if not 1 <= min_objects <= max_objects <= 255:
        raise ToolError(f"need 1 <= min_objects ({min_objects}) <= max_objects "
                        f"({max_objects}) <= 255 (mask labels are uint8)")
    needed, memory = num * size * size * 4, physical_memory()
    if memory is not None and needed > memory:
        raise ToolError(f"{num} scenes of {size}x{size} need {needed / 2**30:.3g} GiB (RGB "
                        f"images and masks), more than the {memory / 2**30:.3g} GiB of memory "
                        f"here; lower num or size")
    smallest = smallest_shape_area(size)
    if not 1 <= min_visible <= smallest:
        raise ToolError(f"min_visible must be between 1 and {smallest} (the area of the "
                        f"smallest shape in {size}x{size} images), got {min_visible}")


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def smallest_shape_area(size: int) -> int:
    """Fewest pixels the smallest shape can cover at ``size``, over kinds and sub-pixel centres."""
    r_min, _ = shape_radius_range(size)
    grid = np.arange(-int(r_min) - 2, int(r_min) + 3, dtype=np.float32)
    shift = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    # every pair of sub-pixel centre offsets, as a batch of scenes
    sx, sy = np.meshgrid(shift, shift)
    dx = grid[None, None, :] - sx.reshape(-1, 1, 1)
    dy = grid[None, :, None] - sy.reshape(-1, 1, 1)
    radius = np.full((sx.size, 1, 1), r_min, dtype=np.float32)
    return int(min(_inside(kind, dx, dy, radius).sum(axis=(1, 2)).min()
                   for kind in range(len(SHAPE_KINDS))))


def _inside(kind: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Pixels inside a shape: ``dx`` [n,1,W] and ``dy`` [n,H,1] are offsets from its centre."""
    if kind == 0:  # circle
        return dx * dx + dy * dy <= r * r
    if kind == 1:  # square
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if kind == 2:  # triangle, apex up, base at dy = r
        return (np.abs(dy) <= r) & (2 * np.abs(dx) <= dy + r)
    return np.abs(dx) + np.abs(dy) <= r  # diamond


def _paint_masks(rng, n, size, max_objects, min_objects):
    """Masks and object counts of ``n`` fresh scenes, and the colours to paint them with."""
    counts = rng.integers(min_objects, max_objects + 1, size=n)
    r_min, r_max = shape_radius_range(size)
    radius = rng.uniform(r_min, r_max, size=(n, max_objects)).astype(np.float32)
    # centres keep the whole shape inside the image
    low, high = radius, size - 1 - radius
    cx = low + rng.random((n, max_objects), dtype=np.float32) * (high - low)
    cy = low + rng.random((n, max_objects), dtype=np.float32) * (high - low)
    kinds = rng.integers(0, len(SHAPE_KINDS), size=(n, max_objects))
    colours = np.empty((n, max_objects + 1, 3), dtype=np.uint8)
    colours[:, 0] = rng.integers(0, 48, size=(n, 3))       # dark background
    colours[:, 1:] = rng.integers(72, 256, size=(n, max_objects, 3))  # brighter objects

    # each shape is evaluated on a window around it, not on the whole image: the window is
    # wide enough for the largest shape and shifted inward at the borders
    window = min(size, 2 * int(np.ceil(r_max)) + 3)
    offsets = np.arange(window)
    x0 = np.clip(np.floor(cx).astype(np.int64) - (window - 1) // 2, 0, size - window)
    y0 = np.clip(np.floor(cy).astype(np.int64) - (window - 1) // 2, 0, size - window)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    flat_masks = masks.reshape(-1)
    for slot in range(max_objects):
        present = counts > slot
        for kind in range(len(SHAPE_KINDS)):
            idx = np.flatnonzero(present & (kinds[:, slot] == kind))
            if len(idx) == 0:
                continue
            xs = x0[idx, slot][:, None] + offsets          # [m, window] pixel columns
            ys = y0[idx, slot][:, None] + offsets          # [m, window] pixel rows
            dx = (xs - cx[idx, slot][:, None]).astype(np.float32)[:, None, :]
            dy = (ys - cy[idx, slot][:, None]).astype(np.float32)[:, :, None]
            inside = _inside(kind, dx, dy, radius[idx, slot][:, None, None])
            pixel = (idx[:, None, None] * size + ys[:, :, None]) * size + xs[:, None, :]
            flat_masks[pixel[inside]] = slot + 1
    return masks, counts, colours


def _visible_pixels(masks: np.ndarray, max_objects: int) -> np.ndarray:
    """[n, K+1] pixel count of each label (0 = background) per scene."""
    # one comparison pass per label beats a bincount over n*H*W int64 keys for small K
    flat = masks.reshape(len(masks), -1)
    return np.stack([(flat == label).sum(axis=1, dtype=np.int32)
                     for label in range(max_objects + 1)], axis=1)


def _hidden(masks, counts, max_objects, min_visible) -> np.ndarray:
    """[n, K] True where an object of the scene has fewer than ``min_visible`` pixels."""
    visible = _visible_pixels(masks, max_objects)[:, 1:]
    return (visible < min_visible) & (np.arange(max_objects) < counts[:, None])


def _draw_chunk(rng, n, size, max_objects, min_objects, min_visible):
    masks, counts, colours = _paint_masks(rng, n, size, max_objects, min_objects)
    hidden = _hidden(masks, counts, max_objects, min_visible)
    redrawn = 0
    for _ in range(REDRAW_ROUNDS):
        again = np.flatnonzero(hidden.any(axis=1))
        if len(again) == 0:
            break
        redrawn += len(again)
        masks[again], counts[again], colours[again] = _paint_masks(
            rng, len(again), size, max_objects, min_objects)
        hidden[again] = _hidden(masks[again], counts[again], max_objects, min_visible)
    reduced = int(hidden.any(axis=1).sum())
    if reduced:
        masks, counts = _drop_hidden(masks, counts, hidden)
    images = colours[np.arange(n)[:, None, None], masks]
    return images, masks, counts.astype(np.int8), redrawn, reduced


def _drop_hidden(masks, counts, hidden):
    """Remove hidden objects and renumber the rest 1..m in painting order."""
    n, k = hidden.shape
    kept = ~hidden & (np.arange(k) < counts[:, None])
    relabel = np.zeros((n, k + 1), dtype=np.uint8)
    relabel[:, 1:] = np.where(kept, np.cumsum(kept, axis=1), 0)
    masks = relabel[np.arange(n)[:, None, None], masks]
    return masks, kept.sum(axis=1)
