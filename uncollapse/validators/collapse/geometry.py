"""Geometry of outputs against targets and of one set: the mean-vector baseline,
per-dimension moments, alignment and uniformity, the VICReg variance floor, spread (overall,
within labels, within sets of slots)."""

from __future__ import annotations

import math

import torch

from uncollapse.validators.collapse.tensors import (
    MAX_SAMPLES,
    as_codes,
    as_float,
    check_paired,
    common_dtype,
    normalize,
    sample_rows,
    take,
)

__all__ = ["alignment", "label_spread", "mean_vector_baseline", "moment_comparison",
           "relative_spread", "uniformity", "variance_floor", "within_set_cosine"]


def mean_vector_baseline(pred, targets) -> dict:
    """How much better the predictions are than predicting the targets' mean vector.

    With ``t̄ = mean_i t_i`` and ``cos`` the cosine similarity::

        cos_pred_target = mean_i cos(p_i, t_i)
        cos_mean_target = mean_i cos(t̄, t_i)          # the constant "mean vector" predictor
        margin          = cos_pred_target - cos_mean_target
        cos_pred_mean   = mean_i cos(p_i, t̄)          # near 1: every output is the mean

    A predictor that regressed to the mean of its targets (a common collapse of next-embedding
    and masked-prediction models trained with MSE or cosine loss) scores ``margin <= 0``: its
    cosine to the targets is no better than that of the one constant vector. ``t̄`` is the
    in-sample mean, which favours the baseline slightly; the comparison is the one used for
    next-concept prediction in the Large Concept Model report (Barrault et al. 2024).
    """
    p, t = as_float(pred, name="pred"), as_float(targets, name="targets")
    check_paired(p, t)
    dtype = common_dtype(p, t)
    p, t = normalize(p.to(dtype)), t.to(dtype)
    mean_direction = normalize(t.mean(dim=0))
    t = normalize(t)
    cos_pred_target = (p * t).sum(dim=1).mean()
    cos_mean_target = (t @ mean_direction).mean()
    cos_pred_mean = (p @ mean_direction).mean()
    values = torch.stack([cos_pred_target, cos_mean_target, cos_pred_mean]).tolist()
    return {"cos_pred_target": values[0], "cos_mean_target": values[1],
            "margin": values[0] - values[1], "cos_pred_mean": values[2]}


def moment_comparison(pred, targets, *, worst: int = 5, constant: float = 1e-4) -> dict:
    """Per-dimension mean and standard deviation of the predictions against the targets'.

    For each dimension d (population moments over rows)::

        std_ratio[d]  = std(p[:, d]) / std(t[:, d])
        mean_shift[d] = |mean(p[:, d]) - mean(t[:, d])| / std(t[:, d])

    A decoder trained on the targets expects their moments; a std ratio far from 1 (outputs
    shrunk towards the mean, or rescaled by a normalisation the targets never had) or a mean
    shift of a sizeable fraction of a standard deviation means its input is off-distribution.

    Dimensions where the targets are (nearly) constant, with a std at most ``constant`` times
    the median target std (real encoders have a few such dimensions), have no ratio: they are
    nan in the arrays, left out of the summaries and counted in ``constant_target_dims``.
    Returns the median, minimum and maximum of ``std_ratio``, the
    median and maximum of ``mean_shift``, the full per-dimension arrays (numpy), and the
    ``worst`` dimensions by ``|log std_ratio|`` (``worst_std_dims``) and by ``mean_shift``
    (``worst_mean_dims``) as lists of dicts.
    """
    p, t = as_float(pred, name="pred"), as_float(targets, name="targets")
    check_paired(p, t)
    dtype = common_dtype(p, t)
    p, t = p.to(dtype), t.to(dtype)
    p_std, t_std = p.std(dim=0, correction=0), t.std(dim=0, correction=0)
    p_mean, t_mean = p.mean(dim=0), t.mean(dim=0)
    floor = (constant * t_std.median()).clamp_min(torch.finfo(dtype).tiny)
    varying = t_std > floor
    nan = torch.full_like(t_std, math.nan)
    std_ratio = torch.where(varying, p_std / t_std.clamp_min(floor), nan)
    mean_shift = torch.where(varying, (p_mean - t_mean).abs() / t_std.clamp_min(floor), nan)
    # nan becomes -1, below every real value: constant dimensions never count among the worst
    order_std = torch.argsort(std_ratio.log().abs().nan_to_num(nan=-1.0), descending=True)
    order_mean = torch.argsort(mean_shift.nan_to_num(nan=-1.0), descending=True)
    valid_ratio, valid_shift = std_ratio[varying], mean_shift[varying]
    if valid_ratio.numel():
        summary = torch.stack([valid_ratio.quantile(0.5), valid_ratio.min(), valid_ratio.max(),
                               valid_shift.quantile(0.5), valid_shift.max()]).tolist()
    else:
        summary = [math.nan] * 5
    n_worst = min(worst, int(varying.sum().item()))
    host = {name: value.cpu().numpy() for name, value in
            {"std_ratio": std_ratio, "mean_shift": mean_shift, "pred_std": p_std,
             "target_std": t_std, "pred_mean": p_mean, "target_mean": t_mean,
             "order_std": order_std[:n_worst], "order_mean": order_mean[:n_worst]}.items()}

    def dim_row(d):
        d = int(d)
        return {"dim": d, **{key: float(host[key][d]) for key in
                             ("std_ratio", "pred_std", "target_std", "mean_shift", "pred_mean",
                              "target_mean")}}

    return {"std_ratio_median": summary[0], "std_ratio_min": summary[1],
            "std_ratio_max": summary[2], "mean_shift_median": summary[3],
            "mean_shift_max": summary[4],
            "constant_target_dims": int((~varying).sum().item()),
            "std_ratio": host["std_ratio"], "mean_shift": host["mean_shift"],
            "worst_std_dims": [dim_row(d) for d in host["order_std"]],
            "worst_mean_dims": [dim_row(d) for d in host["order_mean"]]}


