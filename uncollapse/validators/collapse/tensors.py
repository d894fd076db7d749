"""Input handling shared by the collapse metrics: numpy or torch in, a tensor where it lives.

A numpy array is wrapped with ``torch.from_numpy`` (no copy); a tensor is used on its own
device, so a CUDA batch is measured on its GPU and never copied to the host. Half-precision
input is measured in float32.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["MAX_SAMPLES", "as_codes", "as_float", "as_tensor", "check_paired", "common_dtype",
           "normalize", "sample_rows", "take"]

#: Default cap on the rows of the all-pairs metrics (memory and time grow with its square).
MAX_SAMPLES = 4096
#: Rows of queries per block in the blockwise all-pairs metrics.
BLOCK = 1024


def as_tensor(values, *, name: str = "input") -> torch.Tensor:
    """A tensor view of ``values`` on the device it already lives on.

    numpy arrays are shared with ``torch.from_numpy`` (non-contiguous ones are made contiguous
    first); tensors are detached, never moved.
    """
    if isinstance(values, torch.Tensor):
        return values.detach()
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a numeric array, got dtype {array.dtype}")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    with warnings.catch_warnings():
        # read-only arrays (memory maps, np.load with mmap_mode) are only ever read here
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def as_float(values, *, name: str = "input", ndim: int | None = 2) -> torch.Tensor:
    """``as_tensor`` in a floating dtype of at least float32, checked to have ``ndim`` dims."""
    tensor = as_tensor(values, name=name)
    if ndim is not None and tensor.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(tensor.shape)}")
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.to(torch.float32)
    return tensor


def as_codes(labels, *, name: str = "labels", device=None) -> tuple[torch.Tensor, int]:
    """``(codes, n_distinct)``: labels of any values renumbered 0..K-1 on ``device``."""
    if isinstance(labels, torch.Tensor):
        if labels.dim() != 1:
            raise ValueError(f"{name}: expected one dimension, got shape {tuple(labels.shape)}")
        _, codes = torch.unique(labels.detach(), return_inverse=True)
    else:
        array = np.asarray(labels)
        if array.ndim != 1:
            raise ValueError(f"{name}: expected one dimension, got shape {array.shape}")
        _, inverse = np.unique(array, return_inverse=True)
        codes = torch.from_numpy(inverse.reshape(-1).astype(np.int64))
    if device is not None:
        codes = codes.to(device)
    n_distinct = int(codes.max().item()) + 1 if codes.numel() else 0
    return codes, n_distinct


def check_paired(a: torch.Tensor, b: torch.Tensor, names=("pred", "targets")) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} has shape {tuple(a.shape)} but {names[1]} has "
                         f"{tuple(b.shape)}; they must be paired row for row")
    if a.device != b.device:
        raise ValueError(f"{names[0]} is on {a.device} but {names[1]} on {b.device}; "
                         "move both to one device")


def common_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm; an all-zero row stays zero."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def sample_rows(n: int, max_samples: int | None, seed: int, device) -> torch.Tensor | None:
    """Sorted indices of a seeded random subset of ``max_samples`` rows, or None for all rows."""
    if max_samples is None or n <= max_samples:
        return None
    generator = torch.Generator().manual_seed(int(seed))
    index = torch.randperm(n, generator=generator)[:max_samples]
    return torch.sort(index).values.to(device)


def take(x: torch.Tensor | None, index: torch.Tensor | None) -> torch.Tensor | None:
    return x if x is None or index is None else x[index]
