"""The attribute table contract: one row per image, ``image_id``, ``identity``, ``split`` and
one int8 0/1 column per attribute (docs/data-contracts.md), and the combination ids that pack
a row of attributes into one int64.

Also the counter-based flip draw that ``AttributeFlipDataset`` and the flip audit share: the
flips of sample ``i`` in epoch ``e`` are a hash of ``(seed, e, i)``. numpy only (the training
path runs where polars is not installed); reading a table is ``uncollapse.data.attributes.table``.
"""

from __future__ import annotations

import numpy as np

RESERVED_COLUMNS = ("image_id", "identity", "split")
"""The columns of an attribute table that are not attributes."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MAX_ATTRIBUTES = 62  # combination ids pack one bit per attribute into an int64


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 that spreads every input bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def counter_hash(seed: int, epoch: int, index: np.ndarray, streams: int) -> np.ndarray:
    """[n, streams] uint64 pseudo-random words, a pure function of (seed, epoch, index, stream)."""
    # any Python integer seed or epoch (negative, or past 64 bits) maps to its 64-bit residue
    seed_word = np.array([int(seed) % (1 << 64)], dtype=np.uint64)
    epoch_word = np.array([int(epoch) % (1 << 64)], dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = _mix(seed_word + _GOLDEN)
        key = _mix(key ^ (epoch_word * _GOLDEN))
        base = _mix(key ^ (np.asarray(index, dtype=np.uint64) * _GOLDEN + _GOLDEN))
        stream = np.arange(1, streams + 1, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
        return _mix(base[:, None] + stream[None, :])


def draw_flips(n_attributes: int, index: np.ndarray, *, min_flips: int, max_flips: int,
               seed: int, epoch: int) -> np.ndarray:
    """[n, A] bool flip masks for the samples ``index`` of ``epoch``.

    The number of flips is uniform in ``[min_flips, max_flips]``; which attributes flip is a
    uniform subset of that size (the first ``k`` of a random permutation).
    """
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    words = counter_hash(seed, epoch, index, n_attributes + 1)
    span = np.uint64(max_flips - min_flips + 1)
    counts = (words[:, 0] % span).astype(np.int64) + min_flips
    # rank of each attribute's random key within its row: a uniform random permutation
    order = np.argsort(words[:, 1:], axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(n_attributes)[None, :].repeat(len(index), 0),
                      axis=1)
    return ranks < counts[:, None]


def combination_ids(attributes: np.ndarray) -> np.ndarray:
    """[n] int64 id of each 0/1 attribute row: bit ``j`` is attribute ``j`` (stable encoding)."""
    attributes = np.asarray(attributes)
    if attributes.shape[-1] > MAX_ATTRIBUTES:
        raise ValueError(f"combination ids pack one bit per attribute; at most "
                         f"{MAX_ATTRIBUTES} attributes, got {attributes.shape[-1]}")
    weights = np.left_shift(np.int64(1), np.arange(attributes.shape[-1], dtype=np.int64))
    return (attributes.astype(np.int64) * weights).sum(axis=-1)


def decode_combination_ids(ids: np.ndarray, n_attributes: int) -> np.ndarray:
    """The 0/1 attribute rows [n, A] (int8) of combination ids; inverse of ``combination_ids``."""
    ids = np.asarray(ids, dtype=np.int64)
    return ((ids[:, None] >> np.arange(n_attributes, dtype=np.int64)) & 1).astype(np.int8)


def attribute_columns(table) -> list[str]:
    """The attribute columns of an attribute table: every column but image_id/identity/split."""
    return [c for c in table.columns if c not in RESERVED_COLUMNS]


# Column names, for code that reads or writes one column (``table[IDENTITY]``).
IMAGE_ID = "image_id"
IDENTITY = "identity"
SPLIT = "split"
