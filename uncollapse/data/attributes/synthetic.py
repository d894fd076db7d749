"""Synthetic attribute-structured embeddings, for tests and the demo (not real data).

Each row is an image of an identity (a person) with 0/1 attributes. Its embedding is::

    normalize(identity_scale * u[identity] + attribute_scale * sum_j (2 a_j - 1) w_j
              + noise * e / sqrt(D))

with ``u`` and ``w`` fixed random unit directions and ``e`` standard normal noise, so the right
answer of an attribute transfer is known: flipping attribute ``j`` moves along ``w_j`` and
keeps ``u[identity]``. There the attributes are linear: one mean difference is the exact
transfer for every image.

Attributes that are not linear (real faces: a smile changes each face its own way) come with
two knobs. ``curvature`` turns each attribute's direction with the identity,
``w_j(i) = normalize(w_j + curvature * M_j u[i])`` (``M_j`` a fixed random matrix), so the
direction of a flip varies smoothly over the sphere; ``gain_spread`` gives every identity its
own strength of each attribute, ``attribute_scale * g_ij`` with ``g_ij`` log-normal of mean 1
and log standard deviation ``gain_spread``. A mean difference then moves every image by the
average direction and amount: too little for the strongly marked identities, along the wrong
direction for all. Identities are split into train and test (no identity in both), as the
attribute table contract asks. numpy and pyarrow only.

Example:
    >>> embeddings, table = synthetic_attribute_embeddings(rows=2000, seed=0)
    >>> write_attribute_table(table, "attrs.parquet")
    >>> np.save("embeddings.npy", embeddings)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from uncollapse.atomic import atomic_path
from uncollapse.data.attributes.contract import RESERVED_COLUMNS

__all__ = ["synthetic_attribute_embeddings", "write_attribute_table"]


def synthetic_attribute_embeddings(rows: int = 2000, dim: int = 64, *, attributes: int = 3,
                                   identities: int = 100, identity_scale: float = 1.0,
                                   attribute_scale: float = 0.6, noise: float = 0.3,
                                   curvature: float = 0.0, gain_spread: float = 0.0,
                                   test_fraction: float = 0.2,
                                   seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Embeddings [rows, dim] float32 on the unit sphere and their attribute table.

    Args:
        rows: images (rows of the table and of the embeddings).
        dim: embedding dimension.
        attributes: 0/1 attributes per image, each drawn with probability 1/2, independently of
            the identity; named ``attr0``, ``attr1``, ...
        identities: identities; each image belongs to one, drawn uniformly.
        identity_scale, attribute_scale, noise: weights of the three parts (see the module).
        curvature: how far each attribute's direction turns with the identity (0: one
            direction for every identity, the linear case).
        gain_spread: log standard deviation of each identity's own strength of each
            attribute (0: the same strength for every identity).
        test_fraction: share of identities whose images form the ``test`` split.
        seed: seed of every draw.

    Returns:
        ``(embeddings, table)``: the table is a dict of numpy arrays with ``image_id`` (str),
        ``identity`` (int64), ``split`` (str) and one int8 column per attribute, row ``i``
        describing ``embeddings[i]``.
    """
    if rows < 1 or dim < 1 or attributes < 1 or identities < 1:
        raise ValueError(f"rows, dim, attributes and identities must be at least 1, got "
                         f"{rows}, {dim}, {attributes}, {identities}")
    if curvature < 0 or gain_spread < 0:
        raise ValueError(f"curvature and gain_spread must be at least 0, got {curvature}, "
                         f"{gain_spread}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)

    def directions(n: int) -> np.ndarray:
        d = rng.normal(size=(n, dim))
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    identity_dirs, attribute_dirs = directions(identities), directions(attributes)
    identity = rng.integers(0, identities, size=rows)
    values = (rng.random((rows, attributes)) < 0.5).astype(np.int8)
    signs = 2.0 * values - 1.0
    if curvature == 0 and gain_spread == 0:
        attribute_part = signs @ attribute_dirs
    else:
        turn = rng.normal(size=(attributes, dim, dim)) / np.sqrt(dim)        # M_j
        per_identity = attribute_dirs[None] + curvature * np.einsum(
            "jde,ie->ijd", turn, identity_dirs)                              # [I, A, D]
        per_identity /= np.linalg.norm(per_identity, axis=2, keepdims=True)
        gain = np.exp(gain_spread * rng.normal(size=(identities, attributes))
                      - gain_spread ** 2 / 2)
        weight = signs * gain[identity]
        attribute_part = np.zeros((rows, dim))
        for j in range(attributes):  # one [rows, D] term per attribute, not [rows, A, D]
            attribute_part += weight[:, j, None] * per_identity[identity, j]
    z = (identity_scale * identity_dirs[identity] + attribute_scale * attribute_part
         + noise * rng.normal(size=(rows, dim)) / np.sqrt(dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    test_identity = rng.random(identities) < test_fraction
    table: dict[str, np.ndarray] = {
        "image_id": np.char.add("img", np.char.zfill(np.arange(rows).astype(str), 6)),
        "identity": identity.astype(np.int64),
        "split": np.where(test_identity[identity], "test", "train"),
    }
    for j in range(attributes):
        table[f"attr{j}"] = values[:, j]
    return z.astype(np.float32), table


def write_attribute_table(table: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write a table of arrays as an attribute table (Parquet, docs/data-contracts.md):
    ``image_id`` string, ``identity`` int64, ``split`` string, attributes int8. Atomic."""
    path = Path(path)
    types = {"image_id": pa.string(), "identity": pa.int64(), "split": pa.string()}
    arrays = {name: pa.array(np.asarray(values).tolist() if name in ("image_id", "split")
                             else np.asarray(values), types.get(name, pa.int8()))
              for name, values in table.items()}
    ordered = [c for c in RESERVED_COLUMNS if c in arrays] + \
        [c for c in arrays if c not in RESERVED_COLUMNS]
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(pa.table({c: arrays[c] for c in ordered}), tmp)
    return path
