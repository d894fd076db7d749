"""Structure by labels: silhouette (cosine), cluster purity and k-NN purity."""

from __future__ import annotations

import math

import torch

from uncollapse.validators.collapse.tensors import (
    BLOCK,
    MAX_SAMPLES,
    as_codes,
    as_float,
    normalize,
    sample_rows,
    take,
)

__all__ = ["cluster_purity", "knn_purity", "silhouette"]


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
    u, codes = take(u, index), take(codes, index)
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
    u, codes = take(u, index), take(codes, index)
    n = u.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and {n - 1} for {n} rows, got {k}")
    same = torch.zeros((), dtype=torch.float64, device=u.device)
    for start in range(0, n, BLOCK):
        block = u[start:start + BLOCK] @ u.T
        rows = torch.arange(start, start + block.shape[0], device=u.device)
        block[rows - start, rows] = -math.inf
        neighbours = block.topk(k, dim=1).indices
        same += (codes[neighbours] == codes[rows, None]).sum()
    return float((same / (n * k)).item())