def alignment(x, y, *, alpha: float = 2.0) -> float:
    """Alignment of positive pairs (Wang & Isola, ICML 2020).

    With ``f`` the L2-normalised rows, over paired rows ``(x_i, y_i)``::

        alignment = mean_i ||f(x_i) - f(y_i)||^alpha

    0 when every pair coincides, 4 (alpha 2) when every pair points in opposite directions.
    """
    a, b = as_float(x, name="x"), as_float(y, name="y")
    check_paired(a, b, ("x", "y"))
    dtype = common_dtype(a, b)
    distance = (normalize(a.to(dtype)) - normalize(b.to(dtype))).norm(dim=1)
    return float(distance.pow(alpha).mean().item())


def uniformity(x, *, t: float = 2.0, max_samples: int | None = MAX_SAMPLES,
               seed: int = 0) -> float:
    """Uniformity on the hypersphere (Wang & Isola, ICML 2020).

    With ``f`` the L2-normalised rows, over all pairs of distinct rows::

        uniformity = log mean_{i != j} exp(-t ||f(x_i) - f(x_j)||²)

    0 when every row is the same vector (the collapsed maximum); more negative is more
    uniform (about -3.8 for t = 2 and many random directions in high dimension). Computed with
    a log-sum-exp over the off-diagonal of the Gram matrix, on a seeded subset of
    ``max_samples`` rows when there are more.
    """
    u = normalize(as_float(x, name="x"))
    u = take(u, sample_rows(u.shape[0], max_samples, seed, u.device))
    n = u.shape[0]
    if n < 2:
        raise ValueError("uniformity needs at least two rows")
    exponent = (2 * (u @ u.T) - 2).clamp_max(0).mul_(t)
    exponent.fill_diagonal_(-math.inf)  # pairs of distinct rows only
    log_sum = torch.logsumexp(exponent.reshape(-1), dim=0)
    return float((log_sum - math.log(n * (n - 1))).item())


def variance_floor(x, *, gamma: float = 1.0, eps: float = 1e-4) -> dict:
    """The VICReg variance term (Bardes, Ponce, LeCun, ICLR 2022).

    Per dimension d, with the unbiased variance over rows::

        std_d = sqrt(Var(x[:, d]) + eps)
        loss  = mean_d max(0, gamma - std_d)

    Returns ``loss``, ``share_below`` (the share of dimensions with ``std_d < gamma``) and
    ``min_std``. The floor ``gamma`` is in the units of ``x``: VICReg uses 1 on unnormalised
    projector outputs; for unit-norm embeddings of dimension D a spread-out set has std about
    ``1/sqrt(D)``, so pick gamma accordingly.
    """
    values = as_float(x, name="x")
    if values.shape[0] < 2:
        raise ValueError("variance_floor needs at least two rows")
    std = (values.to(torch.float64).var(dim=0) + eps).sqrt()
    summary = torch.stack([torch.relu(gamma - std).mean(), (std < gamma).to(std.dtype).mean(),
                           std.min()]).tolist()
    return {"loss": summary[0], "share_below": summary[1], "min_std": summary[2]}


