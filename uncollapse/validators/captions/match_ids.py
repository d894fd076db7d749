"""What uniformly random batches of a caption table hold: the case for a grouped sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uncollapse.data.captions.contract import IMAGE_ID, MATCH_ID
from uncollapse.errors import ToolError
from uncollapse.report import Code, Report

# Defined here, not beside the other caption rules, so that `diagnose match-ids` does not import
# pandera; uncollapse.validators.captions.rules imports them.
CAPTION_TABLE_EMPTY = Code(
    "CAPTION_TABLE_EMPTY", "error",
    "The caption table has no rows: nothing to train on, so a check that passed would mislead.",
    "Rebuild the table from its source (a failed export or a filter that kept nothing).")
GROUPS_ALL_UNIQUE = Code(
    "GROUPS_ALL_UNIQUE", "error",
    "Every match_id (or almost every one) holds a single row, so contrastive batches have no "
    "positive pairs.",
    "Take image_id from the source's own identifier (file name stem, img_id, COCO image_id), "
    "never a loop counter; rebuild with `uncollapse build captions`.")
FEW_POSITIVES_IN_RANDOM_BATCHES = Code(
    "FEW_POSITIVES_IN_RANDOM_BATCHES", "warning",
    "Uniformly random batches of this size often hold no positive pair, so a shuffling "
    "DataLoader trains InfoNCE without positives.",
    "Batch with uncollapse.samplers.GroupedBatchSampler (k rows of each group per batch).")


def random_batch_positives(match_ids: np.ndarray, batch_size: int, *, seed: int = 0,
                           max_batches: int = 2000) -> tuple[float, float]:
    """Simulate random batches: (share of batches without a positive pair, positives per row).

    Rows are shuffled with a seeded generator and cut into full batches; each batch is sorted
    so equal ids sit side by side, and runs of equal ids give the positives.
    """
    if max_batches < 1:
        raise ToolError(f"max_batches must be at least 1, got {max_batches}")
    n_batches = min(len(match_ids) // batch_size, max_batches)
    if n_batches == 0:
        raise ToolError(f"the table has {len(match_ids)} rows, fewer than one batch of "
                        f"{batch_size}; use a smaller batch_size")
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(match_ids))[: n_batches * batch_size]
    batches = np.sort(match_ids[rows].reshape(n_batches, batch_size), axis=1)
    same_as_left = batches[:, 1:] == batches[:, :-1]
    without_positive = float((~same_as_left.any(axis=1)).mean())
    # Runs of equal ids: a run of length L gives each of its L rows L-1 positives.
    starts = np.ones(batches.shape, dtype=bool)
    starts[:, 1:] = ~same_as_left
    run_lengths = np.diff(np.append(np.flatnonzero(starts.ravel()), batches.size))
    positives_per_row = float((run_lengths * (run_lengths - 1)).sum() / batches.size)
    return without_positive, positives_per_row


def diagnose_match_id_array(match_ids: np.ndarray, batch_size: int, target: str = "<table>", *,
                            seed: int = 0, max_batches: int = 2000,
                            max_share_without_positive: float = 0.1) -> Report:
    """Group-size histogram, the expected and simulated positives of random batches, a verdict."""
    if batch_size < 2:
        raise ToolError(f"batch_size must be at least 2, got {batch_size}")
    _, sizes = np.unique(match_ids, return_counts=True)
    n = len(match_ids)
    size_values, size_counts = np.unique(sizes, return_counts=True)
    # Exact expectation for a uniformly random batch: each other row of the batch is one of the
    # row's (size - 1) positives with probability (size - 1) / (n - 1).
    expected = float((sizes * (sizes - 1)).sum() / n * (batch_size - 1) / max(n - 1, 1))
    without, simulated = random_batch_positives(match_ids, batch_size, seed=seed,
                                                max_batches=max_batches)
    singleton_share = float((sizes == 1).mean())
    findings = []
    if singleton_share >= 0.9:
        verdict = (f"broken: {singleton_share:.1%} of groups hold one row, so batches have no "
                   "positives whatever the sampler; rebuild the table with true image ids")
        findings.append(GROUPS_ALL_UNIQUE.finding(verdict, count=int((sizes == 1).sum())))
    elif without > max_share_without_positive:
        verdict = (f"groups are fine, but {without:.1%} of random batches of {batch_size} hold "
                   "no positive pair; use GroupedBatchSampler")
        findings.append(FEW_POSITIVES_IN_RANDOM_BATCHES.finding(verdict, count=int(
            round(without * min(n // batch_size, max_batches)))))
    else:
        verdict = "healthy: groups have positives and random batches usually contain them"
    stats = {"rows": n, "groups": len(sizes),
             "group_size_histogram": dict(
                 zip(size_values.tolist(), size_counts.tolist(), strict=True)),
             "batch_size": batch_size,
             "share_batches_without_positive": without,
             "mean_positives_per_row": simulated,
             "expected_positives_per_row": expected,
             "verdict": verdict}
    return Report(target=target, kind="match-ids", findings=findings, stats=stats)


def diagnose_match_ids(path: str | Path, *, batch_size: int, seed: int = 0,
                       max_batches: int = 2000) -> Report:
    """``diagnose_match_id_array`` on the ``match_id`` column of a caption table file."""
    # polars reads the table; the array check above runs without it (the trainers' pre-flight
    # on GPU hosts)
    from uncollapse.data.captions.table import read_caption_table

    frame = read_caption_table(path, columns=[IMAGE_ID, MATCH_ID])
    if frame.height == 0:
        return Report(target=str(path), kind="match-ids", stats={"rows": 0, "groups": 0},
                      findings=[CAPTION_TABLE_EMPTY.finding(f"{path} holds no caption rows",
                                                            count=0)])
    match_ids = frame.get_column(MATCH_ID).fill_null(-1).to_numpy()
    try:
        return diagnose_match_id_array(match_ids, batch_size, str(path), seed=seed,
                                       max_batches=max_batches)
    except ToolError as exc:
        raise ToolError(f"{path}: {exc}") from exc


__all__ = ["CAPTION_TABLE_EMPTY", "GROUPS_ALL_UNIQUE", "diagnose_match_ids",
           "diagnose_match_id_array", "random_batch_positives"]
