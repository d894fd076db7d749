"""What ``--compile`` compiles.

One process: the recipe's whole ``loss`` (the model's forward pass and every loss term) is one
``torch.compile`` region, so the compiler fuses the model with its loss and differentiates both
in one backward graph. Compiling the model alone left the loss's large elementwise passes (an
8,192 x 8,192 InfoNCE's softmaxes, casts and transposes) to eager kernels, and the LVM's GRU out
of the graph altogether: Dynamo refuses ``nn.GRU`` unless ``allow_rnn`` is set, and the LVM
model computes its GRU or LSTM with plain tensor operations when compiled (``rnn_unrolled``).

Several processes: the DDP-wrapped model alone, as ``torch.compile`` documents for DDP (its
gradient hooks stay outside the graph).

``cuda_graphs`` (one process, a GPU): the compiled loss and its backward are captured in CUDA
graphs (mode ``reduce-overhead``) and replayed, one launch for a graph's many small kernels. A
graph's outputs are overwritten by its next replay: the engine marks the start of each step
(:func:`step_begins`) and copies the loss terms it keeps for later.
"""

from __future__ import annotations

import logging

import torch

__all__ = ["compile_for_training", "step_begins", "use_cuda_graphs"]

logger = logging.getLogger("uncollapse")


def use_cuda_graphs(requested: bool, distributed: bool, is_main: bool) -> bool:
    """Whether this run captures CUDA graphs: as asked in one process; never under torchrun,
    which rank 0 says in a warning (the model is compiled alone there)."""
    if requested and distributed:
        if is_main:
            logger.warning("--cuda-graphs applies to one process: under torchrun the model is "
                           "compiled alone, without CUDA graphs")
        return False
    return requested


def compile_for_training(recipe, model: torch.nn.Module, *, distributed: bool,
                         cuda_graphs: bool = False) -> torch.nn.Module:
    """The model the engine steps with; in one process ``recipe.loss`` becomes its compiled
    form (the same arguments, the same ``StepOutput``)."""
    if distributed:
        return torch.compile(model)
    compiled = torch.compile(recipe.loss, mode="reduce-overhead" if cuda_graphs else None)

    def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
        with torch._dynamo.config.patch(allow_rnn=True):
            return compiled(model, batch)

    recipe.loss = loss
    return model


def step_begins(cuda_graphs: bool) -> None:
    """Before each training step: tells CUDA graph trees that the previous step's outputs are
    no longer read (a no-op without ``cuda_graphs``)."""
    if cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()
