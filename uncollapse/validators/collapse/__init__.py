"""Collapse diagnostics: metrics, ``diagnose_embeddings`` and training-time guards.

Names are imported on first use, so that importing this package (or its command line) does
not load torch.

- ``uncollapse.validators.collapse.metrics``: the metric functions (numpy or torch in, on any
  device; floats out).
- ``diagnose_embeddings(pred, targets=None, labels=None, groups=None) -> Report`` and its
  ``Thresholds``.
- ``CollapseMonitor`` (every N steps, measure a batch of outputs; raise or warn on a finding)
  and ``LossGuard`` (stop on a non-finite loss or a term below its lower bound).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "diagnose_embeddings": "diagnose", "Thresholds": "diagnose",
    "CollapseMonitor": "monitor", "CollapseError": "monitor", "CollapseWarning": "monitor",
    "LossGuard": "monitor", "LossGuardError": "monitor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
