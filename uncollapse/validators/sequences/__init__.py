"""Checks of next-vector sequence files (NPZ, dense or compact): ``validate sequences``, its
rules in ``rules``."""

from uncollapse.validators.lazy import lazy_names

__all__ = ["validate_sequences"]

__getattr__, __dir__ = lazy_names(__name__, {"validate_sequences": "rules"})
