"""Training-time guards: ``CollapseMonitor`` (every N steps) and ``LossGuard`` (every step).

A trainer calls both from its loop::

    monitor = CollapseMonitor(every=200, on_finding="raise")   # no verdict before step 1000
    guard = LossGuard({"diversity": 0.0})
    for step, batch in enumerate(loader):
        outputs, targets = model(batch), batch.targets
        loss, terms = loss_fn(outputs, targets)          # terms: {"mse": ..., "diversity": ...}
        guard(step, loss=loss, **terms)                  # stops a broken run at once
        log(monitor(step, outputs, targets))             # {} on steps it skips
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import torch

from uncollapse.report import Report
from uncollapse.validators.collapse import metrics
from uncollapse.validators.collapse.diagnose import diagnose_embeddings
from uncollapse.validators.collapse.thresholds import Thresholds

__all__ = ["CollapseError", "CollapseMonitor", "CollapseWarning", "LossGuard", "LossGuardError"]


class CollapseError(RuntimeError):
    """A collapse finding during training. ``step``, ``report`` and ``codes`` say which."""

    def __init__(self, step: int, report: Report, findings: list):
        self.step, self.report = step, report
        self.codes = [f.code for f in findings]
        details = "; ".join(f"{f.code}: {f.message}" for f in findings)
        super().__init__(f"step {step}: collapse detected: {details}")


class CollapseWarning(UserWarning):
    """Issued instead of ``CollapseError`` by a monitor with ``on_finding="warn"``."""


class CollapseMonitor:
    """Measure a batch of outputs every ``every`` steps; raise or warn on a collapse finding.

    Args:
        every: measure on steps that are multiples of ``every`` (step 0 included).
        warmup: no verdict before this step (default 1000): an untrained model's outputs sit
            near their mean vector, which is a collapse finding at step 0. Checks during the
            warm-up are still measured and recorded (``history``, ``last_report``, the returned
            metrics); they only do not raise or warn. ``warmup=0`` judges from the first check.
        on_finding: ``"raise"`` (``CollapseError``) or ``"warn"`` (``CollapseWarning``).
        severities: finding severities that trigger it (default errors only; add
            ``"warning"`` to act on MOMENT_MISMATCH too).
        thresholds: ``Thresholds`` for ``diagnose_embeddings``.
        max_samples: row cap of the all-pairs metrics per check.
        seed: seed of the row subsets (combined with the step, so each check is reproducible).

    Calling the monitor (or ``update``) returns the measured metrics as a flat dict of floats
    (``{}`` on skipped steps); ``last_report`` holds the full report of the latest check and
    ``history`` the ``(step, metrics)`` of every check. Outputs are measured under
    ``torch.no_grad`` on their own device.

    Example:
        >>> monitor = CollapseMonitor(every=100, warmup=500, on_finding="warn")
        >>> metrics = monitor(step, outputs, targets)   # {"effective_rank": ..., ...}
    """

    def __init__(self, every: int = 100, *, warmup: int = 1000, on_finding: str = "raise",
                 severities: tuple[str, ...] = ("error",), thresholds: Thresholds | None = None,
                 max_samples: int | None = 2048, seed: int = 0):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        if warmup < 0:
            raise ValueError(f"warmup must be a step >= 0, got {warmup}")
        if on_finding not in ("raise", "warn"):
            raise ValueError(f"on_finding must be 'raise' or 'warn', got {on_finding!r}")
        self.every, self.warmup = every, warmup
        self.on_finding, self.severities = on_finding, tuple(severities)
        self.thresholds = thresholds or Thresholds()
        self.max_samples, self.seed = max_samples, seed
        self.last_report: Report | None = None
        self.history: list[tuple[int, dict]] = []

    def due(self, step: int) -> bool:
        """Whether ``update`` measures at this step."""
        return step % self.every == 0

    def update(self, step: int, outputs, targets=None, labels=None, groups=None) -> dict:
        """Measure ``outputs`` (and ``targets``) if the step is due; see the class docstring."""
        if not self.due(step):
            return {}
        with torch.no_grad():
            report = diagnose_embeddings(outputs, targets, labels, groups,
                                         thresholds=self.thresholds, max_samples=self.max_samples,
                                         seed=self.seed + step, target=f"step {step}")
        self.last_report = report
        values = {key: float(value) for key, value in report.stats.items()
                  if isinstance(value, (int, float)) and not isinstance(value, bool)}
        self.history.append((step, values))
        triggered = [f for f in report.findings if f.severity in self.severities]
        if triggered and step >= self.warmup:
            error = CollapseError(step, report, triggered)
            if self.on_finding == "raise":
                raise error
            warnings.warn(str(error), CollapseWarning, stacklevel=2)
        return values

    __call__ = update


class LossGuardError(RuntimeError):
    """A loss term that cannot be right: non-finite, or below its declared lower bound.

    ``term``, ``step``, ``value`` and ``bound`` (None for a non-finite value) say which.
    """

    def __init__(self, term: str, step: int, value: float, bound: float | None):
        self.term, self.step, self.value, self.bound = term, step, value, bound
        if bound is None:
            message = (f"step {step}: loss term {term!r} is {value} (not finite); stop and "
                       "find the first step where it diverged (learning rate, fp16 overflow, "
                       "a division by a norm that can be zero)")
        else:
            message = (f"step {step}: loss term {term!r} = {value:.6g} is below its lower bound "
                       f"{bound:g}; the term cannot go there when computed correctly (a missing "
                       "clamp, a sign error, or a wrong reduction), so the run is broken")
        super().__init__(message)


class LossGuard:
    """Stop a run on a non-finite loss term or a term below its declared lower bound.

    Args:
        lower_bounds: ``{term: bound}``, e.g. ``{"diversity": 0.0}`` for a clamped diversity
            loss that cannot be negative. Terms not named here are only checked for being
            finite.
        tolerance: slack below a bound for rounding (default 1e-6).
        every: check on steps that are multiples of this (each check synchronises once
            with the device to read the values).

    Call it with the step and the terms as keyword arguments (floats or 0-dim tensors on any
    device); it returns None or raises ``LossGuardError`` naming the term, step and value.

    Example:
        >>> guard = LossGuard({"diversity": 0.0})
        >>> guard(step, loss=loss, diversity=diversity_term)
    """

    def __init__(self, lower_bounds: Mapping[str, float] | None = None, *,
                 tolerance: float = 1e-6, every: int = 1):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.lower_bounds = dict(lower_bounds or {})
        self.tolerance, self.every = tolerance, every

    def check(self, step: int, **terms) -> None:
        """Raise ``LossGuardError`` if a term is non-finite or below its bound at this step."""
        if not terms or step % self.every:
            return
        names = list(terms)
        values = _read_all(list(terms.values()))
        for name, value in zip(names, values, strict=True):
            if not math.isfinite(value):
                raise LossGuardError(name, step, value, None)
        for name, value in zip(names, values, strict=True):
            bound = self.lower_bounds.get(name)
            if bound is not None and value < bound - self.tolerance:
                raise LossGuardError(name, step, value, bound)

    __call__ = check


def _read_all(values: list) -> list[float]:
    """The scalar values, read from their device with one synchronisation."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    for value in tensors:
        if value.numel() != 1:
            raise ValueError(f"loss terms must be scalars, got shape {tuple(value.shape)}")
    if not tensors:
        return [float(v) for v in values]
    device = tensors[0].device
    stacked = torch.stack([metrics.as_tensor(v).reshape(()).to(device, torch.float64)
                           if isinstance(v, torch.Tensor)
                           else torch.tensor(float(v), dtype=torch.float64, device=device)
                           for v in values])
    return stacked.cpu().tolist()
