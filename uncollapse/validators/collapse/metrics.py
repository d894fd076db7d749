"""Collapse metrics for embeddings and model outputs.

Every function takes numpy arrays or torch tensors. A numpy array is wrapped with
``torch.from_numpy`` (no copy); a tensor is used where it lives, so a CUDA batch is measured
on its GPU and never copied to the host. Results come back as Python floats, dicts of floats,
or small numpy arrays.

Conventions: ``x`` is ``[N, D]`` (rows are embeddings); ``pred`` and ``targets`` are paired
``[N, D]`` (row i of ``pred`` is the model's output for target i); ``labels`` and ``groups`` are
``[N]`` (any integer or string values). Half-precision input is measured in float32; sums whose
cancellation matters (singular values, silhouette, ARI) are computed in float64.

Metrics that compare every row with every other row (uniformity, silhouette, k-NN purity,
contrastive accuracy, recall@k) take ``max_samples`` and ``seed``: above ``max_samples`` rows
they are computed on a seeded random subset of rows, drawn with a ``torch.Generator`` of that
seed, so the same call always measures the same rows.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

#: Default cap on the rows of the all-pairs metrics (memory and time grow with its square).
MAX_SAMPLES = 4096
#: Rows of queries per block in the blockwise all-pairs metrics.
_BLOCK = 1024


# --------------------------------------------------------------------------------------------
# input handling


def as_tensor(values, *, name: str = "input") -> torch.Tensor:
    """A tensor view of ``values`` on the device it already lives on.

    numpy arrays are shared with ``torch.from_numpy`` (non-contiguous ones are made contiguous
    first); tensors are detached, never moved.
    """
    if isinstance(values, torch.Tensor):
        return values.detach()
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a numeric array, got dtype {array.dtype}")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    with warnings.catch_warnings():
        # read-only arrays (memory maps, np.load with mmap_mode) are only ever read here
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def as_float(values, *, name: str = "input", ndim: int | None = 2) -> torch.Tensor:
    """``as_tensor`` in a floating dtype of at least float32, checked to have ``ndim`` dims."""
    tensor = as_tensor(values, name=name)
    if ndim is not None and tensor.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(tensor.shape)}")
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.to(torch.float32)
    return tensor


def as_codes(labels, *, name: str = "labels", device=None) -> tuple[torch.Tensor, int]:
    """``(codes, n_distinct)``: labels of any values renumbered 0..K-1 on ``device``."""
    if isinstance(labels, torch.Tensor):
        if labels.dim() != 1:
            raise ValueError(f"{name}: expected one dimension, got shape {tuple(labels.shape)}")
        _, codes = torch.unique(labels.detach(), return_inverse=True)
    else:
        array = np.asarray(labels)
        if array.ndim != 1:
            raise ValueError(f"{name}: expected one dimension, got shape {array.shape}")
        _, inverse = np.unique(array, return_inverse=True)
        codes = torch.from_numpy(inverse.reshape(-1).astype(np.int64))
    if device is not None:
        codes = codes.to(device)
    n_distinct = int(codes.max().item()) + 1 if codes.numel() else 0
    return codes, n_distinct


def _check_paired(a: torch.Tensor, b: torch.Tensor, names=("pred", "targets")) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} has shape {tuple(a.shape)} but {names[1]} has "
                         f"{tuple(b.shape)}; they must be paired row for row")
    if a.device != b.device:
        raise ValueError(f"{names[0]} is on {a.device} but {names[1]} on {b.device}; "
                         "move both to one device")


def _common_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm; an all-zero row stays zero."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def sample_rows(n: int, max_samples: int | None, seed: int, device) -> torch.Tensor | None:
    """Sorted indices of a seeded random subset of ``max_samples`` rows, or None for all rows."""
    if max_samples is None or n <= max_samples:
        return None
    generator = torch.Generator().manual_seed(int(seed))
    index = torch.randperm(n, generator=generator)[:max_samples]
    return torch.sort(index).values.to(device)


def _take(x: torch.Tensor | None, index: torch.Tensor | None) -> torch.Tensor | None:
    return x if x is None or index is None else x[index]


# --------------------------------------------------------------------------------------------
# prediction vs target


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
    _check_paired(p, t)
    dtype = _common_dtype(p, t)
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
    _check_paired(p, t)
    dtype = _common_dtype(p, t)
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



# --------------------------------------------------------------------------------------------
# spectrum and spread of one set


def singular_values(x, *, center: bool = False) -> torch.Tensor:
    """Singular values of ``x`` ([N, D]), descending, float64, on ``x``'s device.

    Computed as the square roots of the eigenvalues of the smaller Gram matrix (``XᵀX`` when
    N >= D, else ``XXᵀ``) in float64: for tall matrices this is several times faster than an
    SVD of ``x`` itself and, in float64, accurate to about 1e-8 of the largest singular value,
    so exact zeros stay near zero (a float32 Gram matrix would turn them into noise of about
    3e-4 of the largest and inflate the effective rank). ``center=True`` subtracts the column
    means first.
    """
    x = as_float(x, name="x")
    if center:
        # in float64: a float32 subtraction leaves rounding residue of about 1e-7 of the mean
        x = x.to(torch.float64)
        x = x - x.mean(dim=0, keepdim=True)
    n, d = x.shape
    if min(n, d) == 0:
        return torch.zeros(0, dtype=torch.float64, device=x.device)
    gram = torch.zeros((min(n, d), min(n, d)), dtype=torch.float64, device=x.device)
    if n >= d:
        # accumulate XᵀX block by block so the float64 copy of x is never materialised whole
        step = max(1, (1 << 22) // max(d, 1))
        for start in range(0, n, step):
            block = x[start:start + step].to(torch.float64)
            gram.addmm_(block.T, block)
    else:
        x64 = x.to(torch.float64)
        gram = x64 @ x64.T
    eigenvalues = torch.linalg.eigvalsh(gram)
    return eigenvalues.clamp_min(0).sqrt().flip(0)


def effective_rank(x, *, center: bool = False, eps: float = 1e-7) -> float:
    """RankMe: the exponential of the entropy of the normalised singular values.

    With ``σ_k`` the singular values of ``x`` ([N, D]) (Garrido, Balestriero, Najman, LeCun,
    "RankMe: Assessing the downstream performance of pretrained self-supervised
    representations by their rank", ICML 2023; after Roy & Vetterli 2007)::

        p_k    = σ_k / Σ_j σ_j + eps
        RankMe = exp(-Σ_k p_k log p_k)

    It lies between 1 (one direction) and min(N, D) (a flat spectrum); rank-r data scores at
    most r. ``eps`` = 1e-7 as in the paper. An all-zero ``x`` scores 1.
    """
    sigma = singular_values(x, center=center)
    total = sigma.sum()
    if sigma.numel() == 0 or total.item() == 0:
        return 1.0
    p = sigma / total + eps
    return float(torch.exp(-(p * p.log()).sum()).item())


def alignment(x, y, *, alpha: float = 2.0) -> float:
    """Alignment of positive pairs (Wang & Isola, ICML 2020).

    With ``f`` the L2-normalised rows, over paired rows ``(x_i, y_i)``::

        alignment = mean_i ||f(x_i) - f(y_i)||^alpha

    0 when every pair coincides, 4 (alpha 2) when every pair points in opposite directions.
    """
    a, b = as_float(x, name="x"), as_float(y, name="y")
    _check_paired(a, b, ("x", "y"))
    dtype = _common_dtype(a, b)
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
    u = _take(u, sample_rows(u.shape[0], max_samples, seed, u.device))
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

    With ``c_k`` the mean of the rows of label k::

        label_spread = mean_i ||x_i - c_{label(i)}||² / mean_i ||x_i||²

    0 when the rows of every label sit on one point (whatever the distance between labels),
    and ``relative_spread`` when there is one label. Unlike the silhouette it does not grow
    when labels move apart, so well-separated but varied labels score well above 0.
    """
    values = as_float(x, name="x").to(torch.float64)
    codes, n_labels = as_codes(labels, device=values.device)
    if codes.shape[0] != values.shape[0]:
        raise ValueError(f"labels has {codes.shape[0]} values for {values.shape[0]} rows")
    counts = torch.bincount(codes, minlength=n_labels).to(torch.float64)
    sums = torch.zeros((n_labels, values.shape[1]), dtype=torch.float64, device=values.device)
    sums.index_add_(0, codes, values)
    centres = sums / counts.clamp_min(1)[:, None]
    power = values.pow(2).sum(dim=1).mean()
    if power.item() == 0:
        return 0.0
    within = (values - centres[codes]).pow(2).sum(dim=1).mean()
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


# --------------------------------------------------------------------------------------------
# structure by labels


def silhouette(x, labels, *, max_samples: int | None = MAX_SAMPLES, seed: int = 0) -> float:
    """Mean silhouette coefficient with cosine distance (Rousseeuw 1987).

    With ``dist(a, b) = 1 - cos(a, b)``, for row i of label ``c``::

        a_i = mean distance to the other rows of label c
        b_i = min over labels k != c of the mean distance to the rows of label k
        s_i = (b_i - a_i) / max(a_i, b_i)     (0 for a label of one row, and for 0/0)

    and the result is ``mean_i s_i``: 1 when each label's rows sit on one point far from the
    others, about 0 when labels do not separate. Matches scikit-learn's
    ``silhouette_score(x, labels, metric="cosine")``. Because the cosine distance is linear in
    the normalised rows, the distance sums come from per-label sums of normalised rows (float64)
    in O(N K D), without an N x N matrix. Above ``max_samples`` rows it is computed on a seeded
    random subset, as ``silhouette_score(..., sample_size=...)`` does. Needs 2 <= labels < rows.
    """
    u = normalize(as_float(x, name="x").to(torch.float64))
    codes, _ = as_codes(labels, device=u.device)
    if codes.shape[0] != u.shape[0]:
        raise ValueError(f"labels has {codes.shape[0]} values for {u.shape[0]} rows")
    index = sample_rows(u.shape[0], max_samples, seed, u.device)
    u, codes = _take(u, index), _take(codes, index)
    _, codes = torch.unique(codes, return_inverse=True)
    n = u.shape[0]
    n_labels = int(codes.max().item()) + 1
    if not 2 <= n_labels <= n - 1:
        raise ValueError(f"silhouette needs between 2 and {n - 1} distinct labels, got {n_labels}")
    counts = torch.bincount(codes, minlength=n_labels).to(torch.float64)
    sums = torch.zeros((n_labels, u.shape[1]), dtype=torch.float64, device=u.device)
    sums.index_add_(0, codes, u)
    distance_sums = (counts - u @ sums.T).clamp_min(0)
    own = torch.nn.functional.one_hot(codes, n_labels).to(torch.bool)
    own_count = counts[codes]
    a = distance_sums[own] / (own_count - 1).clamp_min(1)
    b = (distance_sums / counts).masked_fill(own, math.inf).min(dim=1).values
    s = ((b - a) / torch.maximum(a, b)).nan_to_num(nan=0.0)
    s = torch.where(own_count > 1, s, torch.zeros_like(s))
    return float(s.mean().item())


def cluster_purity(clusters, labels) -> float:
    """Share of rows whose label is the majority label of their cluster.

    ``purity = (1/N) Σ_k max_c |cluster k ∩ label c|`` (Manning, Raghavan, Schütze,
    "Introduction to Information Retrieval", 2008, §16.3). 1 when every cluster holds one
    label; putting each row in a cluster of its own also scores 1, so read it with the cluster
    count.
    """
    cluster_codes, n_clusters = as_codes(clusters, name="clusters")
    label_codes, n_labels = as_codes(labels, device=cluster_codes.device)
    if cluster_codes.shape != label_codes.shape:
        raise ValueError(f"clusters has {cluster_codes.shape[0]} values, labels "
                         f"{label_codes.shape[0]}")
    contingency = torch.bincount(cluster_codes * n_labels + label_codes,
                                 minlength=n_clusters * n_labels).view(n_clusters, n_labels)
    return float((contingency.max(dim=1).values.sum() / cluster_codes.shape[0]).item())


def knn_purity(x, labels, *, k: int = 10, max_samples: int | None = MAX_SAMPLES,
               seed: int = 0) -> float:
    """Mean share of each row's k nearest neighbours (cosine, itself excluded) with its label.

    ``knn_purity = mean_i |{j in kNN(i) : label_j = label_i}| / k``. High when labels form
    tight neighbourhoods; near the label's frequency when they do not. Computed blockwise over
    a seeded subset of ``max_samples`` rows (neighbours are searched within the subset).
    """
    u = normalize(as_float(x, name="x"))
    codes, _ = as_codes(labels, device=u.device)
    if codes.shape[0] != u.shape[0]:
        raise ValueError(f"labels has {codes.shape[0]} values for {u.shape[0]} rows")
    index = sample_rows(u.shape[0], max_samples, seed, u.device)
    u, codes = _take(u, index), _take(codes, index)
    n = u.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and {n - 1} for {n} rows, got {k}")
    same = torch.zeros((), dtype=torch.float64, device=u.device)
    for start in range(0, n, _BLOCK):
        block = u[start:start + _BLOCK] @ u.T
        rows = torch.arange(start, start + block.shape[0], device=u.device)
        block[rows - start, rows] = -math.inf
        neighbours = block.topk(k, dim=1).indices
        same += (codes[neighbours] == codes[rows, None]).sum()
    return float((same / (n * k)).item())


# --------------------------------------------------------------------------------------------
# retrieval between predictions and targets


def contrastive_accuracy(pred, targets, groups=None, *, metric: str = "l2",
                         max_samples: int | None = MAX_SAMPLES, seed: int = 0) -> float:
    """Share of in-batch distractors that lie farther from the prediction than its target.

    As in the Large Concept Model report (Barrault et al. 2024)::

        CA = mean_i mean_{j in D(i)} [ d(p_i, t_j) > d(p_i, t_i) ]

    where ``D(i)`` holds the targets of other groups than row i's (every other row when
    ``groups`` is None) and ``d`` is the L2 distance (``metric="l2"``) or the cosine distance
    (``metric="cosine"``). 1 is perfect, 0.5 is chance, and an output that collapsed to the
    mean vector scores about 0.5. Rows without a distractor are left out. Over a seeded subset
    of ``max_samples`` rows when there are more (the subset is the batch).
    """
    if metric not in ("l2", "cosine"):
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    p, t = as_float(pred, name="pred"), as_float(targets, name="targets")
    _check_paired(p, t)
    dtype = _common_dtype(p, t)
    p, t = p.to(dtype), t.to(dtype)
    codes = _group_codes(groups, p)
    index = sample_rows(p.shape[0], max_samples, seed, p.device)
    p, t, codes = _take(p, index), _take(t, index), _take(codes, index)
    if metric == "cosine":
        p, t = normalize(p), normalize(t)
    t_sq = t.pow(2).sum(dim=1)
    farther = torch.zeros((), dtype=torch.float64, device=p.device)
    queries = torch.zeros((), dtype=torch.float64, device=p.device)
    n = p.shape[0]
    for start in range(0, n, _BLOCK):
        rows = torch.arange(start, min(start + _BLOCK, n), device=p.device)
        # squared L2 distance up to the row's constant ||p_i||²; for unit rows it orders as the
        # cosine distance does, so one expression serves both metrics
        distance = t_sq[None, :] - 2 * (p[rows] @ t.T)
        own = distance[rows - start, rows]
        distractor = codes[None, :] != codes[rows, None]
        n_distractors = distractor.sum(dim=1)
        farther_count = ((distance > own[:, None]) & distractor).sum(dim=1)
        share = farther_count.to(torch.float64) / n_distractors.clamp_min(1)
        farther += share[n_distractors > 0].sum()
        queries += (n_distractors > 0).sum()
    if queries.item() == 0:
        return math.nan
    return float((farther / queries).item())


def recall_at_k(queries, gallery, groups=None, *, gallery_groups=None, ks=(1, 5, 10),
                max_samples: int | None = None, seed: int = 0) -> dict:
    """Retrieval recall@k with multi-positive groups, by cosine similarity.

    Query i's positives are the gallery rows of its group. It is a hit at k when a positive is
    among the k most similar gallery rows (ties broken in the query's favour)::

        recall@k = mean_i [ |{j : cos(q_i, g_j) > max_{j' in pos(i)} cos(q_i, g_j')}| < k ]

    Paired form (``gallery_groups`` None): gallery row i belongs with query i, and
    ``groups`` [N] (default: each row its own group) gives the group of row i of both, so every
    caption of an image is a positive of every other. Separate form: ``groups`` [Nq] for the
    queries and ``gallery_groups`` [Ng] for the gallery (images as gallery, captions as
    queries). Queries with no positive in the gallery are left out. In the paired form
    ``max_samples`` draws a seeded subset of rows for both sides. Returns
    ``{"recall@k": value}`` for each k.
    """
    q, g = as_float(queries, name="queries"), as_float(gallery, name="gallery")
    if q.shape[1] != g.shape[1] or q.device != g.device:
        raise ValueError(f"queries {tuple(q.shape)} on {q.device} and gallery {tuple(g.shape)} "
                         f"on {g.device} must have one dimension and one device")
    dtype = _common_dtype(q, g)
    q, g = normalize(q.to(dtype)), normalize(g.to(dtype))
    if gallery_groups is None:
        if q.shape[0] != g.shape[0]:
            raise ValueError("queries and gallery must be paired row for row when "
                             "gallery_groups is not given")
        codes = _group_codes(groups, q)
        index = sample_rows(q.shape[0], max_samples, seed, q.device)
        q, g, q_codes = _take(q, index), _take(g, index), _take(codes, index)
        g_codes = q_codes
    else:
        if groups is None:
            raise ValueError("groups (of the queries) is needed with gallery_groups")
        q_codes, g_codes = _joint_codes(groups, gallery_groups, q.device)
        if q_codes.shape[0] != q.shape[0] or g_codes.shape[0] != g.shape[0]:
            raise ValueError("groups and gallery_groups must have one value per row")
    ks = tuple(int(k) for k in ks)
    hits = torch.zeros(len(ks), dtype=torch.float64, device=q.device)
    counted = torch.zeros((), dtype=torch.float64, device=q.device)
    k_values = torch.tensor(ks, device=q.device)
    for start in range(0, q.shape[0], _BLOCK):
        similarity = q[start:start + _BLOCK] @ g.T
        positive = g_codes[None, :] == q_codes[start:start + _BLOCK, None]
        best = similarity.masked_fill(~positive, -math.inf).max(dim=1).values
        rank = (similarity > best[:, None]).sum(dim=1)
        has_positive = positive.any(dim=1)
        hits += ((rank[:, None] < k_values[None, :]) & has_positive[:, None]).sum(dim=0)
        counted += has_positive.sum()
    if counted.item() == 0:
        return {f"recall@{k}": math.nan for k in ks}
    return dict(zip((f"recall@{k}" for k in ks), (hits / counted).tolist(), strict=True))


def _group_codes(groups, like: torch.Tensor) -> torch.Tensor:
    if groups is None:
        return torch.arange(like.shape[0], device=like.device)
    codes, _ = as_codes(groups, name="groups", device=like.device)
    if codes.shape[0] != like.shape[0]:
        raise ValueError(f"groups has {codes.shape[0]} values for {like.shape[0]} rows")
    return codes


def _joint_codes(a, b, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of two label arrays numbered in one shared space."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a_t, b_t = as_tensor(a, name="groups").to(device), as_tensor(b, name="gallery_groups")
        codes, _ = as_codes(torch.cat([a_t, b_t.to(device)]), name="groups")
    else:
        codes, _ = as_codes(np.concatenate([np.asarray(a), np.asarray(b)]), name="groups")
    codes = codes.to(device)
    return codes[:len(a)], codes[len(a):]


# --------------------------------------------------------------------------------------------
# segmentation agreement (object-centric models)


def adjusted_rand_index(true_masks, pred_masks, *, foreground_only: bool = False,
                        background: int = 0) -> float:
    """Mean over images of the adjusted Rand index between two segmentations.

    ``true_masks`` [N, ...] holds integer object ids per pixel (``background`` for none, as in
    the scene file's ``masks``); ``pred_masks`` holds integer slot ids of the same shape, or
    soft slot masks [N, K, ...] (argmax over K is taken). Per image, with the contingency
    ``n_ij`` of true object i and predicted slot j, ``a_i``, ``b_j`` its sums and ``n`` pixels,
    the pair counts are ``tp = Σ n_ij² - n``, ``fp = Σ b_j² - Σ n_ij²``,
    ``fn = Σ a_i² - Σ n_ij²``, ``tn = n² - tp - fp - fn - n`` and (Hubert & Arabie 1985)::

        ARI = 2 (tp·tn - fn·fp) / ((tp + fn)(fn + tn) + (tp + fp)(fp + tn))

    which is 1 for identical partitions (and when ``fp = fn = 0``), about 0 for chance, and
    equals scikit-learn's ``adjusted_rand_score``. ``foreground_only=True`` scores only pixels
    whose true id is not ``background``: the FG-ARI of object-centric learning (Greff et al.
    2019; Locatello et al. 2020), which ignores how the background is split. Images without a
    scored pixel are left out of the mean (nan if none is left).
    """
    per_image = ari_per_image(true_masks, pred_masks, foreground_only=foreground_only,
                              background=background)
    finite = per_image[~np.isnan(per_image)]
    return float(finite.mean()) if finite.size else math.nan


def foreground_ari(true_masks, pred_masks, *, background: int = 0) -> float:
    """FG-ARI: ``adjusted_rand_index`` over the pixels whose true id is not ``background``."""
    return adjusted_rand_index(true_masks, pred_masks, foreground_only=True,
                               background=background)


def ari_per_image(true_masks, pred_masks, *, foreground_only: bool = False,
                  background: int = 0) -> np.ndarray:
    """The ARI of each image (see ``adjusted_rand_index``), nan where no pixel is scored."""
    true = as_tensor(true_masks, name="true_masks")
    pred = as_tensor(pred_masks, name="pred_masks")
    if pred.dim() == true.dim() + 1:
        pred = pred.argmax(dim=1)
    if pred.shape != true.shape:
        raise ValueError(f"pred_masks {tuple(pred.shape)} does not match true_masks "
                         f"{tuple(true.shape)}")
    if true.is_floating_point() or pred.is_floating_point():
        raise TypeError("masks must hold integer ids (or soft masks with one more axis)")
    pred = pred.to(true.device)
    n_images = true.shape[0]
    true, pred = true.reshape(n_images, -1), pred.reshape(n_images, -1)
    image = torch.arange(n_images, device=true.device)[:, None].expand_as(true)
    if foreground_only:
        keep = true != background
        true, pred, image = true[keep], pred[keep], image[keep]
    else:
        true, pred, image = true.reshape(-1), pred.reshape(-1), image.reshape(-1)
    true_codes, n_true = _compact_ids(true)
    pred_codes, n_pred = _compact_ids(pred)
    flat = (image * n_true + true_codes) * n_pred + pred_codes
    contingency = torch.bincount(flat, minlength=n_images * n_true * n_pred)
    contingency = contingency.view(n_images, n_true, n_pred).to(torch.float64)
    n = contingency.sum(dim=(1, 2))
    sum_squares = contingency.pow(2).sum(dim=(1, 2))
    true_sizes, pred_sizes = contingency.sum(dim=2), contingency.sum(dim=1)
    tp = sum_squares - n
    fp = pred_sizes.pow(2).sum(dim=1) - sum_squares
    fn = true_sizes.pow(2).sum(dim=1) - sum_squares
    tn = n * n - fp - fn - sum_squares
    denominator = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    ari = 2 * (tp * tn - fn * fp) / torch.where(denominator == 0,
                                                torch.ones_like(denominator), denominator)
    ari = torch.where((fp == 0) & (fn == 0), torch.ones_like(ari), ari)
    ari = torch.where(n == 0, torch.full_like(ari, math.nan), ari)
    return ari.cpu().numpy()


def _compact_ids(ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(codes, n)``: ids as 0..n-1; small non-negative ids are used as they are (no sort)."""
    if ids.numel() == 0:
        return ids.long(), 1
    low, high = torch.aminmax(ids)
    low, high = int(low.item()), int(high.item())
    if low >= 0 and high < 4096:
        return ids.long(), high + 1
    _, codes = torch.unique(ids, return_inverse=True)
    return codes, int(codes.max().item()) + 1
