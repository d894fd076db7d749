"""Corpora to chunk tables, and chunk tables plus vectors to next-vector sequence files.

``corpus`` reads a corpus into the chunk table, ``encode`` embeds chunk texts, ``sequence_file``
cuts the windows and writes the NPZ, ``build`` runs each step through the cache, ``cli`` holds
``uncollapse build chunks`` and ``uncollapse build sequences``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uncollapse.pipeline.sequences.build import build_chunks, build_sequences, encode_chunks
    from uncollapse.pipeline.sequences.corpus import read_chunks

__all__ = ["build_chunks", "build_sequences", "encode_chunks", "read_chunks"]

_MODULE_OF = {
    "build_chunks": "build", "build_sequences": "build", "encode_chunks": "build",
    "read_chunks": "corpus",
}


def __getattr__(name: str):
    # ``uncollapse`` imports this package for its command-line module only: the builders (and
    # polars, the cache) load when one of them is first used, so the command line starts fast
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
