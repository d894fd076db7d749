"""Progress bars for anything that can take more than a few seconds; ``quiet`` turns them off."""

from __future__ import annotations

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
