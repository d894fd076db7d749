"""Click types for numeric options, so an impossible value exits 2 before any work.

Every numeric option of every command is declared with one of these (a test walks the command
tree and fails on a plain ``int`` or ``float``). Click names the flag and the accepted range in
its message; floats also refuse NaN and infinity, which compare false to every bound and so
would slip through a plain ``FloatRange``.
"""

from __future__ import annotations

import math

import click

__all__ = [
    "Count", "FRACTION", "Finite", "MAX_COUNT", "MAX_EPOCHS", "MAX_WORLD_SIZE", "NON_NEGATIVE",
    "NON_NEGATIVE_INT", "POSITIVE", "SEED", "SHARE", "THRESHOLD_SHARE", "check_order", "count",
    "finite",
]


def _number(value):
    return None if value is None else str(value) if isinstance(value, int) else f"{value:g}"


class _Worded:
    """Range errors worded as the library words them: ``--steps must be at least 1, got 0``."""

    implicit_max = False
    """The maximum is :data:`MAX_COUNT`, not the option's own: errors and help name only the
    bound the value crossed."""

    def _range_words(self, number) -> str:
        low, high = self.min, self.max
        if self.implicit_max:
            if number > high:
                return f"at most {high} (a larger count cannot be held or run)"
            high = None
        low, high = _number(low), _number(high)  # 4294967295, not 4.29497e+09
        if high is None:
            return f"greater than {low}" if self.min_open else f"at least {low}"
        if low is None:
            return f"less than {high}" if self.max_open else f"at most {high}"
        return (f"in {'(' if self.min_open else '['}{low}, {high}"
                f"{')' if self.max_open else ']'}")

    def _describe_range(self) -> str:
        if not self.implicit_max:
            return super()._describe_range()
        return f"x{'>' if self.min_open else '>='}{self.min}"

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            number = click.FLOAT.convert(value, param, ctx) if isinstance(self, Finite) else \
                click.INT.convert(value, param, ctx)
            if not isinstance(self, Finite) or math.isfinite(number):
                flag = param.opts[0] if param is not None and param.opts else "the value"
                self.fail(f"{flag} must be {self._range_words(number)}, got {value}", param, ctx)
            raise exc


class Count(_Worded, click.IntRange):
    """An ``IntRange`` whose error reads like the rest of the tool's."""


class Finite(_Worded, click.FloatRange):
    """A ``FloatRange`` that also refuses NaN and +-inf."""

    name = "float"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; give a number such as "
                      f"{param.default if param is not None and param.default else 1}",
                      param, ctx)
        return super().convert(number, param, ctx)


MAX_COUNT = 2**31 - 1
"""The largest value of a count that names no maximum of its own. Counts become array sizes,
loop bounds and tensor shapes; 2**63 overflows a C long (or torch's size) deep inside a run."""


def count(minimum: int = 1, maximum: int | None = None) -> Count:
    """An integer of at least ``minimum`` (a size, a number of rows, steps or batches) and at
    most ``maximum`` (:data:`MAX_COUNT` when not given)."""
    kind = Count(min=minimum, max=MAX_COUNT if maximum is None else maximum)
    kind.implicit_max = maximum is None
    return kind


def finite(minimum: float | None = None, maximum: float | None = None, *,
           min_open: bool = False, max_open: bool = False) -> Finite:
    """A finite float, optionally within ``[minimum, maximum]`` (open ends when asked)."""
    return Finite(min=minimum, max=maximum, min_open=min_open, max_open=max_open)


SEED = count(0, 2**32 - 1)
"""numpy's and torch's seeds: 0 .. 2**32-1."""

NON_NEGATIVE_INT = count(0)
POSITIVE = finite(0.0, min_open=True)
NON_NEGATIVE = finite(0.0)
SHARE = finite(0.0, 1.0)
THRESHOLD_SHARE = finite(0.0, 1.0, min_open=True)
"""A share that fires a finding "at least this share": 0 would always fire."""
FRACTION = finite(0.0, 1.0, max_open=True)
"""A share of rows held out: 1 would leave nothing to train on."""


MAX_WORLD_SIZE = 1 << 16
"""Ranks a replay simulates: one sampler object each, so 10**12 would never finish."""
MAX_EPOCHS = 1000
"""Epochs a replay audits, each a full pass over the table."""


def check_order(low_flag: str, low, high_flag: str, high) -> None:
    """Refuse ``low > high`` (exit 2), naming both flags."""
    if low is not None and high is not None and low > high:
        raise click.UsageError(f"{high_flag} ({high}) must be >= {low_flag} ({low}); give "
                               f"{low_flag} <= {high_flag}")
