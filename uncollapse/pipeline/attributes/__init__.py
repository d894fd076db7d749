"""Attribute sources (CelebA text files, CSV, Parquet) to the attribute table.

``celeba_text`` and ``table_sources`` read the sources, ``side_files`` joins CelebA's identity
and partition files, ``values`` turns -1/1 or 0/1 into 0/1, ``codes`` names what can be
irregular, ``build`` reads through the cache, ``cli`` holds ``uncollapse build attributes``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uncollapse.pipeline.attributes.build import build_attributes, read_attributes

__all__ = ["build_attributes", "read_attributes"]

_MODULE_OF = {"build_attributes": "build", "read_attributes": "build"}


def __getattr__(name: str):
    # ``uncollapse`` imports this package for its command-line module only: the builders (and
    # polars, the cache) load when one of them is first used, so the command line starts fast
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
