"""``diagnose_embeddings``: judge a set of embeddings or model outputs for collapse.

Each finding code below has a threshold in ``Thresholds``; every default is documented there
and can be overridden per call (``Thresholds(min_rank_fraction=0.02)``) or on the command line.
"""

from __future__ import annotations

import math

import torch

from uncollapse.errors import ToolError
from uncollapse.report import Code, Report
from uncollapse.validators.collapse import metrics
from uncollapse.validators.collapse.thresholds import Thresholds

__all__ = ["DIMENSIONAL_COLLAPSE", "MEAN_VECTOR_COLLAPSE", "MOMENT_MISMATCH", "NON_FINITE_OUTPUT",
           "POINT_COLLAPSE", "SLOTS_IDENTICAL", "UNIT_NORM_OUTPUT", "diagnose_embeddings"]

NON_FINITE_OUTPUT = Code(
    "NON_FINITE_OUTPUT", "error",
    "Some outputs or targets hold NaN or infinite values; no other metric was computed.",
    "Find the step where the values first went non-finite (LossGuard stops a run there); check "
    "the learning rate, mixed-precision overflow and divisions by a norm that can be zero.")
MEAN_VECTOR_COLLAPSE = Code(
    "MEAN_VECTOR_COLLAPSE", "error",
    "The outputs are no closer to their targets (cosine) than the targets' mean vector is: the "
    "model predicts the average target.",
    "Add a term that rewards telling targets apart (an in-batch contrastive loss), check that "
    "the inputs carry information about the target, and lower the weight of a pure MSE or "
    "cosine regression loss.")
DIMENSIONAL_COLLAPSE = Code(
    "DIMENSIONAL_COLLAPSE", "error",
    "The outputs span few directions: their effective rank (RankMe) is a small share of the "
    "dimension, or much lower than the targets'.",
    "Add a variance/covariance regulariser (VICReg) or a contrastive term, raise the "
    "temperature, and check the projector and the batch size.")
UNIT_NORM_OUTPUT = Code(
    "UNIT_NORM_OUTPUT", "error",
    "Every output has norm 1 while the targets do not: the head is L2-normalised but the "
    "decoder or loss expects the targets' raw scale.",
    "Remove the final normalisation (or normalise the targets too, and the decoder's inputs), "
    "so that outputs and targets live on one scale.")
MOMENT_MISMATCH = Code(
    "MOMENT_MISMATCH", "warning",
    "Per-dimension mean or standard deviation of the outputs differs from the targets': the "
    "outputs are shrunk, inflated or shifted relative to what a decoder expects.",
    "Compare the scale of outputs and targets (a normalisation on one side only), and check "
    "for regression to the mean (std ratio well below 1).")
POINT_COLLAPSE = Code(
    "POINT_COLLAPSE", "error",
    "The outputs collapse to points: all of them to one point, or those of each label to one "
    "point (no spread left within a label, or far less than the targets have there).",
    "The representation no longer depends on the input beyond its label: add a uniformity or "
    "contrastive term, check for a stop-gradient that is missing, and lower the learning rate.")
SLOTS_IDENTICAL = Code(
    "SLOTS_IDENTICAL", "error",
    "The slots of each set are (nearly) the same vector: the model did not split the input "
    "into parts.",
    "Check slot initialisation (sampled, not shared), the number of iterations, and the "
    "attention's softmax axis (over slots, not over inputs).")


