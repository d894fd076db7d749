"""Every check of the rest of the library the doctor runs, behind one import each.

The doctor gathers its evidence from the library's own checks: the caption, sequence,
attribute and scene validators, the random-batch simulation of ``diagnose match-ids``, the
flip audit, the collapse diagnostics of ``diagnose embeddings`` and the hard-negative draw of
the sequence datasets. This module is the one place that imports them, so a module that moves
is fixed here and nowhere else; each function returns plain numbers and reports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uncollapse.data.captions.contract import MATCH_ID
from uncollapse.data.captions.table import read_caption_table
from uncollapse.data.npy import load_npy
from uncollapse.data.npz import open_npz
from uncollapse.data.sequences.contract import sample_doc_ids
from uncollapse.data.sequences.hard_negatives import HardNegativeSequenceDataset
from uncollapse.errors import ToolError
from uncollapse.report import Report
from uncollapse.validators.attributes.flips import audit_flips
from uncollapse.validators.attributes.rules import validate_attributes
from uncollapse.validators.captions import validate_captions
from uncollapse.validators.captions.match_ids import diagnose_match_id_array
from uncollapse.validators.captions.rules import SPLIT_LEAKAGE
from uncollapse.validators.collapse.diagnose import (
    DIMENSIONAL_COLLAPSE,
    MEAN_VECTOR_COLLAPSE,
    SLOTS_IDENTICAL,
    diagnose_embeddings,
)
from uncollapse.validators.collapse.metrics import effective_rank
from uncollapse.validators.scenes.rules import validate_scenes
from uncollapse.validators.sequences.rules import validate_sequences

__all__ = ["DIMENSIONAL_COLLAPSE", "MEAN_VECTOR_COLLAPSE", "SLOTS_IDENTICAL", "SPLIT_LEAKAGE",
           "audit_recorded_flips", "check_captions", "check_sequences", "diagnose_outputs",
           "feature_rank", "load_arrays", "load_vectors", "validate_attributes",
           "validate_scenes"]

MAX_RANK_ROWS = 4096
"""Rows of an input feature file whose effective rank is measured (a seeded subset above it)."""


def check_captions(path: str | Path, *, batch_size: int) -> tuple[Report, Report]:
    """``validate captions`` and ``diagnose match-ids`` of a caption table.

    Returns ``(rules, grouping)``: every caption rule's findings (GROUPS_ALL_UNIQUE,
    IMAGE_ID_POSITIONAL, SPLIT_LEAKAGE, ...) and the group sizes with the positives of random
    batches of ``batch_size`` rows.
    """
    rules = validate_captions(path)
    frame = read_caption_table(path, columns=[MATCH_ID])
    match_ids = frame.get_column(MATCH_ID).fill_null(-1).to_numpy()
    size = max(2, min(batch_size, len(match_ids)))
    if len(match_ids) < 2:
        return rules, Report(str(path), "match-ids", [], {"rows": len(match_ids)})
    return rules, diagnose_match_id_array(match_ids, size, str(path))


def check_sequences(path: str | Path, *, exclude_window: int) -> tuple[Report, dict]:
    """``validate sequences`` and the documents' shape as the hard-negative draw sees it.

    Returns ``(rules, measures)``; ``measures`` holds ``samples``, ``documents``,
    ``samples_per_document`` (median), ``has_doc_ids`` and, with doc ids, ``fallback_share``:
    the share of samples whose same-document negative outside ``+-exclude_window`` does not
    exist (the draw falls back to a neighbour or another document).
    """
    rules = validate_sequences(path)
    arrays = open_npz(path)
    docs = sample_doc_ids(arrays)
    measures: dict = {"has_doc_ids": docs is not None, "exclude_window": int(exclude_window)}
    if docs is None:
        return rules, measures
    docs = np.asarray(docs)
    _, counts = np.unique(docs, return_counts=True)
    measures.update({"samples": int(docs.size), "documents": int(counts.size),
                     "samples_per_document": float(np.median(counts)) if counts.size else 0.0})
    if docs.size >= 2 and rules.ok:
        try:
            data = HardNegativeSequenceDataset(path, exclude_window=exclude_window)
        except ToolError as exc:
            measures["hard_negatives_skipped"] = str(exc)
        else:
            fallback = data.fallback_counts
            measures["fallback"] = dict(fallback)
            measures["fallback_share"] = sum(fallback.values()) / docs.size
    return rules, measures


class _FlipRecord:
    """One epoch of an augmentation's ``(source, target)`` attributes, as a dataset the flip
    audit can replay."""

    def __init__(self, source: np.ndarray, target: np.ndarray):
        self.source, self.target = source, target

    def __len__(self) -> int:
        return len(self.source)

    def __getitems__(self, indices):
        index = np.asarray(indices, dtype=np.int64)
        return {"source_attributes": self.source[index], "target_attributes": self.target[index]}


def audit_recorded_flips(source: np.ndarray, target: np.ndarray, *, name: str) -> Report:
    """The flip audit of one recorded epoch of an augmentation's source and target attributes."""
    return audit_flips(_FlipRecord(np.asarray(source), np.asarray(target)), target=name)


def diagnose_outputs(pred: np.ndarray, targets: np.ndarray | None = None, *,
                     labels: np.ndarray | None = None, name: str) -> Report:
    """``diagnose embeddings`` of a model's outputs (and their targets); slots are [N, S, D]."""
    return diagnose_embeddings(np.ascontiguousarray(pred, dtype=np.float32),
                               None if targets is None else
                               np.ascontiguousarray(targets, dtype=np.float32),
                               labels, target=name)


def feature_rank(path: str | Path, *, seed: int = 0) -> dict:
    """Effective rank (RankMe) of an input feature ``.npy`` and its share of ``min(rows, dim)``."""
    array = load_npy(path, mmap=True, what="features")
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating) or len(array) < 2:
        raise ToolError(f"{path}: expected float features [rows, dim], got {array.dtype} "
                        f"{array.shape}")
    rows = np.arange(len(array))
    if len(rows) > MAX_RANK_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(len(array), MAX_RANK_ROWS,
                                                          replace=False))
    sample = np.asarray(array[rows], dtype=np.float32)
    rank = effective_rank(sample, center=True)
    return {"effective_rank": rank, "dim": int(array.shape[1]),
            "fraction": rank / min(len(sample), array.shape[1])}


def load_vectors(path: str | Path, what: str) -> np.ndarray:
    """A ``.npy`` array, never unpickled."""
    return load_npy(path, what=what)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, never unpickled."""
    return open_npz(path, mmap=False)
