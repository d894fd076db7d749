"""The attribute-flow recipe's model: a vector field ``v(z, a)`` over the embedding and the
target attributes, integrated in ``flow_steps`` Euler steps on the unit sphere."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FlowField"]


class FlowField(nn.Module):
    """``v(z, a)``: an MLP over the embedding and the target attributes, and the Euler flow."""

    def __init__(self, dim: int, n_attributes: int, hidden: int, flow_steps: int,
                 alpha: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + n_attributes, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))
        self.flow_steps, self.alpha = int(flow_steps), float(alpha)

    def field(self, z: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, attributes.to(z.dtype)], dim=-1))

    def forward(self, z: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """The trajectory [flow_steps + 1, B, D]: the input, then each Euler step's point."""
        step = self.alpha / self.flow_steps
        points = [z]
        for _ in range(self.flow_steps):
            z = F.normalize(z + step * self.field(z, attributes), dim=-1)
            points.append(z)
        return torch.stack(points)
