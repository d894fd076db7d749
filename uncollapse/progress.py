"""Progress bars for anything that can take more than a few seconds; ``quiet`` turns them off."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "",
             quiet: bool = False) -> Iterator[T]:
    """Iterate over ``items`` with a tqdm bar on stderr unless ``quiet``."""
    if quiet:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, total=total, desc=desc, leave=False, dynamic_ncols=True)


@contextlib.contextmanager
def status(message: str, *, quiet: bool = False):
    """A spinner on stderr while a single long step runs (nothing when quiet or not a terminal)."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield
