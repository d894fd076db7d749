"""The checks every build output passes before it may become a cache entry.

A builder that "succeeded" but left nothing, a link, or a table whose row count is not the one
it reports would otherwise be committed and served to every later build of the same key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from uncollapse.cache.integrity import MANIFEST
from uncollapse.errors import ToolError


def check_output(out_dir: Path, output) -> None:
    """Raise ToolError unless ``out_dir`` holds only regular files (at least one), every file
    named in ``output.rows`` exists, and each ``.parquet``/``.npy`` file among them holds the
    number of rows the builder reported."""
    files = []
    for folder, dirs, names in os.walk(out_dir):
        for name in dirs + names:
            path = Path(folder) / name
            mode = os.lstat(path).st_mode
            if not (stat.S_ISREG(mode) or (stat.S_ISDIR(mode) and name in dirs)):
                raise ToolError(f"the build left {path.relative_to(out_dir)}, which is not a "
                                "regular file (a link or a special file); nothing was cached")
            if stat.S_ISREG(mode):
                files.append(path.relative_to(out_dir).as_posix())
    if not files:
        raise ToolError("the build wrote no file; nothing was cached")
    if MANIFEST in files:
        raise ToolError(f"the build wrote {MANIFEST}, the name the cache keeps for its own "
                        "record of an entry; name the output otherwise (nothing was cached)")
    for name, rows in output.rows.items():
        if name not in files:
            raise ToolError(f"the build reports rows for {name}, which it did not write; "
                            "nothing was cached")
        if type(rows) is not int or rows < 0:
            raise ToolError(f"the build reports {rows!r} rows for {name}, not a count; "
                            "nothing was cached")
        stored = _stored_rows(out_dir / name)
        if stored is not None and stored != rows:
            raise ToolError(f"{name} holds {stored} rows but the build reports {rows}; "
                            "nothing was cached")


def _stored_rows(path: Path) -> int | None:
    """The row count a table or array file says it holds (None for other kinds)."""
    if path.suffix == ".parquet":
        import polars as pl

        return int(pl.scan_parquet(path).select(pl.len()).collect().item())
    if path.suffix == ".npy":
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return int(array.shape[0]) if array.ndim else None
    return None
