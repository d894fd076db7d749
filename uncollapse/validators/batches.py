"""Sampler audit: replay what a batch sampler yields and check each batch's guarantees.

``audit_batches`` takes any batch sampler (anything iterable that yields lists of row indices,
one object per rank), replays ``epochs`` epochs and reports positives per batch, distinct groups
per batch, rows per document, duplicate indices, rows covered per epoch and whether ranks
overlap or differ in length. All measurements are whole-array operations over the flattened
batches.

Building the samplers a table's ids call for and auditing them (``uncollapse validate batches``)
is ``uncollapse.validators.batches_table``; its ``audit_table``, ``read_id_column`` and
``table_samplers`` are importable from here too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from uncollapse.report import Code, Finding, Report

NO_BATCHES = Code(
    "NO_BATCHES", "error",
    "The sampler yielded no batch in an epoch, so training would do nothing.",
    "Lower the batch size or use fewer ranks; check that the table is not empty.")
BATCH_INDEX_OUT_OF_RANGE = Code(
    "BATCH_INDEX_OUT_OF_RANGE", "error",
    "A batch holds a row index outside the table, so the loader would fail or read other data.",
    "Build the sampler from the same table the dataset reads.")
DUPLICATE_INDEX_IN_BATCH = Code(
    "DUPLICATE_INDEX_IN_BATCH", "error",
    "The same row appears twice in one batch: it becomes its own false positive (or a padded "
    "fake positive) and the batch holds fewer distinct rows than its size says.",
    "Sample each batch without replacement; never pad small groups with repeated rows "
    "(GroupedBatchSampler drops or rejects them instead).")
BATCH_WITHOUT_POSITIVES = Code(
    "BATCH_WITHOUT_POSITIVES", "error",
    "A batch in which no row has another row of its group: a contrastive loss over groups has "
    "no positive pair in it.",
    "Use a group-aware sampler (GroupedBatchSampler, --sampler grouped) and check that match_id "
    "really groups the captions of one image.")
ROWS_WITHOUT_POSITIVE = Code(
    "ROWS_WITHOUT_POSITIVE", "warning",
    "Rows whose group has no other row in their batch: as anchors of a multi-positive loss "
    "they have no positive.",
    "Use GroupedBatchSampler with per_group >= 2 so every row brings its positives along.")
GROUP_SIZE_IN_BATCH = Code(
    "GROUP_SIZE_IN_BATCH", "error",
    "A group appears in a batch with a number of rows other than per_group.",
    "Use GroupedBatchSampler(per_group=...), which puts exactly per_group rows of each group "
    "in a batch.")
DOC_OVER_CAP = Code(
    "DOC_OVER_CAP", "error",
    "A batch holds more than max_per_doc rows of one document, so one document dominates it.",
    "Use DiverseBatchSampler(max_per_doc=...).")
ROW_REPEATED_IN_EPOCH = Code(
    "ROW_REPEATED_IN_EPOCH", "warning",
    "A row appears in more than one batch of one epoch on one rank: the sampler draws with "
    "replacement, so some rows are seen more often than others.",
    "Use a sampler that uses each row at most once per epoch (the uncollapse samplers do).")
RANKS_OVERLAP = Code(
    "RANKS_OVERLAP", "error",
    "The same row goes to two ranks in one epoch: ranks train on duplicated data (typically "
    "padding, or each rank shuffling on its own).",
    "Give every rank its own slice of one global plan: pass rank/world_size, or initialise "
    "torch.distributed before building the sampler.")
RANK_LENGTHS_DIFFER = Code(
    "RANK_LENGTHS_DIFFER", "error",
    "Ranks get different numbers of batches in one epoch: DDP hangs at the first collective "
    "the shorter rank never reaches.",
    "Use a sampler that truncates every rank to the same number of batches.")
SAMPLER_LEN_WRONG = Code(
    "SAMPLER_LEN_WRONG", "error",
    "len(sampler) differs from the number of batches iterating it yields: schedulers, progress "
    "bars and DDP step counts built on len() are wrong.",
    "Make __len__ count exactly what __iter__ yields.")
EPOCHS_IDENTICAL = Code(
    "EPOCHS_IDENTICAL", "warning",
    "Two epochs yielded exactly the same batches: set_epoch does not reach the sampler, so "
    "every epoch repeats the first.",
    "Call set_epoch on the batch sampler itself every epoch, or use a sampler that advances "
    "its epoch after each pass.")


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


def _examples(mask: np.ndarray, **columns) -> list[dict]:
    where = np.flatnonzero(mask)[:5]
    return [{name: int(col[i]) for name, col in columns.items()} for i in where]


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
        A ``Report`` of kind ``batches``; its stats hold the measurements.

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

    findings: list[Finding] = []
    rows_parts, sizes_parts, epoch_of_batch, rank_of_batch = [], [], [], []
    len_mismatch = []
    for epoch in range(epochs):
        for rank, sampler in enumerate(samplers):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            expected = len(sampler) if hasattr(sampler, "__len__") else None
            rows, sizes = _flatten(sampler)
            if expected is not None and expected != len(sizes):
                len_mismatch.append({"epoch": epoch, "rank": rank, "len": expected,
                                     "yielded": len(sizes)})
            rows_parts.append(rows)
            sizes_parts.append(sizes)
            epoch_of_batch.append(np.full(len(sizes), epoch, dtype=np.int64))
            rank_of_batch.append(np.full(len(sizes), rank, dtype=np.int64))

    sizes = np.concatenate(sizes_parts)
    rows = np.concatenate(rows_parts)
    batch_epoch = np.concatenate(epoch_of_batch)
    batch_rank = np.concatenate(rank_of_batch)
    batch = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    batch_in_pass = np.concatenate([np.arange(len(s), dtype=np.int64) for s in sizes_parts])
    if n_rows is None:
        n_rows = int(rows.max()) + 1 if len(rows) else 0

    per_pass = np.array([len(s) for s in sizes_parts]).reshape(epochs, world_size)
    stats: dict = {"epochs": epochs, "world_size": world_size, "rows": int(n_rows),
                   "batches_per_rank": per_pass[0].tolist() if world_size > 1
                   else int(per_pass[0, 0]),
                   "batch_size": _summary(sizes)}
    if len_mismatch:
        findings.append(SAMPLER_LEN_WRONG.finding(
            f"len(sampler) was not the number of batches yielded in {len(len_mismatch)} "
            f"passes", count=len(len_mismatch), examples=len_mismatch))
    empty = np.flatnonzero(per_pass.reshape(-1) == 0)
    if len(empty):
        findings.append(NO_BATCHES.finding(
            f"{len(empty)} of {per_pass.size} passes (epoch x rank) yielded no batch",
            count=len(empty),
            examples=[{"epoch": int(i // world_size), "rank": int(i % world_size)}
                      for i in empty]))
    uneven = np.flatnonzero(per_pass.min(axis=1) != per_pass.max(axis=1))
    if len(uneven):
        findings.append(RANK_LENGTHS_DIFFER.finding(
            f"ranks got different numbers of batches in {len(uneven)} epochs "
            f"(epoch {int(uneven[0])}: {per_pass[uneven[0]].tolist()})", count=len(uneven),
            examples=[{"epoch": int(e), "batches_per_rank": per_pass[e].tolist()}
                      for e in uneven]))

    outside = (rows < 0) | (rows >= n_rows)
    if outside.any():
        findings.append(BATCH_INDEX_OUT_OF_RANGE.finding(
            f"{int(outside.sum())} row indices are outside 0..{n_rows - 1}",
            count=int(outside.sum()),
            examples=_examples(outside, epoch=batch_epoch[batch], rank=batch_rank[batch],
                               batch=batch_in_pass[batch], row=rows)))
        return Report(target, "batches", findings, stats)

    _check_duplicates(findings, stats, rows, batch, batch_epoch, batch_rank, batch_in_pass)
    distinct = _unique_pairs(batch, rows)[:2]  # one entry per distinct (batch, row)
    _check_epochs(findings, stats, distinct, batch_epoch, batch_rank, n_rows, epochs,
                  world_size)
    _check_identical_epochs(findings, rows_parts, sizes_parts, epochs, world_size)
    where = {"epoch": batch_epoch, "rank": batch_rank, "batch": batch_in_pass}
    if group_ids is not None:
        _check_groups(findings, stats, distinct, _codes(group_ids), np.asarray(group_ids),
                      len(sizes), per_group, where)
    if doc_ids is not None:
        _check_docs(findings, stats, distinct, _codes(doc_ids), np.asarray(doc_ids),
                    max_per_doc, where)
    for sampler in samplers[:1]:
        if isinstance(getattr(sampler, "stats", None), dict):
            stats["sampler"] = dict(sampler.stats)
    return Report(target, "batches", findings, stats)


def _check_duplicates(findings, stats, rows, batch, batch_epoch, batch_rank, batch_in_pass):
    order = np.lexsort((rows, batch))
    repeat = np.zeros(len(rows), dtype=bool)
    repeat[order[1:]] = (rows[order[1:]] == rows[order[:-1]]) & (batch[order[1:]]
                                                                  == batch[order[:-1]])
    stats["duplicate_indices_in_batches"] = int(repeat.sum())
    if repeat.any():
        n_batches = len(np.unique(batch[repeat]))
        findings.append(DUPLICATE_INDEX_IN_BATCH.finding(
            f"{int(repeat.sum())} repeated row indices in {n_batches} batches",
            count=int(repeat.sum()),
            examples=_examples(repeat, epoch=batch_epoch[batch], rank=batch_rank[batch],
                               batch=batch_in_pass[batch], row=rows)))


def _check_epochs(findings, stats, distinct, batch_epoch, batch_rank, n_rows, epochs,
                  world_size):
    batch, rows = distinct
    epoch, rank = batch_epoch[batch], batch_rank[batch]
    # (epoch, rank, row) seen in more than one batch: drawn twice on one rank.
    pass_id, row_of, times = _unique_pairs(epoch * world_size + rank, rows)
    repeated = times > 1
    stats["rows_repeated_within_epoch"] = int(repeated.sum())
    if repeated.any():
        findings.append(ROW_REPEATED_IN_EPOCH.finding(
            f"{int(repeated.sum())} rows appear in more than one batch of an epoch on one rank",
            count=int(repeated.sum()),
            examples=[{"epoch": int(p // world_size), "rank": int(p % world_size),
                       "row": int(r), "batches": int(n)} for p, r, n in
                      zip(pass_id[repeated][:5], row_of[repeated][:5], times[repeated][:5],
                          strict=True)]))
    # (epoch, row) on more than one rank.
    row_epoch, row_id, on_ranks = _unique_pairs(pass_id // world_size, row_of)
    covered = np.bincount(row_epoch, minlength=epochs)
    stats["rows_covered_per_epoch"] = covered.tolist() if epochs > 1 else int(covered[0])
    stats["coverage"] = round(float(covered.min()) / max(n_rows, 1), 4)
    if world_size > 1:
        shared = on_ranks > 1
        stats["rows_on_several_ranks"] = int(shared.sum())
        if shared.any():
            findings.append(RANKS_OVERLAP.finding(
                f"{int(shared.sum())} rows went to more than one rank in the same epoch",
                count=int(shared.sum()),
                examples=[{"epoch": int(a), "row": int(b), "ranks": int(n)} for a, b, n in
                          zip(row_epoch[shared][:5], row_id[shared][:5], on_ranks[shared][:5],
                              strict=True)]))


def _check_identical_epochs(findings, rows_parts, sizes_parts, epochs, world_size):
    same = [(e, r) for e, r in itertools.product(range(1, epochs), range(world_size))
            if np.array_equal(rows_parts[e * world_size + r], rows_parts[(e - 1) * world_size + r])
            and np.array_equal(sizes_parts[e * world_size + r],
                               sizes_parts[(e - 1) * world_size + r])
            and len(rows_parts[e * world_size + r])]
    if same:
        findings.append(EPOCHS_IDENTICAL.finding(
            f"{len(same)} epochs repeated the previous epoch's batches exactly",
            count=len(same), examples=[{"epoch": e, "rank": r} for e, r in same]))


def _check_groups(findings, stats, distinct, group, group_values, n_batches, per_group, where):
    batch, rows = distinct
    pair_batch, _, counts, inverse = _unique_pairs(batch, group[rows], return_inverse=True)
    positives_per_row = counts[inverse] - 1
    groups_per_batch = np.bincount(pair_batch, minlength=n_batches)
    with_positive = np.zeros(n_batches, dtype=bool)
    with_positive[pair_batch[counts > 1]] = True
    positives_in_batch = np.bincount(batch, weights=positives_per_row > 0, minlength=n_batches)
    stats["groups_per_batch"] = _summary(groups_per_batch)
    stats["rows_per_group_in_batch"] = _summary(counts)
    stats["positives_per_row"] = _summary(positives_per_row)
    stats["rows_with_a_positive_per_batch"] = _summary(positives_in_batch.astype(np.int64))
    stats["batches_without_positives"] = int((~with_positive).sum())
    if (~with_positive).any():
        findings.append(BATCH_WITHOUT_POSITIVES.finding(
            f"{int((~with_positive).sum())} of {n_batches} batches hold no two rows of one group",
            count=int((~with_positive).sum()),
            examples=_examples(~with_positive, **where)))
    alone = positives_per_row == 0
    if alone.any():
        findings.append(ROWS_WITHOUT_POSITIVE.finding(
            f"{int(alone.sum())} of {len(rows)} rows in batches have no other row of their group "
            f"in the batch", count=int(alone.sum()),
            examples=[{**e, "group": g} for e, g in zip(
                _examples(alone, epoch=where["epoch"][batch], rank=where["rank"][batch],
                          batch=where["batch"][batch], row=rows),
                group_values[rows[alone][:5]].tolist(), strict=True)]))
    if per_group is not None:
        wrong = counts != per_group
        if wrong.any():
            b = pair_batch[wrong]
            findings.append(GROUP_SIZE_IN_BATCH.finding(
                f"{int(wrong.sum())} times a group had other than per_group={per_group} rows "
                f"in a batch", count=int(wrong.sum()),
                examples=[{"epoch": int(where["epoch"][x]), "rank": int(where["rank"][x]),
                           "batch": int(where["batch"][x]), "rows_of_group": int(c)}
                          for x, c in zip(b[:5], counts[wrong][:5], strict=True)]))


def _check_docs(findings, stats, distinct, doc, doc_values, max_per_doc, where):
    batch, rows = distinct
    first_row = np.zeros(int(doc.max()) + 1 if len(doc) else 0, dtype=np.int64)
    first_row[doc[::-1]] = np.arange(len(doc) - 1, -1, -1)
    pair_batch, pair_doc, counts = _unique_pairs(batch, doc[rows])
    max_in_batch = np.zeros(int(batch.max()) + 1 if len(batch) else 0, dtype=np.int64)
    np.maximum.at(max_in_batch, pair_batch, counts)
    stats["max_rows_per_doc_in_batch"] = _summary(max_in_batch)
    stats["docs_per_batch"] = _summary(np.bincount(pair_batch))
    if max_per_doc is not None:
        over = counts > max_per_doc
        stats["doc_over_cap"] = int(over.sum())
        if over.any():
            b, d = pair_batch[over], pair_doc[over]
            findings.append(DOC_OVER_CAP.finding(
                f"{int(over.sum())} times a batch held more than max_per_doc={max_per_doc} rows "
                f"of one document (up to {int(counts.max())})", count=int(over.sum()),
                examples=[{"epoch": int(where["epoch"][x]), "rank": int(where["rank"][x]),
                           "batch": int(where["batch"][x]),
                           "doc": doc_values[first_row[y]].item(), "rows": int(c)}
                          for x, y, c in zip(b[:5], d[:5], counts[over][:5], strict=True)]))

