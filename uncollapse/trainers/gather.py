"""The global batch of a data-parallel step, for losses that compare rows with each other.

Under ``torchrun`` each rank holds ``1/N`` of a step's rows. A contrastive loss computed on the
local rows alone sees ``1/N`` of the negatives and misses every positive that landed on another
rank (two captions of one image dealt to two ranks would be pushed apart). So, like open_clip's
``gather_features(..., local_loss=True, gather_with_grad=True)``:

- :func:`gather_with_grad` concatenates every rank's embeddings; the gradient of each rank's
  loss with respect to any row is sent back to the rank that owns the row (summed over ranks),
  so each rank's own rows receive the gradient of every rank's loss terms;
- :func:`gather` does the same for ids (``match_id``, combination ids), without gradient, so
  positive masks are built from the global batch;
- each rank's loss takes its *local* rows as anchors against the *global* candidates, and
  :func:`global_mean` divides the sum over its anchors by the number of anchors of the whole
  global batch (times ``N``, because ``DistributedDataParallel`` averages the ranks' gradients).

The result: the mean over ranks of the loss, and the gradient every rank applies, equal those of
one process over the concatenated global batch. Without an initialised process group (one
process) every function here is the identity, and the losses are what they always were.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherRows(torch.autograd.Function):
    """Forward: all ranks' rows in rank order. Backward: each rank's slice of the gradient,
    summed over ranks (a reduce-scatter)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        ctx.rank, ctx.rows = rank, rows.shape[0]
        rows = rows.contiguous()
        if dist.get_backend() == "nccl":
            out = rows.new_empty((size * rows.shape[0], *rows.shape[1:]))
            dist.all_gather_into_tensor(out, rows)
            return out
        parts = [torch.empty_like(rows) for _ in range(size)]
        dist.all_gather(parts, rows)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        if dist.get_backend() == "nccl":
            mine = grad.new_empty((ctx.rows, *grad.shape[1:]))
            dist.reduce_scatter_tensor(mine, grad)
            return mine
        total = grad.clone()
        dist.all_reduce(total)
        return total[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(rows: torch.Tensor) -> torch.Tensor:
    """[n, ...] on every rank -> [world_size * n, ...], this rank's rows at
    ``local_rows(n)``; the gradient flows back to the rank that owns each row."""
    if world()[1] == 1:
        return rows
    return _GatherRows.apply(rows)


def gather(values: torch.Tensor) -> torch.Tensor:
    """Like :func:`gather_with_grad` without gradient (ids, targets that are data)."""
    size = world()[1]
    if size == 1:
        return values
    parts = [torch.empty_like(values) for _ in range(size)]
    dist.all_gather(parts, values.detach().contiguous())
    return torch.cat(parts)


def local_rows(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Positions of this rank's ``n`` rows in the gathered global batch."""
    rank = world()[0]
    return torch.arange(rank * n, (rank + 1) * n, device=device)


def global_mean(total: torch.Tensor, count: torch.Tensor | int) -> torch.Tensor:
    """This rank's share of a mean over the global batch: ``total`` is the sum over this rank's
    anchors, ``count`` the number of its anchors: an int when it is the same on every rank (one
    per row), a tensor when it may differ (anchors that have a positive).

    Returns ``world_size * total / global count``: averaged over ranks (as DDP averages
    gradients, and as the engine averages logged terms) it is the global mean. One process:
    ``total / count``.
    """
    size = world()[1]
    if isinstance(count, torch.Tensor):
        count = count.detach().to(torch.float32)
        if size > 1:
            count = count.clone()
            dist.all_reduce(count)
        return total * size / count.clamp_min(1)
    return total * size / max(1, count * size)
