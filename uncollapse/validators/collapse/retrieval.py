"""Retrieval between predictions and targets: contrastive accuracy and recall@k with
multi-positive groups."""

from __future__ import annotations

import math

import numpy as np
import torch

from uncollapse.validators.collapse.tensors import (
    BLOCK,
    MAX_SAMPLES,
    as_codes,
    as_float,
    as_tensor,
    check_paired,
    common_dtype,
    normalize,
    sample_rows,
    take,
)

__all__ = ["contrastive_accuracy", "recall_at_k"]


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
    check_paired(p, t)
    dtype = common_dtype(p, t)
    p, t = p.to(dtype), t.to(dtype)
    codes = _group_codes(groups, p)
    index = sample_rows(p.shape[0], max_samples, seed, p.device)
    p, t, codes = take(p, index), take(t, index), take(codes, index)
    if metric == "cosine":
        p, t = normalize(p), normalize(t)
    t_sq = t.pow(2).sum(dim=1)
    farther = torch.zeros((), dtype=torch.float64, device=p.device)
    queries = torch.zeros((), dtype=torch.float64, device=p.device)
    n = p.shape[0]
    for start in range(0, n, BLOCK):
        rows = torch.arange(start, min(start + BLOCK, n), device=p.device)
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
    dtype = common_dtype(q, g)
    q, g = normalize(q.to(dtype)), normalize(g.to(dtype))
    if gallery_groups is None:
        if q.shape[0] != g.shape[0]:
            raise ValueError("queries and gallery must be paired row for row when "
                             "gallery_groups is not given")
        codes = _group_codes(groups, q)
        index = sample_rows(q.shape[0], max_samples, seed, q.device)
        q, g, q_codes = take(q, index), take(g, index), take(codes, index)
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
    for start in range(0, q.shape[0], BLOCK):
        similarity = q[start:start + BLOCK] @ g.T
        positive = g_codes[None, :] == q_codes[start:start + BLOCK, None]
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
