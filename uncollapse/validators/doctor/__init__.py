"""The collapse doctor: from a run's artifacts and its data, the root cause and the fix.

``diagnose_run(run_dir)`` (or ``diagnose_run(metrics=..., captions=...)`` for a run of another
framework) returns a ``Report`` of kind ``doctor`` whose findings are the causes of
``causes.CAUSES`` the evidence points at, most confident first, each with its evidence, the
check that rules it out and the fix; ``HEALTHY`` when none is found. Needs torch (extra
``torch``) for the collapse checks of the outputs.
"""

from uncollapse.validators.doctor.causes import CAUSES, Cause
from uncollapse.validators.doctor.diagnose import Diagnosis, diagnose_run, summary_line

__all__ = ["CAUSES", "Cause", "Diagnosis", "diagnose_run", "summary_line"]
