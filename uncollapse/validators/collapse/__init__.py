"""Collapse diagnostics: metrics, ``diagnose_embeddings`` and training-time guards.

Needs torch (extra ``torch``): using a name of this package without it raises ``MissingExtra``
with the command that installs it. (Importing the package itself does not need torch: its
command, ``uncollapse diagnose embeddings``, is listed by ``uncollapse --help`` everywhere.)

- ``uncollapse.validators.collapse.metrics``: the metric functions (numpy or torch in, on any
  device; floats out).
- ``diagnose_embeddings(pred, targets=None, labels=None, groups=None) -> Report`` and its
  ``Thresholds``.
- ``CollapseMonitor`` (every N steps, measure a batch of outputs; raise or warn on a finding)
  and ``LossGuard`` (stop on a non-finite loss or a term below its lower bound).
"""

from uncollapse.extras import require
from uncollapse.validators.lazy import lazy_names

__all__ = ["CollapseError", "CollapseMonitor", "CollapseWarning", "LossGuard", "LossGuardError",
           "Thresholds", "diagnose_embeddings", "metrics"]

_lazy, __dir__ = lazy_names(__name__, {
    "metrics": "metrics", "Thresholds": "thresholds", "diagnose_embeddings": "diagnose",
    **dict.fromkeys(["CollapseError", "CollapseMonitor", "CollapseWarning", "LossGuard",
                     "LossGuardError"], "monitor")})


def __getattr__(name: str):
    if name in __all__:
        require("torch", "torch", "the collapse diagnostics")
    return _lazy(name)
