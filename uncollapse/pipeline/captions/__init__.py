"""Caption sources to the caption table (one row per caption, true ``image_id``/``match_id``)."""

from uncollapse.pipeline.captions.build import (
    FORMATS,
    build_captions,
    detect_format,
    read_captions,
)

__all__ = ["FORMATS", "build_captions", "detect_format", "read_captions"]
