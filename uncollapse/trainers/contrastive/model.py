"""The contrastive recipe's model: two small MLP towers into one embedding space, and a
learnable logit scale (1 / temperature), clamped to at most ``exp(MAX_LOGIT_SCALE)`` = 100."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_LOGIT_SCALE", "DualTower", "Tower"]

MAX_LOGIT_SCALE = math.log(100.0)


class Tower(nn.Module):
    """A small MLP projection head: linear, GELU, LayerNorm, linear; L2-normalised output."""

    def __init__(self, d_in: int, hidden: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.LayerNorm(hidden),
                                 nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


class DualTower(nn.Module):
    """Text tower, optional image tower, and a learnable logit scale (1 / temperature)."""

    def __init__(self, d_text: int, d_image: int | None, hidden: int, dim: int,
                 temperature: float):
        super().__init__()
        self.text = Tower(d_text, hidden, dim)
        self.image = Tower(d_image, hidden, dim) if d_image else None
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(0.0, MAX_LOGIT_SCALE).exp()

    def forward(self, text: torch.Tensor, image: torch.Tensor | None = None):
        """``(text embeddings, image embeddings or None, logit scale)`` of a batch; one call, so
        that ``DistributedDataParallel`` sees every parameter used."""
        return self.text(text), None if image is None else self.image(image), self.scale()
