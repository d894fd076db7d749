"""The collapse doctor: from a run's artifacts and its data, the root cause and the fix.

``diagnose_run(run_dir)`` (or ``diagnose_run(metrics=..., captions=...)`` for a run of another
framework) returns a ``Report`` of kind ``doctor`` whose findings are the causes of
``CAUSES`` the evidence points at, most confident first, each with its evidence, the check
that rules it out and the fix; ``HEALTHY`` when none is found. Needs torch (extra ``torch``)
for the collapse checks of the outputs.

The names below load on first use, so the command line (``uncollapse.validators.doctor.cli``)
imports this package without pulling in torch or pandera.
"""

from uncollapse.validators.lazy import lazy_names

__all__ = ["CAUSES", "Cause", "Diagnosis", "diagnose_run", "summary_line"]

__getattr__, __dir__ = lazy_names(__name__, {
    "CAUSES": "causes", "Cause": "causes", "Diagnosis": "diagnose", "diagnose_run": "diagnose",
    "summary_line": "diagnose"})
