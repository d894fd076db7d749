"""Procedural multi-object scenes with instance masks, the source of scene files.

``generate`` draws the scenes, ``build`` writes them through the cache, ``cli`` holds
``uncollapse build scenes``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uncollapse.pipeline.scenes.build import build_scenes
    from uncollapse.pipeline.scenes.generate import (
        SHAPE_KINDS,
        generate_scenes,
        shape_radius_range,
        smallest_shape_area,
    )

__all__ = [
    "SHAPE_KINDS", "build_scenes", "generate_scenes", "shape_radius_range",
    "smallest_shape_area",
]

_MODULE_OF = {
    "build_scenes": "build", "SHAPE_KINDS": "generate", "generate_scenes": "generate",
    "shape_radius_range": "generate", "smallest_shape_area": "generate",
}


def __getattr__(name: str):
    # ``uncollapse`` imports this package for its command-line module only: the builders (and
    # polars, the cache) load when one of them is first used, so the command line starts fast
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
