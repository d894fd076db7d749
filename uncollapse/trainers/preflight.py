"""Pre-flight checks: the trainer validates its inputs before the first step.

Caption tables get every rule of ``uncollapse validate captions`` where polars and pandera are
installed; on a GPU host without them (the training path needs only torch, numpy and pyarrow)
the grouping diagnosis of ``diagnose match-ids`` runs on the arrays instead, and the report's
``checks`` stat says which ran. Sequence files get ``validate sequences`` (numpy only).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from uncollapse.report import Report
from uncollapse.validators.match_ids import diagnose_match_id_array
from uncollapse.validators.sequences import validate_sequences

# relevant to uniformly random batches only; the trainers batch with GroupedBatchSampler
RANDOM_BATCH_CODES = {"FEW_POSITIVES_IN_RANDOM_BATCHES"}


def validate_caption_inputs(table: dict[str, np.ndarray], target: str, *,
                            batch_size: int) -> Report:
    """Check a caption table (its ``match_id``, ``image_id`` and ``split`` arrays)."""
    if importlib.util.find_spec("polars") and importlib.util.find_spec("pandera"):
        from uncollapse.validators.captions import validate_captions  # pandera: heavy, lazy

        report = validate_captions(target)
        report.stats["checks"] = "validate captions (every rule)"
        return report
    report = diagnose_match_id_array(table["match_id"], batch_size, target)
    report.findings = [f for f in report.findings if f.code not in RANDOM_BATCH_CODES]
    report.stats["checks"] = ("grouping only (diagnose match-ids): polars/pandera are not "
                              "installed here; run `uncollapse validate captions` for every rule")
    return report


def validate_sequence_inputs(path: str) -> Report:
    """``validate sequences`` on the sequence file."""
    report = validate_sequences(path)
    report.stats["checks"] = "validate sequences"
    return report
