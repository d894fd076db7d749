"""An exponential moving average of a model's weights (``--ema-decay``), torch's
``AveragedModel`` with its EMA update: after every optimiser step each weight and buffer of the
average moves ``1 - decay`` of the way to the model's (the first step copies them).

The average is the model a run evaluates and checkpoints as ``model``; the training weights go
beside it as ``train_model``, with the number of updates as ``ema_updates``, so that a resumed
run continues both exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["ExponentialAverage", "averaged_model"]


class ExponentialAverage:
    """The exponential moving average of ``model``'s weights and buffers."""

    def __init__(self, model: nn.Module, decay: float):
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
                                      use_buffers=True)

    @property
    def module(self) -> nn.Module:
        """The averaged model, of the model's own class (evaluate it as the model)."""
        return self.averaged.module

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def load(self, weights: dict, updates: int) -> None:
        """Put back a checkpoint's average and its number of updates."""
        self.module.load_state_dict(weights)
        self.averaged.n_averaged.fill_(int(updates))


def averaged_model(model: nn.Module, decay: float) -> ExponentialAverage | None:
    """The average to keep for ``decay`` (``None`` for 0: no average)."""
    return ExponentialAverage(model, decay) if decay > 0 else None
