"""Which rank this process is, for samplers that split one global plan across DDP ranks, and
what a training library has wrapped around such a sampler or which epoch it is about to run."""

from __future__ import annotations

import sys


def rank_and_world_size(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the given values, else the initialised ``torch.distributed``
    group's, else ``(0, 1)``.

    Raises:
        ValueError: ``world_size`` is below 1, or ``rank`` is outside ``0..world_size-1``.
    """
    if rank is None or world_size is None:
        group = initialised_group()
        if world_size is None:
            world_size = group[1] if group else 1
        if rank is None:
            rank = group[0] if group else 0
    rank, world_size = int(rank), int(world_size)
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1} for world_size {world_size}, "
                         f"got {rank}")
    return rank, world_size


def initialised_group() -> tuple[int, int] | None:
    """``(rank, world_size)`` of the initialised default ``torch.distributed`` group, or None."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


def ranks_of_sampler(sampler, rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)`` taken from a ``DistributedSampler``-like ``sampler`` (its ``rank``
    and ``num_replicas``), checked against the explicit ``rank`` and ``world_size`` if given.

    PyTorch Lightning re-creates a batch sampler with ``sampler=DistributedSampler(...)`` to
    tell it which rank it serves; only that rank and world size are used, not its order.

    Raises:
        TypeError: ``sampler`` has no ``rank`` and ``num_replicas``.
        ValueError: they disagree with the explicit ``rank`` or ``world_size``.
    """
    if not (hasattr(sampler, "rank") and hasattr(sampler, "num_replicas")):
        raise TypeError(f"sampler must be a DistributedSampler (an object with rank and "
                        f"num_replicas) that names this process's rank, got "
                        f"{type(sampler).__name__}; leave it out and pass rank and world_size")
    given = (int(sampler.rank), int(sampler.num_replicas))
    for name, explicit, value in (("rank", rank, given[0]), ("world_size", world_size, given[1])):
        if explicit is not None and int(explicit) != value:
            raise ValueError(f"{name}={explicit} disagrees with the sampler's {value}; "
                             f"pass one or the other")
    return rank_and_world_size(*given)


def accelerate_wrapper(batch_sampler, depth: int = 16):
    """The Hugging Face accelerate object that is iterating ``batch_sampler``, or None.

    ``accelerator.prepare(loader)`` wraps a loader's batch sampler in its own
    ``BatchSamplerShard`` (or iterates it on the main process only and dispatches the
    batches); either way it deals the batches to the processes itself. Found by looking at
    the callers of ``iter(batch_sampler)``, so accelerate need not be installed.
    """
    frame = sys._getframe(1)
    for _ in range(depth):
        frame = frame.f_back
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if owner is not None and type(owner).__module__.startswith("accelerate."):
            return owner
    return None


LIGHTNING_LOOPS = ("lightning.pytorch.loops.", "pytorch_lightning.loops.")


def lightning_epoch(depth: int = 48) -> int | None:
    """The epoch PyTorch Lightning is about to run, when one of its loops is iterating the
    caller's caller (a batch sampler starting a pass), else None.

    Lightning passes ``fit_loop.epoch_progress.current.processed`` to ``set_epoch``, but since
    2.5.3 its ``FitLoop.setup_data()`` creates the training iterator first, and a ``DataLoader``
    with workers draws its first batches right then: a run resumed from an end-of-epoch
    checkpoint would get them from the sampler's old epoch. Reading the value Lightning is about
    to set lets the pass start in the right epoch. Found by looking at the callers, so Lightning
    need not be installed.
    """
    frame = sys._getframe(1)
    for _ in range(depth):
        frame = frame.f_back
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if owner is None or not type(owner).__module__.startswith(LIGHTNING_LOOPS):
            continue
        fit_loop = getattr(getattr(owner, "trainer", None), "fit_loop", None)
        progress = getattr(getattr(fit_loop, "epoch_progress", None), "current", None)
        processed = getattr(progress, "processed", None)
        if isinstance(processed, int):
            return processed
    return None
