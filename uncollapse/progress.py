"""Progress bars and spinners for anything that can take more than a few seconds.

Both draw on stderr (the report owns stdout), only when stderr is a terminal: a pipe or a CI
log gets no carriage-return redraws and no escape codes. ``quiet`` turns them off everywhere.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from uncollapse.report import text_console

__all__ = ["progress", "status"]

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "",
             quiet: bool = False) -> Iterator[T]:
    """Iterate over ``items`` with a tqdm bar on stderr unless ``quiet`` or not a terminal."""
    if quiet or not sys.stderr.isatty():
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, total=total, desc=desc, leave=False, dynamic_ncols=True,
                    file=sys.stderr)


@contextlib.contextmanager
def status(message: str, *, quiet: bool = False):
    """A spinner on stderr while a single long step runs (nothing when quiet or not a terminal)."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    with text_console(stderr=True).status(message):
        yield
