"""Sampler audit: replay what a batch sampler yields and check each batch's guarantees.

``audit_batches`` replays the samplers of every rank for some epochs, builds the
``BatchAssignment`` frame of what they yielded, runs the rules of
``uncollapse.validators.batches.rules`` on it (the model's checks through pandera, the others on
the replay) and measures what the batches hold. Building the samplers a table's ids call for and
auditing them (``uncollapse validate batches``) is ``uncollapse.validators.batches.table``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from uncollapse.report import Report
from uncollapse.validators.batches.rules import (
    EPOCH,
    RANK,
    ROWS_NOT_PLACED_WARN_SHARE,
    RULES,
    Replay,
    batch_assignment_frame,
    batch_assignment_model,
)
from uncollapse.validators.bridge import pandera_failures

__all__ = ["ROWS_NOT_PLACED_WARN_SHARE", "audit_batches"]


def _flatten(batches: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, batch sizes)`` of one pass over ``batches``."""
    if isinstance(batches, np.ndarray) and batches.ndim == 2:
        return (batches.astype(np.int64).reshape(-1),
                np.full(len(batches), batches.shape[1], dtype=np.int64))
    batch_list = [np.asarray(b, dtype=np.int64).reshape(-1) for b in batches]
    sizes = np.fromiter(map(len, batch_list), dtype=np.int64, count=len(batch_list))
    if not batch_list:
        return np.zeros(0, dtype=np.int64), sizes
    return np.concatenate(batch_list), sizes


def _codes(values) -> np.ndarray:
    return np.unique(np.asarray(values), return_inverse=True)[1].reshape(-1).astype(np.int64)


def _unique_pairs(a: np.ndarray, b: np.ndarray, *, return_inverse: bool = False):
    """``np.unique`` of the pairs ``(a[i], b[i])`` of non-negative ints, through one int64 key.

    Returns ``(first, second, counts)`` of the distinct pairs (sorted), plus the inverse if asked.
    """
    base = int(b.max()) + 1 if len(b) else 1
    key = a * base + b
    if return_inverse:
        keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        return keys // base, keys % base, counts, inverse.reshape(-1)
    keys, counts = np.unique(key, return_counts=True)
    return keys // base, keys % base, counts


def _summary(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": int(values.min()), "mean": round(float(values.mean()), 3),
            "max": int(values.max())}


def _replay(samplers: list, epochs: int) -> tuple[list, list, list]:
    """Every pass (epoch-major, then rank): its rows and batch sizes; and the passes whose
    ``len(sampler)`` was not what they yielded."""
    rows_parts, sizes_parts, len_mismatch = [], [], []
    for epoch in range(epochs):
        for rank, sampler in enumerate(samplers):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            expected = len(sampler) if hasattr(sampler, "__len__") else None
            rows, sizes = _flatten(sampler)
            if expected is not None and expected != len(sizes):
                len_mismatch.append({EPOCH: epoch, RANK: rank, "len": expected,
                                     "yielded": len(sizes)})
            rows_parts.append(rows)
            sizes_parts.append(sizes)
    return rows_parts, sizes_parts, len_mismatch


