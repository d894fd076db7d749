"""Segmentation agreement for object-centric models: ARI and foreground ARI per image."""

from __future__ import annotations

import math

import numpy as np
import torch

from uncollapse.validators.collapse.tensors import as_tensor

__all__ = ["adjusted_rand_index", "ari_per_image", "foreground_ari"]


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
