"""The learning-rate schedule: linear warm-up, then cosine decay (a pure function of the step,
so a resumed run needs no scheduler state beyond its step)."""

from __future__ import annotations

import math


def learning_rate(step: int, *, peak: float, warmup_steps: int, total_steps: int,
                  min_ratio: float) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total_steps``.

    ``peak * (step + 1) / warmup_steps`` during warm-up, then a half cosine from ``peak`` down to
    ``peak * min_ratio`` at the last step.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    floor = peak * min_ratio
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))
