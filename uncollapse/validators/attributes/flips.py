"""Audit of an attribute-flip augmentation: replay an epoch and count what it really did.

Works on any map-style dataset whose items carry source and target attributes: dicts with
``source_attributes``/``target_attributes`` (as ``AttributeFlipDataset`` returns) or
``source``/``target``, or tuples ``(embedding, source, target, ...)``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import numpy as np

from uncollapse.data.attributes.contract import MAX_ATTRIBUTES, combination_ids
from uncollapse.errors import ToolError
from uncollapse.progress import progress
from uncollapse.report import Code, Report

__all__ = ["FLIPS_NOT_ALWAYS_APPLIED", "FLIPS_NOT_REPRODUCIBLE", "FLIPS_NO_SAMPLES",
           "FLIPS_OUT_OF_RANGE", "FLIP_BATCH_SINGLE_COMBINATION", "FLIP_TARGETS_NOT_BINARY",
           "audit_flips", "fetch_attributes"]

FLIPS_NOT_ALWAYS_APPLIED = Code(
    "FLIPS_NOT_ALWAYS_APPLIED", "error",
    "Some samples came out with target attributes equal to their source: the augmentation "
    "flips only part of the time, so the model can learn the identity map and collapse.",
    "Flip on every sample (AttributeFlipDataset with min_flips >= 1), not with a probability.")
FLIPS_OUT_OF_RANGE = Code(
    "FLIPS_OUT_OF_RANGE", "error",
    "Samples flipped more or fewer attributes than the dataset's min_flips..max_flips.",
    "Fix the augmentation so the flip count stays within its declared range.")
FLIP_TARGETS_NOT_BINARY = Code(
    "FLIP_TARGETS_NOT_BINARY", "error",
    "Source or target attribute values other than 0/1 came out of the dataset.",
    "Emit 0/1 attribute vectors (map -1/1 sources with (a + 1) // 2).")
FLIPS_NOT_REPRODUCIBLE = Code(
    "FLIPS_NOT_REPRODUCIBLE", "warning",
    "Asking for the same samples twice in the same epoch gave different targets, so flips "
    "depend on worker state or call order and a resumed run sees different data.",
    "Derive each sample's flips from (seed, epoch, index), as AttributeFlipDataset does.")
FLIP_BATCH_SINGLE_COMBINATION = Code(
    "FLIP_BATCH_SINGLE_COMBINATION", "warning",
    "Batches hold a single target combination, so a prototype loss has nothing to contrast.",
    "Batch with GroupedBatchSampler over the target combination ids (several groups a batch).")

FLIPS_NO_SAMPLES = Code(
    "FLIPS_NO_SAMPLES", "error",
    "The dataset (or the sampler over it) yielded no samples: an epoch would train on nothing.",
    "Give a table with rows, or fix the dataset's __len__ / the sampler so an epoch has "
    "batches.")

SOURCE_KEYS = ("source_attributes", "source")
TARGET_KEYS = ("target_attributes", "target")


def _as_array(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _pick(item, keys: tuple[str, ...], position: int):
    if isinstance(item, dict):
        for key in keys:
            if key in item:
                return item[key]
        raise ToolError(f"dataset items have keys {sorted(item)}; expected one of {keys}")
    if isinstance(item, (tuple, list)) and len(item) > position:
        return item[position]
    raise ToolError(f"dataset items are {type(item).__name__}; expected a dict with "
                    f"{keys[0]!r} or a tuple (embedding, source, target, ...)")


def fetch_attributes(dataset, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n, A] source and target attributes of ``indices``, through ``__getitems__`` if present."""
    # An AttributeFlipDataset exists only once its (torch) module is imported: look it up there
    # rather than import torch for an isinstance test.
    flip_module = sys.modules.get("uncollapse.data.attributes.dataset")
    if flip_module is not None and isinstance(dataset, flip_module.AttributeFlipDataset):
        # its batched path: no per-item dicts
        batch = dataset.batch(indices)
        return batch["source_attributes"].numpy(), batch["target_attributes"].numpy()
    indices = [int(i) for i in indices]
    getitems = getattr(dataset, "__getitems__", None)
    items = getitems(indices) if getitems else [dataset[i] for i in indices]
    if isinstance(items, dict):  # a dataset that returns a batched dict
        source, target = _pick(items, SOURCE_KEYS, 1), _pick(items, TARGET_KEYS, 2)
        return _as_array(source).reshape(len(indices), -1), \
            _as_array(target).reshape(len(indices), -1)
    source = np.stack([_as_array(_pick(it, SOURCE_KEYS, 1)).reshape(-1) for it in items])
    target = np.stack([_as_array(_pick(it, TARGET_KEYS, 2)).reshape(-1) for it in items])
    return source, target


