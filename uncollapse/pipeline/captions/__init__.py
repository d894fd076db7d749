"""Caption sources to the caption table (one row per caption, true ``image_id``/``match_id``).

Sources: ``hf`` (the nlphuji/flickr30k layout), ``json_sources`` (COCO, Karpathy), ``lines``
(Flickr token files, the Flickr30k CSV); ``assemble`` turns their rows into the table, ``build``
reads any of them through the cache, ``cli`` holds ``uncollapse build captions``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uncollapse.pipeline.captions.build import (
        FORMATS,
        build_captions,
        detect_format,
        read_captions,
    )

__all__ = ["FORMATS", "build_captions", "detect_format", "read_captions"]

_MODULE_OF = {
    "FORMATS": "build", "build_captions": "build", "detect_format": "build", "read_captions":
    "build",
}


def __getattr__(name: str):
    # ``uncollapse`` imports this package for its command-line module only: the builders (and
    # polars, the cache) load when one of them is first used, so the command line starts fast
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
