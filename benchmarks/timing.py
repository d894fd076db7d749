"""The one timing helper the benchmark scripts share."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable, repeats: int = 3, *, warmup: bool = False,
                synchronize: Callable[[], None] | None = None) -> tuple[float, object]:
    """Median wall-clock seconds of ``repeats`` calls of ``fn``, and the last call's result.

    ``warmup`` runs one untimed call first; ``synchronize`` (e.g. ``torch.cuda.synchronize``)
    runs after every call so asynchronous device work is inside the timing.
    """
    result = None
    if warmup:
        result = fn()
        if synchronize:
            synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        if synchronize:
            synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result