def audit_flips(dataset, *, batch_size: int = 256, batches: Iterable | None = None,
                epoch: int | None = None, min_flips: int | None = None,
                max_flips: int | None = None, target: str | None = None,
                quiet: bool = True) -> Report:
    """Replay one epoch of ``dataset`` and report how its attribute flips really fell.

    Args:
        dataset: a map-style dataset of items with source and target attributes.
        batch_size: batch size of the replay when no ``batches`` are given (sequential batches).
        batches: the batches to replay, e.g. a ``GroupedBatchSampler`` (lists of indices);
            then combinations per batch are those training will see.
        epoch: passed to ``dataset.set_epoch`` (and the sampler's) when given.
        min_flips, max_flips: the declared flip range; default: the dataset's attributes of
            those names, if it has them.

    Returns:
        Report (kind ``flips``) with stats ``samples``, ``share_with_flip`` (must be 1.0),
        ``flip_counts`` (share of samples per number of flipped attributes) and
        ``combinations_per_batch`` (min/mean/max distinct target combinations in a batch).
    """
    if epoch is not None:
        for thing in (dataset, batches):
            if hasattr(thing, "set_epoch"):
                thing.set_epoch(epoch)
    min_flips = getattr(dataset, "min_flips", None) if min_flips is None else min_flips
    max_flips = getattr(dataset, "max_flips", None) if max_flips is None else max_flips
    n = len(dataset)
    if batches is None:
        if batch_size < 1:
            raise ToolError(f"--batch-size must be at least 1, got {batch_size}")
        batches = np.array_split(np.arange(n), max(1, -(-n // batch_size)))
    total = len(batches) if hasattr(batches, "__len__") else None

    flip_counts, combos_per_batch, sizes, index_parts, bad_values = [], [], [], [], 0
    first_batch, first_target = None, None
    # one step per batch: the dataset is opaque, each batch's work is vectorised
    for batch in progress(batches, total=total, desc="replaying flips", quiet=quiet):
        batch = np.asarray(batch, dtype=np.int64)
        if len(batch) == 0:
            continue
        source, tgt = fetch_attributes(dataset, batch)
        if source.shape != tgt.shape:
            raise ToolError(f"source attributes {source.shape} and targets {tgt.shape} of one "
                            "batch differ in shape")
        bad_values += int((~np.isin(source, (0, 1))).any(axis=1).sum()
                          + (~np.isin(tgt, (0, 1))).any(axis=1).sum())
        flip_counts.append((source != tgt).sum(axis=1))
        binary_target = (tgt == 1).astype(np.int8)
        # rows of more attributes than an id packs are compared whole
        distinct = (np.unique(combination_ids(binary_target)) if tgt.shape[1] <= MAX_ATTRIBUTES
                    else np.unique(binary_target, axis=0))
        combos_per_batch.append(len(distinct))
        index_parts.append(batch)
        sizes.append(len(batch))
        if first_batch is None:
            first_batch, first_target = batch, tgt
    if not flip_counts:
        return Report(target, "flips", [FLIPS_NO_SAMPLES.finding(
            f"{target or 'the dataset'}: {n} samples, and the sampler yielded no non-empty "
            "batch", count=0)],
            {"samples": 0, "batches": 0})

    flips = np.concatenate(flip_counts)
    indices = np.concatenate(index_parts)
    combos = np.asarray(combos_per_batch)
    histogram = np.bincount(flips)
    stats = {"samples": len(flips), "batches": len(combos),
             "share_with_flip": float((flips > 0).mean()),
             "flip_counts": {str(k): round(float(c) / len(flips), 4)
                             for k, c in enumerate(histogram) if c},
             "combinations_per_batch": {"min": int(combos.min()),
                                        "mean": round(float(combos.mean()), 2),
                                        "max": int(combos.max())}}
    if min_flips is not None:
        stats["declared_flips"] = [int(min_flips), int(max_flips)]

    findings = []
    unflipped = flips == 0
    if unflipped.any():
        findings.append(FLIPS_NOT_ALWAYS_APPLIED.finding(
            f"{int(unflipped.sum())} of {len(flips)} samples "
            f"({unflipped.mean():.1%}) have target == source; every sample must flip",
            count=int(unflipped.sum()),
            examples=[{"index": int(i)} for i in indices[unflipped][:10]]))
    if min_flips is not None and max_flips is not None:
        outside = ~unflipped & ((flips < min_flips) | (flips > max_flips))
        if outside.any():
            findings.append(FLIPS_OUT_OF_RANGE.finding(
                f"{int(outside.sum())} samples flipped a number of attributes outside "
                f"{min_flips}..{max_flips}", count=int(outside.sum()),
                examples=[{"index": int(i), "flips": int(k)} for i, k in
                          zip(indices[outside][:10], flips[outside][:10], strict=True)]))
    if bad_values:
        findings.append(FLIP_TARGETS_NOT_BINARY.finding(
            f"{bad_values} source or target vectors hold values other than 0/1",
            count=bad_values))
    _, again = fetch_attributes(dataset, first_batch)
    changed = (again != first_target).any(axis=1)
    if changed.any():
        findings.append(FLIPS_NOT_REPRODUCIBLE.finding(
            f"{int(changed.sum())} of {len(first_batch)} samples of the first batch got "
            "different targets when asked for again", count=int(changed.sum()),
            examples=[{"index": int(i)} for i in first_batch[changed][:10]]))
    single = (combos == 1) & (np.asarray(sizes) > 1)
    if single.any():
        findings.append(FLIP_BATCH_SINGLE_COMBINATION.finding(
            f"{int(single.sum())} of {len(combos)} batches hold one target combination",
            count=int(single.sum())))
    return Report(target or type(dataset).__name__, "flips", findings, stats)
