"""Which rank this process is, for samplers that split one global plan across DDP ranks."""

from __future__ import annotations


def rank_and_world_size(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the given values, else the initialised ``torch.distributed``
    group's, else ``(0, 1)``.

    Raises:
        ValueError: ``world_size`` is below 1, or ``rank`` is outside ``0..world_size-1``.
    """
    if rank is None or world_size is None:
        import torch.distributed as dist

        initialised = dist.is_available() and dist.is_initialized()
        if world_size is None:
            world_size = dist.get_world_size() if initialised else 1
        if rank is None:
            rank = dist.get_rank() if initialised else 0
    rank, world_size = int(rank), int(world_size)
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1} for world_size {world_size}, "
                         f"got {rank}")
    return rank, world_size