def audit_batches(batches=None, *, ranks: Sequence | None = None, group_ids=None, doc_ids=None,
                  per_group: int | None = None, max_per_doc: int | None = None,
                  n_rows: int | None = None, epochs: int = 1,
                  target: str = "batch sampler") -> Report:
    """Replay a batch sampler and report what its batches hold.

    Args:
        batches: a batch sampler, or any iterable of batches (lists or arrays of row indices,
            or a 2-d array with one batch per row). A one-shot iterable only allows
            ``epochs=1``.
        ranks: instead of ``batches``: one batch sampler per rank, in rank order.
        group_ids: one group id per row (e.g. ``match_id``): enables the positive checks.
        doc_ids: one document id per row: enables the per-document checks.
        per_group: rows each group should have in a batch (checked when given).
        max_per_doc: most rows of one document a batch may hold (checked when given).
        n_rows: rows in the table (default: the length of ``group_ids`` or ``doc_ids``).
        epochs: epochs to replay; ``set_epoch(e)`` is called first where the sampler has it.
        target: what the report names as audited.

    Returns:
        A ``Report`` of kind ``batches``; its stats hold the measurements. The batch
        guarantees are the checks of ``batch_assignment_model(per_group, max_per_doc,
        n_rows)``, run on the replayed batches; rows an epoch leaves out are
        ``ROWS_NOT_PLACED`` (a warning above ``ROWS_NOT_PLACED_WARN_SHARE`` of the table).

    Example:
        >>> sampler = GroupedBatchSampler(match_id, batch_size=250, per_group=5)
        >>> audit_batches(sampler, group_ids=match_id, per_group=5, epochs=2).ok
        True
    """
    if (batches is None) == (ranks is None):
        raise ValueError("pass either batches (one sampler) or ranks (one sampler per rank)")
    samplers = [batches] if ranks is None else list(ranks)
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if epochs > 1 and any(iter(s) is s for s in samplers):
        raise ValueError("a one-shot iterator of batches can only be replayed for one epoch; "
                         "pass the sampler itself")
    for ids in (group_ids, doc_ids):
        if ids is not None and n_rows is None:
            n_rows = len(ids)
    world_size = len(samplers)

    rows_parts, sizes_parts, len_mismatch = _replay(samplers, epochs)
    sizes = np.concatenate(sizes_parts)
    rows = np.concatenate(rows_parts)
    if n_rows is None:
        n_rows = int(rows.max()) + 1 if len(rows) else 0
    in_table = bool(len(rows) == 0 or (rows.min() >= 0 and rows.max() < n_rows))
    # Ids are looked up by row: with a row outside the table only the row checks can run.
    group = _codes(group_ids) if group_ids is not None and in_table else None
    doc = _codes(doc_ids) if doc_ids is not None and in_table else None
    batch_epoch = np.concatenate([np.full(len(s), i // world_size, dtype=np.int64)
                                  for i, s in enumerate(sizes_parts)])
    batch_rank = np.concatenate([np.full(len(s), i % world_size, dtype=np.int64)
                                 for i, s in enumerate(sizes_parts)])
    batch_in_pass = np.concatenate([np.arange(len(s), dtype=np.int64) for s in sizes_parts])
    frame = batch_assignment_frame(rows, sizes, batch_epoch=batch_epoch, batch_rank=batch_rank,
                                   batch_in_pass=batch_in_pass, group=group, doc=doc)
    replay = Replay(rows_parts, sizes_parts, len_mismatch, sizes, batch_epoch, epochs,
                    world_size, int(n_rows), frame, per_group=per_group, max_per_doc=max_per_doc,
                    group_values=None if group is None else np.asarray(group_ids),
                    doc_values=None if doc is None else np.asarray(doc_ids),
                    group=group, doc=doc, in_table=in_table)
    model = batch_assignment_model(per_group if group is not None else None,
                                   max_per_doc if doc is not None else None, int(n_rows))
    failures = pandera_failures(model.to_schema(), frame)

    def failing(check: str) -> int:
        return sum(failure.count for failure in failures.get(check, ()))

    per_pass = replay.per_pass()
    stats: dict = {"epochs": epochs, "world_size": world_size, "rows": int(n_rows),
                   "batches_per_rank": per_pass[0].tolist() if world_size > 1
                   else int(per_pass[0, 0]),
                   "batch_size": _summary(sizes),
                   "duplicate_indices_in_batches": failing("no_duplicate_index_in_batch"),
                   "rows_repeated_within_epoch": failing("no_row_twice_in_an_epoch")}
    if world_size > 1:
        stats["rows_on_several_ranks"] = failing("ranks_are_disjoint")
    if group is not None:
        stats["batches_without_positives"] = failing("every_batch_has_positives")
    if doc is not None and max_per_doc is not None:
        stats["doc_over_cap"] = failing("docs_within_cap")
    if in_table:
        # measurements beside the rules: numpy sorts beat polars' hashing for these
        batch = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        distinct = _unique_pairs(batch, rows)[:2]  # one entry per distinct (batch, row)
        replay.covered = _coverage(stats, distinct, batch_epoch, n_rows, epochs)
        if group is not None:
            _group_stats(stats, distinct, group, len(sizes))
        if doc is not None:
            _doc_stats(stats, distinct, doc)
        for sampler in samplers[:1]:
            if isinstance(getattr(sampler, "stats", None), dict):
                stats["sampler"] = dict(sampler.stats)
    return Report(target, "batches", RULES.findings(failures, replay), stats)


def _coverage(stats, distinct, batch_epoch, n_rows, epochs) -> np.ndarray:
    """Distinct rows each epoch placed on any rank."""
    batch, rows = distinct
    row_epoch = _unique_pairs(batch_epoch[batch], rows)[0]
    covered = np.bincount(row_epoch, minlength=epochs)
    stats["rows_covered_per_epoch"] = covered.tolist() if epochs > 1 else int(covered[0])
    stats["coverage"] = round(float(covered.min()) / max(n_rows, 1), 4)
    missing = n_rows - covered
    stats["rows_not_placed"] = missing.tolist() if epochs > 1 else int(missing[0])
    return covered


def _group_stats(stats, distinct, group, n_batches):
    batch, rows = distinct
    pair_batch, _, counts, inverse = _unique_pairs(batch, group[rows], return_inverse=True)
    positives_per_row = counts[inverse] - 1
    positives_in_batch = np.bincount(batch, weights=positives_per_row > 0, minlength=n_batches)
    stats["groups_per_batch"] = _summary(np.bincount(pair_batch, minlength=n_batches))
    stats["rows_per_group_in_batch"] = _summary(counts)
    stats["positives_per_row"] = _summary(positives_per_row)
    stats["rows_with_a_positive_per_batch"] = _summary(positives_in_batch.astype(np.int64))


def _doc_stats(stats, distinct, doc):
    batch, rows = distinct
    pair_batch, _, counts = _unique_pairs(batch, doc[rows])
    max_in_batch = np.zeros(int(batch.max()) + 1 if len(batch) else 0, dtype=np.int64)
    np.maximum.at(max_in_batch, pair_batch, counts)
    stats["max_rows_per_doc_in_batch"] = _summary(max_in_batch)
    stats["docs_per_batch"] = _summary(np.bincount(pair_batch))
