"""Spectrum of a set of embeddings: singular values and the RankMe effective rank."""

from __future__ import annotations

import torch

from uncollapse.validators.collapse.tensors import as_float

__all__ = ["effective_rank", "singular_values"]


def singular_values(x, *, center: bool = False) -> torch.Tensor:
    """Singular values of ``x`` ([N, D]), descending, float64, on ``x``'s device.

    Computed as the square roots of the eigenvalues of the smaller Gram matrix (``XᵀX`` when
    N >= D, else ``XXᵀ``) in float64: for tall matrices this is several times faster than an
    SVD of ``x`` itself and, in float64, accurate to about 1.5e-8 (the square root of float64's
    epsilon) of the largest singular value, so exact zeros stay near zero (a float32 Gram
    matrix would turn them into noise of about 3e-4 of the largest and inflate the effective
    rank). ``center=True`` subtracts the column
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