def diagnose_embeddings(pred, targets=None, labels=None, groups=None, *,
                        thresholds: Thresholds | None = None,
                        max_samples: int | None = metrics.MAX_SAMPLES, seed: int = 0,
                        target: str = "embeddings") -> Report:
    """Measure collapse of ``pred`` (and against ``targets``) and report what collapsed.

    Args:
        pred: outputs or embeddings, [N, D], or slots [N, S, D] (numpy or torch, any device;
            everything is computed where it lives).
        targets: what ``pred`` should match, paired row for row (same shape), optional.
        labels: [N] (or [N*S] for slots) class or identity of each row, optional: silhouette,
            k-NN purity and the per-label POINT_COLLAPSE check.
        groups: [N] positive group of each row (``match_id``), optional, needs ``targets``:
            recall@k and contrastive accuracy count every target of the group as a positive.
            Without groups, row i's only positive is target i.
        thresholds: when each finding fires (``Thresholds``; documented defaults).
        max_samples: row cap of the all-pairs metrics (seeded subset above it).
        seed: seed of that subset.
        target: the name the report gives the data.

    Returns:
        A ``Report`` of kind ``embeddings``: findings with the codes of this module and the
        measured ``stats``. Bad shapes raise ``ToolError`` (the tool could not run).

    Example:
        >>> report = diagnose_embeddings(outputs, targets)
        >>> report.ok, report.codes(), report.stats["effective_rank"]
    """
    limits = thresholds or Thresholds()
    p = _load(pred, "pred", ndims=(2, 3))
    slots = p if p.dim() == 3 else None
    if slots is not None:
        if slots.shape[1] < 2:
            raise ToolError(f"pred: slots [N, S, D] need S >= 2, got shape {tuple(slots.shape)}")
        p = slots.reshape(-1, slots.shape[-1])
    t = None
    if targets is not None:
        t = _load(targets, "targets", ndims=(2, 3)).to(p.device)
        if t.shape[-1] == 0:
            raise ToolError(f"targets: vectors of 0 dimensions (shape {tuple(t.shape)}); "
                            "save the targets as [N, D] with D >= 1")
        t = t.reshape(-1, t.shape[-1])
        if t.shape != p.shape:
            raise ToolError(f"targets has shape {tuple(t.shape)} but pred has {tuple(p.shape)} "
                            "(after flattening slots); they must be paired row for row")
    if groups is not None and t is None:
        raise ToolError("groups need targets: they say which targets are positives of a row")
    n_rows, dim = p.shape
    if n_rows < 2:
        raise ToolError(f"pred: need at least two rows to measure collapse, got {n_rows}")
    if dim == 0:
        raise ToolError(f"pred: vectors of 0 dimensions (shape {tuple(p.shape)}); save the "
                        "outputs as [N, D] with D >= 1")
    labels = _per_row(labels, "labels", n_rows, slots)
    groups = _per_row(groups, "groups", n_rows, slots)

    stats: dict = {"rows": n_rows, "dim": dim, "device": str(p.device)}
    if slots is not None:
        stats["sets"], stats["slots"] = int(slots.shape[0]), int(slots.shape[1])
    findings = []
    non_finite = _non_finite_rows(p, t)
    if non_finite:
        stats["non_finite_rows"] = sum(non_finite.values())
        findings.append(NON_FINITE_OUTPUT.finding(
            "; ".join(f"{count} of {n_rows} rows of {name} hold NaN or inf"
                      for name, count in non_finite.items()),
            count=sum(non_finite.values())))
        return Report(target, "embeddings", findings, stats)

    p, t = _in_range(p, t)
    sample = {"max_samples": max_samples, "seed": seed}
    norms = p.norm(dim=1)
    stats["norm_mean"], stats["norm_std"] = _floats(norms.mean(), norms.std(correction=0))
    stats["effective_rank"] = metrics.effective_rank(p)
    stats["effective_rank_fraction"] = stats["effective_rank"] / min(n_rows, dim)
    stats["relative_spread"] = metrics.relative_spread(p)
    stats["uniformity"] = metrics.uniformity(p, **sample)
    moments = None
    if t is not None:
        target_norms = t.norm(dim=1)
        stats["target_norm_mean"], stats["target_norm_std"] = _floats(
            target_norms.mean(), target_norms.std(correction=0))
        stats["target_effective_rank"] = metrics.effective_rank(t)
        stats["unit_norm_share"] = _unit_norm_share(norms, limits.unit_norm_tol)
        stats["target_unit_norm_share"] = _unit_norm_share(target_norms, limits.unit_norm_tol)
        baseline = metrics.mean_vector_baseline(p, t)
        stats.update({key: baseline[key] for key in
                      ("cos_pred_target", "cos_mean_target", "cos_pred_mean")})
        stats["mean_vector_margin"] = baseline["margin"]
        stats["alignment"] = metrics.alignment(p, t)
        moments = metrics.moment_comparison(p, t)
        for key in ("std_ratio_median", "std_ratio_min", "std_ratio_max", "mean_shift_median",
                    "mean_shift_max", "constant_target_dims"):
            stats[key] = moments[key]
        stats["contrastive_accuracy"] = metrics.contrastive_accuracy(p, t, groups, **sample)
        stats.update(metrics.recall_at_k(p, t, groups, **sample))
    if labels is not None:
        stats["labels"] = int(labels.max().item()) + 1
        try:
            stats["silhouette"] = metrics.silhouette(p, labels, **sample)
        except ValueError as exc:  # one label, or one row per label: nothing to separate
            stats["silhouette_skipped"] = str(exc)
        stats["label_spread"] = metrics.label_spread(p, labels)
        if math.isnan(stats["label_spread"]):  # every label has one row: nothing to compare
            del stats["label_spread"]
        elif t is not None:
            stats["target_label_spread"] = metrics.label_spread(t, labels)
            stats["label_spread_ratio"] = (stats["label_spread"] / stats["target_label_spread"]
                                           if stats["target_label_spread"] > 0 else math.inf)
        sampled_rows = min(n_rows, max_samples or n_rows)
        stats["knn_purity"] = metrics.knn_purity(p, labels, k=min(10, sampled_rows - 1),
                                                 **sample)
    if slots is not None:
        within = metrics.within_set_cosine(slots)
        stats["slot_cosine_mean"], stats["slot_cosine_max"] = within["mean"], within["max"]
        stats["slot_spread_ratio"] = within["spread_ratio"]

    findings += _judge(stats, limits, moments)
    return Report(target, "embeddings", findings, stats)


