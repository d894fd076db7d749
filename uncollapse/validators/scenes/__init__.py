"""Checks of scene files (NPZ) for object-centric training: ``validate scenes``, its rules in
``rules``."""

from uncollapse.validators.lazy import lazy_names

__all__ = ["validate_scenes"]

__getattr__, __dir__ = lazy_names(__name__, {"validate_scenes": "rules"})
