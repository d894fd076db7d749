"""Training on several processes (``torchrun`` or SLURM's ``srun``): which process this is, its
device, and the few collectives the engine needs so that every rank agrees.

A launch is read from the environment: ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by
``torchrun``), else ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID`` (set by ``srun``,
which needs ``MASTER_ADDR`` and ``MASTER_PORT`` exported by the job script). Without either, or
with a world of one process, nothing is initialised and training runs as a single process.

The process group uses NCCL on GPUs and gloo on the CPU, with a timeout
(``UNCOLLAPSE_DIST_TIMEOUT`` seconds, default 600): a collective that some rank never reaches
fails after it instead of waiting forever. ``torchrun`` also stops every other rank as soon as
one exits with an error.

Every decision that can end a run (the loss guard, the collapse monitor) is taken on values that
are identical on every rank (reduced across ranks first), and :func:`raise_together` makes the
ranks stop together even if one of them raised alone, so no rank waits in a collective for a
rank that has already left.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from uncollapse.errors import ToolError

TIMEOUT_VARIABLE = "UNCOLLAPSE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
T = TypeVar("T")


class RankStoppedError(ToolError):
    """Another rank stopped the run (its own error says why); this rank stops with it."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the launch.

    Attributes:
        rank, world_size: global rank and number of processes (``0`` and ``1`` alone).
        local_rank: rank on this machine (selects the GPU).
        owns_group: whether :func:`start` initialised the process group (and :func:`stop` ends
            it); False when the caller had initialised it already.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory and evaluates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launch_environment(env: dict[str, str] | None = None) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` of a torchrun or srun launch, or None without one.

    Raises:
        ToolError: a variable is not an integer, or SLURM starts several tasks without
            ``MASTER_ADDR``/``MASTER_PORT``.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env:
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    elif "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        names = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
    else:
        return None
    try:
        rank, world_size, local_rank = (int(env.get(name, "0")) for name in names)
    except ValueError as exc:
        raise ToolError(f"{', '.join(names)} must be integers, got "
                        f"{[env.get(n) for n in names]}") from exc
    if world_size < 1 or not 0 <= rank < world_size:
        raise ToolError(f"{names[0]}={rank} is not a rank of {names[1]}={world_size}")
    if world_size > 1 and names[0].startswith("SLURM"):
        missing = [n for n in ("MASTER_ADDR", "MASTER_PORT") if not env.get(n)]
        if missing:
            raise ToolError(
                f"srun started {world_size} tasks but {' and '.join(missing)} is not set; export "
                "MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1) and "
                "MASTER_PORT=29500 in the job script before srun")
    return rank, world_size, local_rank


def timeout() -> timedelta:
    """How long a collective may wait for the other ranks (``UNCOLLAPSE_DIST_TIMEOUT``)."""
    value = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError as exc:
        raise ToolError(f"{TIMEOUT_VARIABLE}={value!r} is not a number of seconds") from exc
    if not seconds > 0:
        raise ToolError(f"{TIMEOUT_VARIABLE} must be positive, got {value}")
    return timedelta(seconds=seconds)


def start(device_choice: str) -> tuple[Ranks, torch.device]:
    """Join the launch's process group (if there is one) and pick this process's device.

    ``device_choice`` is ``auto`` (this rank's GPU when CUDA is available, else the CPU),
    ``cuda`` or ``cpu``. Under a launch each rank takes GPU ``local_rank`` (or the one GPU it
    sees, when the launcher gives each task its own).
    """
    launch = launch_environment()
    if dist.is_available() and dist.is_initialized():  # the caller started the group
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = launch[2] if launch else rank
        ranks = Ranks(rank, world_size, local_rank, owns_group=False)
        return ranks, device_of(device_choice, ranks)
    if launch is None or launch[1] == 1:
        ranks = Ranks()
        return ranks, device_of(device_choice, ranks)
    ranks = Ranks(*launch, owns_group=True)
    device = device_of(device_choice, ranks)
    if not dist.is_available():
        raise ToolError("this torch build has no torch.distributed; install a build with it to "
                        "train on several processes")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", init_method="env://", rank=ranks.rank,
                                world_size=ranks.world_size, timeout=timeout(), device_id=device)
    else:
        dist.init_process_group("gloo", init_method="env://", rank=ranks.rank,
                                world_size=ranks.world_size, timeout=timeout())
    return ranks, device


def device_of(choice: str, ranks: Ranks) -> torch.device:
    """The device of ``choice`` for this rank; ``cuda`` without a GPU is an error."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if choice not in ("auto", "cuda"):
        return torch.device(choice)
    if not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; "
                         "use device 'cpu' or 'auto'")
    if not ranks.distributed:
        return torch.device("cuda")
    count = torch.cuda.device_count()
    if count == 1:  # the launcher gave this task its own GPU (CUDA_VISIBLE_DEVICES)
        return torch.device("cuda", 0)
    if ranks.local_rank >= count:
        raise ValueError(f"local rank {ranks.local_rank} has no GPU: this machine shows {count}; "
                         f"start at most {count} processes per machine")
    return torch.device("cuda", ranks.local_rank)


def wait_for_all(ranks: Ranks) -> None:
    """Wait until every rank has finished its work (rank 0 evaluates and writes after the
    others are done training): a rank that tears the group down and exits while a peer still
    holds its gloo connections can abort at interpreter exit ("terminate called without an
    active exception")."""
    if ranks.owns_group and dist.is_initialized():
        dist.barrier()


def stop(ranks: Ranks) -> None:
    """End the process group if :func:`start` began it (every rank, before it exits)."""
    if ranks.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` under a launch (rank 0's weights copied to every
    rank), else ``model`` itself.

    ``static_graph``: every step uses the same parameters, and some never get a gradient (the
    slot initialiser a run does not use), which DDP must know ahead of the first reduction.
    """
    if not ranks.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                   static_graph=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside ``torch.compile`` and ``DistributedDataParallel`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), nn.Module) and \
                type(model).__name__ == "DistributedDataParallel":
            model = model.module
        else:
            return model


def broadcast_tensors(tensors: list[torch.Tensor], ranks: Ranks) -> None:
    """Copy rank 0's values of ``tensors`` (in place) to every rank."""
    if ranks.distributed:
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def gather_rows(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Every rank's ``tensor`` (same shape on every rank) concatenated along dim 0 in rank order,
    without gradient; a 0-d tensor is returned as it is."""
    if not ranks.distributed or tensor.dim() == 0:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(ranks.world_size)]
    dist.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts)


def mean_over_ranks(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The mean of ``values`` over ranks, computed in the same order on every rank (so it is
    bit-identical everywhere, and every rank's guard sees the same numbers)."""
    if not ranks.distributed:
        return values
    parts = [torch.empty_like(values) for _ in range(ranks.world_size)]
    dist.all_gather(parts, values.contiguous())
    return torch.stack(parts).mean(dim=0)


def objects_of_ranks(value, ranks: Ranks) -> list:
    """``value`` of every rank, in rank order (a picklable object, e.g. RNG states)."""
    if not ranks.distributed:
        return [value]
    out: list = [None] * ranks.world_size
    dist.all_gather_object(out, value)
    return out


def raise_together(ranks: Ranks, device: torch.device, decide: Callable[..., T], *args) -> T:
    """``decide(*args)`` on every rank; if it raises on any rank, raise on every rank.

    The rank that raised raises its own error; the others raise :class:`RankStoppedError` naming
    it. Without this, a rank stopping alone would leave the others waiting in their next
    collective until the timeout.
    """
    if not ranks.distributed:
        return decide(*args)
    error: BaseException | None = None
    result = None
    try:
        result = decide(*args)
    except Exception as exc:  # re-raised below, after the other ranks have heard of it
        error = exc
    flags = torch.zeros(ranks.world_size, dtype=torch.int32, device=device)
    flags[ranks.rank] = int(error is not None)
    dist.all_reduce(flags)
    if error is not None:
        raise error
    if flags.any():
        first = int(torch.nonzero(flags)[0])
        raise RankStoppedError(f"rank {first} stopped the run (its error is above); rank "
                               f"{ranks.rank} stops with it")
    return result


def check_resume_world_size(saved: int, ranks: Ranks, checkpoint) -> None:
    """Refuse to resume a run saved at another world size: each rank's batches of an epoch
    depend on it, so the rest of the epoch would not line up with what was trained."""
    if saved != ranks.world_size:
        launch = ("a single process" if saved == 1 else
                  f"torchrun --nproc_per_node={saved} (or {saved} processes in all)")
        raise ValueError(f"cannot resume: {checkpoint} was saved by a run of {saved} "
                         f"process(es) and this launch has {ranks.world_size}; the batch plan of "
                         f"every rank depends on the number of processes, so resume with "
                         f"{launch}, or start a new run from its weights")