def _judge(stats: dict, limits: Thresholds, moments: dict | None) -> list:
    """The findings that ``stats`` (and the per-dimension ``moments``, with targets) imply."""
    has_targets = moments is not None
    findings = []
    rank, fraction = stats["effective_rank"], stats["effective_rank_fraction"]
    if has_targets:
        margin = stats["mean_vector_margin"]
        if margin < limits.mean_vector_margin:
            findings.append(MEAN_VECTOR_COLLAPSE.finding(
                f"cos(output, target) = {stats['cos_pred_target']:.4f} against "
                f"{stats['cos_mean_target']:.4f} for the targets' mean vector (margin "
                f"{margin:.4f} < {limits.mean_vector_margin}); cos(output, mean target) = "
                f"{stats['cos_pred_mean']:.4f}",
                examples=[_rounded({key: stats[key] for key in
                                    ("cos_pred_target", "cos_mean_target", "cos_pred_mean")})]))
    rank_ratio = rank / stats["target_effective_rank"] if has_targets else math.inf
    if fraction < limits.min_rank_fraction or rank_ratio < limits.min_rank_ratio:
        message = (f"effective rank {rank:.1f} of at most {min(stats['rows'], stats['dim'])} "
                   f"({fraction:.3f}; floor {limits.min_rank_fraction})")
        if has_targets:
            message += (f"; targets' effective rank {stats['target_effective_rank']:.1f} "
                        f"(ratio {rank_ratio:.3f}; floor {limits.min_rank_ratio})")
        findings.append(DIMENSIONAL_COLLAPSE.finding(
            message, examples=[_rounded({"effective_rank": rank,
                                         "effective_rank_fraction": fraction})]))
    if has_targets:
        pred_share, target_share = stats["unit_norm_share"], stats["target_unit_norm_share"]
        if pred_share >= limits.unit_norm_share and target_share < 0.5:
            findings.append(UNIT_NORM_OUTPUT.finding(
                f"{pred_share:.1%} of outputs have norm 1 ± {limits.unit_norm_tol}, but only "
                f"{target_share:.1%} of targets; target norms average "
                f"{stats['target_norm_mean']:.4g}",
                count=round(pred_share * stats["rows"]),
                examples=[_rounded({"norm_mean": stats["norm_mean"],
                                    "target_norm_mean": stats["target_norm_mean"]})]))
        ratio, shift = stats["std_ratio_median"], stats["mean_shift_median"]
        if not (limits.min_std_ratio <= ratio <= limits.max_std_ratio) or \
                shift > limits.max_mean_shift:
            off = moments["std_ratio"]
            outside = int(((off < limits.min_std_ratio) | (off > limits.max_std_ratio)).sum())
            findings.append(MOMENT_MISMATCH.finding(
                f"median per-dimension std ratio (outputs / targets) {ratio:.3g} (allowed "
                f"{limits.min_std_ratio}..{limits.max_std_ratio}); median mean shift "
                f"{shift:.3g} target stds (allowed {limits.max_mean_shift}); "
                f"{outside} of {stats['dim']} dimensions have a std ratio outside the range",
                count=outside, examples=[_rounded(row) for row in moments["worst_std_dims"]]))
    spread = stats["relative_spread"]
    if spread < limits.min_relative_spread:
        findings.append(POINT_COLLAPSE.finding(
            f"all {stats['rows']} outputs are one point: total variance is {spread:.3g} of the "
            f"mean squared norm (floor {limits.min_relative_spread})",
            count=stats["rows"], examples=[_rounded({"relative_spread": spread,
                                                     "uniformity": stats["uniformity"]})]))
    elif "label_spread_ratio" in stats:
        ratio = stats["label_spread_ratio"]
        if ratio < limits.min_label_spread_ratio:
            findings.append(POINT_COLLAPSE.finding(
                f"the outputs of each label are one point: their spread within a label is "
                f"{ratio:.3g} of the targets' (floor {limits.min_label_spread_ratio}) over "
                f"{stats['labels']} labels", count=stats["labels"],
                examples=[_rounded({key: stats[key] for key in
                                    ("label_spread", "target_label_spread",
                                     "label_spread_ratio")})]))
    elif "label_spread" in stats and stats["label_spread"] < limits.min_label_spread:
        findings.append(POINT_COLLAPSE.finding(
            f"the outputs of each label are one point: mean squared distance to the label's "
            f"mean is {stats['label_spread']:.3g} of the mean squared norm (floor "
            f"{limits.min_label_spread}) over {stats['labels']} labels",
            count=stats["labels"], examples=[_rounded({"label_spread": stats["label_spread"]})]))
    if "slot_spread_ratio" in stats and stats["slot_spread_ratio"] < limits.min_slot_spread:
        findings.append(SLOTS_IDENTICAL.finding(
            f"slots within a set vary {stats['slot_spread_ratio']:.3g} as much as slots across "
            f"the batch (floor {limits.min_slot_spread}); mean pairwise cosine within sets "
            f"{stats['slot_cosine_mean']:.4f}",
            count=stats["sets"], examples=[_rounded({key: stats[key] for key in
                                                     ("slot_spread_ratio", "slot_cosine_mean")})]))
    return findings


