"""The slots run's figure for ``uncollapse report``: images, reconstructions and masks.

One row per held-out image the recipe kept (``images``, ``reconstructions``, ``masks``,
``true_masks`` of ``projection.npz``); columns: the image, its reconstruction, the true object
mask (background dark grey, objects coloured), the predicted mask (each pixel coloured by the
slot of the largest alpha), then one column per slot with that slot's alpha mask (black 0,
white 1). Slots that bind objects show one bright shape each; slots that all spread over the
whole image (grey everywhere) are the collapse that FG-ARI measures.

The report (``uncollapse.trainers.plots``) reads ``TITLE``, ``FIGURE``, ``check_arrays`` and
``figure`` of this module, as of every recipe's ``plots`` module.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

__all__ = ["FIGURE", "SLOTS_KEYS", "TITLE", "check_arrays", "figure", "grid_inches"]

TITLE = "Slots: images, reconstructions and masks"
FIGURE = "slots-grid"
CELL_INCHES = 1.2
TITLE_INCHES = 0.5
FIXED_COLUMNS = ("image", "reconstruction", "true mask", "predicted mask")
BACKGROUND = (0.25, 0.25, 0.25)
PALETTE = matplotlib.colormaps["tab10"].colors
SLOTS_KEYS = ("images", "reconstructions", "masks", "true_masks")


def check_arrays(arrays: dict) -> None:
    """Raise ``ValueError`` unless ``images`` [n, H, W, 3] uint8, ``reconstructions`` of the
    same shape, ``masks`` [n, K, H, W] and ``true_masks`` [n, H, W] fit together; the caller
    names the file."""
    missing = [key for key in SLOTS_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"has no {missing} array(s); expected the slots recipe's arrays "
                         f"({', '.join(SLOTS_KEYS)})")
    images = arrays["images"]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or not len(images):
        raise ValueError(f"images has shape {list(images.shape)} and dtype {images.dtype}; "
                         "expected [n >= 1, H, W, 3] uint8 as the slots recipe writes them")
    n, height, width, _ = images.shape
    masks = arrays["masks"]
    if masks.ndim != 4 or masks.shape[0] != n or masks.shape[2:] != (height, width):
        raise ValueError(f"masks has shape {list(masks.shape)}; expected "
                         f"[{n}, slots, {height}, {width}] to match images")
    for key, shape in (("reconstructions", images.shape), ("true_masks", (n, height, width))):
        if arrays[key].shape != shape:
            raise ValueError(f"{key} has shape {list(arrays[key].shape)}; expected "
                             f"{list(shape)} to match images")
    if not np.isfinite(masks).all():
        raise ValueError("masks holds non-finite values (NaN or inf); the run's "
                         "evaluation diverged, so there is nothing to show")


def grid_inches(rows: int, slots: int) -> tuple[float, float]:
    """(width, height) of the grid figure in inches: one square cell per panel plus a title."""
    return (len(FIXED_COLUMNS) + slots) * CELL_INCHES, rows * CELL_INCHES + TITLE_INCHES


def figure(arrays: dict, project=None, *, seed: int = 0) -> Figure:
    """The grid figure; see the module docstring for its rows and columns (``project`` and
    ``seed`` are unused: every kept image is shown)."""
    images, recon = arrays["images"], arrays["reconstructions"]
    masks, truth = arrays["masks"].astype(np.float64), arrays["true_masks"].astype(np.int64)
    rows, slots = masks.shape[:2]
    objects = ListedColormap([BACKGROUND, *[PALETTE[i % len(PALETTE)]
                                            for i in range(max(1, int(truth.max())))]])
    slot_colours = ListedColormap([PALETTE[i % len(PALETTE)] for i in range(slots)])
    width, height = grid_inches(rows, slots)
    drawing = Figure(figsize=(width, height))
    # fixed margins (a layout engine costs seconds on a grid of this many panels)
    axes = drawing.subplots(rows, len(FIXED_COLUMNS) + slots, squeeze=False, gridspec_kw={
        "left": 0.01, "right": 0.99, "bottom": 0.01, "top": 1 - TITLE_INCHES / height,
        "wspace": 0.08, "hspace": 0.08})
    for r in range(rows):
        panels = [(images[r], {}), (recon[r], {}),
                  (truth[r], {"cmap": objects, "vmin": 0, "vmax": objects.N - 1}),
                  (masks[r].argmax(axis=0), {"cmap": slot_colours, "vmin": 0,
                                             "vmax": slots - 1})]
        panels += [(masks[r, k], {"cmap": "gray", "vmin": 0.0, "vmax": 1.0})
                   for k in range(slots)]
        for c, (panel, style) in enumerate(panels):
            axes[r, c].imshow(panel, interpolation="nearest", **style)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    titles = [*FIXED_COLUMNS, *(f"slot {k + 1}" for k in range(slots))]
    for c, title in enumerate(titles):
        axes[0, c].set_title(title, fontsize=8)
    drawing.suptitle("held-out images, reconstructions and masks (alpha of each slot)",
                     fontsize=9, y=1 - 0.08 / height, va="top")
    return drawing