def relative_spread(x) -> float:
    """Total variance over mean squared norm: ``Σ_d Var(x[:, d]) / mean_i ||x_i||²``.

    0 when every row is the same point; 1 for centred data. Unlike cosine statistics it sees
    a set that collapsed to one point far from the origin (population variance).
    """
    values = as_float(x, name="x")
    total = values.var(dim=0, correction=0).sum()
    power = values.pow(2).sum(dim=1).mean()
    if power.item() == 0:
        return 0.0
    return float((total / power).item())


def label_spread(x, labels) -> float:
    """Spread of the rows around their label's mean, over the mean squared norm.

    With ``c_k`` the mean of the rows of label k, over the rows ``M`` whose label has at least
    two rows::

        label_spread = mean_{i in M} ||x_i - c_{label(i)}||² / mean_{i in M} ||x_i||²

    0 when the rows of every label sit on one point (whatever the distance between labels),
    and ``relative_spread`` when there is one label. Unlike the silhouette it does not grow
    when labels move apart, so well-separated but varied labels score well above 0. A label of
    one row is trivially one point and is left out; nan when every label has one row.
    """
    values = as_float(x, name="x").to(torch.float64)
    codes, n_labels = as_codes(labels, device=values.device)
    if codes.shape[0] != values.shape[0]:
        raise ValueError(f"labels has {codes.shape[0]} values for {values.shape[0]} rows")
    counts = torch.bincount(codes, minlength=n_labels)
    shared = counts[codes] > 1
    sums = torch.zeros((n_labels, values.shape[1]), dtype=torch.float64, device=values.device)
    sums.index_add_(0, codes, values)
    centres = sums / counts.clamp_min(1).to(torch.float64)[:, None]
    within = torch.where(shared, (values - centres[codes]).pow(2).sum(dim=1), 0).sum()
    power = torch.where(shared, values.pow(2).sum(dim=1), 0).sum()
    rows, power_value = torch.stack([shared.sum().to(torch.float64), power]).tolist()
    if rows == 0:
        return math.nan
    if power_value == 0:
        return 0.0
    return float((within / power).item())


def within_set_cosine(sets) -> dict:
    """Pairwise cosine statistics of the vectors within each set (slots of one image).

    For ``sets`` of shape [N, S, D] (N sets of S slot vectors), over the S(S-1)/2 pairs of
    distinct slots of every set: ``mean``, ``std``, ``min`` and ``max`` of their cosine, and
    ``share_above_0.95``. Also ``spread_ratio``, the mean squared distance between slots of one
    set over the mean squared distance between any two slots of the whole batch::

        spread_ratio = mean_n mean_{i != j} ||s_ni - s_nj||² / mean_{a != b} ||s_a - s_b||²

    Near 0 when every set's slots are the same vector (the slots did not split the scene),
    about 1 when slots vary within a set as much as across sets. A shared offset of every slot
    changes the cosines but not the ratio. 0 when every slot of the batch is identical.
    """
    values = as_float(sets, name="sets", ndim=3)
    n, s, _ = values.shape
    if s < 2:
        raise ValueError(f"sets: need at least two slots per set, got shape {tuple(values.shape)}")
    u = normalize(values)
    cosine = u @ u.transpose(1, 2)
    upper = torch.triu(torch.ones(s, s, dtype=torch.bool, device=values.device), diagonal=1)
    pairs = cosine[:, upper]
    # mean_{i != j} ||x_i - x_j||² = 2 m/(m-1) * mean_i ||x_i - mean||² for a set of m vectors
    within = values.var(dim=1, correction=0).sum(dim=1).mean() * 2 * s / (s - 1)
    flat = values.reshape(n * s, -1)
    across = flat.var(dim=0, correction=0).sum() * 2 * (n * s) / (n * s - 1)
    ratio = torch.where(across > 0, within / across.clamp_min(1e-30), torch.zeros_like(across))
    summary = torch.stack([pairs.mean(), pairs.std(correction=0) if pairs.numel() > 1
                           else torch.zeros((), dtype=pairs.dtype, device=pairs.device),
                           pairs.min(), pairs.max(), (pairs > 0.95).to(pairs.dtype).mean(),
                           ratio]).tolist()
    return {"mean": summary[0], "std": summary[1], "min": summary[2], "max": summary[3],
            "share_above_0.95": summary[4], "spread_ratio": summary[5]}