def _rounded(values: dict) -> dict:
    """An example's numbers to 4 significant digits (non-finite values stay as they are)."""
    return {key: float(f"{value:.4g}") if isinstance(value, float) else value
            for key, value in values.items()}


def _load(values, name: str, ndims: tuple[int, ...]) -> torch.Tensor:
    try:
        tensor = metrics.as_float(values, name=name, ndim=None)
    except TypeError as exc:
        raise ToolError(str(exc)) from exc
    if tensor.dim() not in ndims:
        raise ToolError(f"{name}: expected shape [N, D] or slots [N, S, D], got "
                        f"{tuple(tensor.shape)}")
    return tensor


def _per_row(values, name: str, n_rows: int, slots):
    """``values`` with one entry per row; per-set values of slots are repeated per slot."""
    if values is None:
        return None
    try:
        codes, _ = metrics.as_codes(values, name=name)
    except ValueError as exc:
        raise ToolError(str(exc)) from exc
    if slots is not None and codes.shape[0] == slots.shape[0]:
        codes = codes.repeat_interleave(slots.shape[1])
    if codes.shape[0] != n_rows:
        raise ToolError(f"{name} has {codes.shape[0]} values for {n_rows} rows of pred")
    return codes


def _non_finite_rows(p: torch.Tensor, t) -> dict[str, int]:
    counts = {}
    for name, values in (("pred", p), ("targets", t)):
        if values is not None:
            bad = int((~torch.isfinite(values)).any(dim=1).sum().item())
            if bad:
                counts[name] = bad
    return counts


FLOAT32_SAFE = (1e-15, 1e15)
"""Largest |value| within which float32 sums of squares over up to 1e8 dimensions neither
overflow (3.4e38) nor underflow to 0; outside it the metrics are computed in float64."""


def _in_range(p: torch.Tensor, t):
    """``p`` and ``t`` in float64 when a float32 norm or Gram entry would overflow to inf (or
    underflow to 0): finite outputs near 1e30 must not read as inf norms and a false
    MEAN_VECTOR_COLLAPSE."""
    if p.dtype == torch.float64:
        return p, t
    largest = max(float(x.abs().max().item()) for x in (p, t) if x is not None and x.numel())
    if largest == 0 or FLOAT32_SAFE[0] <= largest <= FLOAT32_SAFE[1]:
        return p, t
    return p.to(torch.float64), None if t is None else t.to(torch.float64)


def _unit_norm_share(norms: torch.Tensor, tol: float) -> float:
    return float(((norms - 1).abs() <= tol).to(torch.float64).mean().item())


def _floats(*values: torch.Tensor) -> list[float]:
    return torch.stack(values).tolist()
