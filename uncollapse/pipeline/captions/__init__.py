"""Caption sources to the caption table (one row per caption, true ``image_id``/``match_id``).

The names below load on first use, so the command line can import this package's ``cli``
module without importing polars.
"""

from __future__ import annotations

import importlib

__all__ = ["FORMATS", "CaptionBuild", "build_captions", "detect_format", "read_captions"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("uncollapse.pipeline.captions.build"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
