"""Pre-flight checks: the trainer validates its inputs before the first step.

Caption tables get every rule of ``uncollapse validate captions`` where polars and pandera are
installed; on a GPU host without them (the training path needs only torch, numpy and pyarrow)
the grouping diagnosis of ``diagnose match-ids`` runs on the arrays instead, and the report's
``checks`` stat says which ran. Sequence files get ``validate sequences`` (numpy only). Feature
matrices (``.npy``) are read by ``load_features``, which refuses a non-finite row by its number.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from uncollapse.data.captions.contract import MATCH_ID
from uncollapse.data.npy import load_npy
from uncollapse.errors import InputError
from uncollapse.report import Report
from uncollapse.validators.captions.match_ids import diagnose_match_id_array
from uncollapse.validators.sequences import validate_sequences

__all__ = ["load_features", "validate_caption_inputs", "validate_sequence_inputs"]

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
    report = diagnose_match_id_array(table[MATCH_ID], batch_size, target)
    report.findings = [f for f in report.findings if f.code not in RANDOM_BATCH_CODES]
    report.stats["checks"] = ("grouping only (diagnose match-ids): polars/pandera are not "
                              "installed here; run `uncollapse validate captions` for every rule")
    return report


def validate_sequence_inputs(path: str) -> Report:
    """``validate sequences`` on the sequence file."""
    report = validate_sequences(path)
    report.stats["checks"] = "validate sequences"
    return report


def load_features(path: str | Path, rows: int | None, what: str) -> np.ndarray:
    """A float ``.npy`` feature matrix (never unpickled), checked against ``rows``."""
    path = Path(path)
    array = load_npy(path, mmap=True, what=what)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise InputError(path, f"{what} must be a float matrix [rows, dim], got "
                         f"{array.dtype} {array.shape}")
    if rows is not None and array.shape[0] != rows:
        raise InputError(path, f"{array.shape[0]} rows of {what} for {rows} rows of the caption "
                         "table: row i must be the features of table row i")
    for start in range(0, array.shape[0], 1 << 16):  # blockwise: the file may be memory-mapped
        finite = np.isfinite(array[start:start + (1 << 16)]).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise InputError(path, f"{what} row {row} holds a NaN or infinite value; every "
                             "feature must be finite (re-encode that row)")
    return array
