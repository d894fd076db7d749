"""Collapse diagnostics: metrics, ``diagnose_embeddings`` and training-time guards.

Needs torch (extra ``torch``): importing this package without it raises ``MissingExtra``
with the command that installs it.

- ``uncollapse.validators.collapse.metrics``: the metric functions (numpy or torch in, on any
  device; floats out).
- ``diagnose_embeddings(pred, targets=None, labels=None, groups=None) -> Report`` and its
  ``Thresholds``.
- ``CollapseMonitor`` (every N steps, measure a batch of outputs; raise or warn on a finding)
  and ``LossGuard`` (stop on a non-finite loss or a term below its lower bound).
"""

from uncollapse.extras import require

require("torch", "torch", "the collapse diagnostics")

from uncollapse.validators.collapse import metrics  # noqa: E402
from uncollapse.validators.collapse.diagnose import Thresholds, diagnose_embeddings  # noqa: E402
from uncollapse.validators.collapse.monitor import (  # noqa: E402
    CollapseError,
    CollapseMonitor,
    CollapseWarning,
    LossGuard,
    LossGuardError,
)

__all__ = ["CollapseError", "CollapseMonitor", "CollapseWarning", "LossGuard", "LossGuardError",
           "Thresholds", "diagnose_embeddings", "metrics"]
