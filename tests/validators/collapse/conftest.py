"""Fixtures of the collapse diagnostics tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

EMBEDDINGS = Path(__file__).resolve().parents[3] / "data" / "coco" / "embeddings"


@pytest.fixture(scope="session")
def coco_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """The bundled MiniLM embeddings of real COCO captions ([2003, 384] float16) and each
    caption's image id."""
    return np.load(EMBEDDINGS / "minilm_l6_v2.npy"), np.load(EMBEDDINGS / "image_ids.npy")


@pytest.fixture(scope="session")
def gaussian():
    """``gaussian(seed, n, d, scale=1.0)``: an [n, d] float32 array of seeded normal noise."""

    def draw(seed: int, n: int, d: int, scale: float = 1.0) -> np.ndarray:
        return np.random.default_rng(seed).normal(0, scale, (n, d)).astype(np.float32)

    return draw
