"""Loss terms of the recipes. Each is non-negative by construction, which the loss guard checks.

- ``multi_positive_infonce``: InfoNCE where every row of the same group is a positive
  (Khosla et al. 2020, "sum inside the log" form)::

      L_i = -log( sum_{p in P(i)} exp(s_ip / T) / sum_{a != i} exp(s_ia / T) )

  averaged over anchors with at least one positive. ``L_i >= 0`` because the numerator's
  terms are a subset of the denominator's.
- ``moment_matching``: squared distance of the batch's per-dimension mean and std to the
  targets' (computed once from the data), in units of the targets' std so that it weighs the
  same on unit-norm and on raw-scale vectors: keeps a decoder's input on the targets' scale.
- ``variance_floor``: VICReg's hinge on the per-dimension std (Bardes et al. 2022), here on the
  standardised output: ``mean_d max(0, ratio - std(y_d) / std_d)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multi_positive_infonce(logits: torch.Tensor, positives: torch.Tensor,
                           candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over anchors (rows of ``logits``) that have a positive.

    Args:
        logits: [A, C] similarities divided by the temperature.
        positives: [A, C] bool, the positives of each anchor.
        candidates: [A, C] bool, what the denominator sums over (default: every column).
    """
    per_anchor, has_positive = multi_positive_infonce_per_anchor(logits, positives, candidates)
    return per_anchor.sum() / has_positive.sum().clamp_min(1)


def multi_positive_infonce_per_anchor(logits: torch.Tensor, positives: torch.Tensor,
                                      candidates: torch.Tensor | None = None):
    """``(L_i per anchor, 0 where it has no positive; which anchors have one)``, the parts of
    :func:`multi_positive_infonce` (a data-parallel loss sums them over the global batch)."""
    logits = logits.float()
    if candidates is not None:
        logits = logits.masked_fill(~candidates, float("-inf"))
        positives = positives & candidates
    log_denominator = torch.logsumexp(logits, dim=1)
    log_numerator = torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1)
    has_positive = positives.any(dim=1)
    per_anchor = (log_denominator - log_numerator).clamp_min(0)
    per_anchor = torch.where(has_positive, per_anchor, torch.zeros_like(per_anchor))
    return per_anchor, has_positive


def moment_matching(y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """mean_d ((mean(y_d) - mean_d) / std_d)^2 + (std(y_d) / std_d - 1)^2."""
    z = (y.float() - mean) / std
    return (z.mean(dim=0).pow(2) + (z.std(dim=0) - 1).pow(2)).mean()


def variance_floor(y: torch.Tensor, std: torch.Tensor, ratio: float, eps: float = 1e-4):
    """mean_d max(0, ratio - sqrt(Var(y_d / std_d) + eps))."""
    z = y.float() / std
    return F.relu(ratio - torch.sqrt(z.var(dim=0) + eps)).mean()


def similarity_gap(a: torch.Tensor, b: torch.Tensor, same: torch.Tensor,
                   exclude_diagonal: bool) -> torch.Tensor:
    """Mean cosine of positive pairs minus mean cosine of negative pairs.

    ``same[i, j]`` says whether row i of ``a`` and row j of ``b`` are positives. The classic sign
    of broken grouping (every caption its own image id) is a gap that never opens.
    """
    cos = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T
    pos, neg = same.clone(), ~same
    if exclude_diagonal:
        eye = torch.eye(cos.shape[0], dtype=torch.bool, device=cos.device)
        pos &= ~eye
        neg &= ~eye
    positive = (cos * pos).sum() / pos.sum().clamp_min(1)
    negative = (cos * neg).sum() / neg.sum().clamp_min(1)
    return positive - negative
