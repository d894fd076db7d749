"""Tiny inputs for the data-parallel tests, one per recipe, and the options that train on them
in a few CPU seconds. numpy and pyarrow (and the scene generator) only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from uncollapse.data.attributes.synthetic import (
    synthetic_attribute_embeddings,
    write_attribute_table,
)
from uncollapse.data.npz import write_npz
from uncollapse.data.scenes.contract import save_scenes
from uncollapse.pipeline.scenes import generate_scenes

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
WORKER = HERE / "ddp_worker.py"


def captions(folder: Path, images: int = 48, per_image: int = 5, dim: int = 16) -> dict:
    """A caption table (every 5th image in split test), text features (the image's direction
    plus noise) and image features (row k: match_id k)."""
    rng = np.random.default_rng(0)
    match_id = np.repeat(np.arange(images), per_image)
    rows = len(match_id)
    split = np.where(match_id % 5 == 4, "test", "train")
    table = pa.table({"image_id": pa.array([f"img{m:04d}" for m in match_id]),
                      "match_id": pa.array(match_id, pa.int64()),
                      "caption_idx": pa.array(np.tile(np.arange(per_image), images), pa.int16()),
                      "caption": pa.array([f"picture {m} caption {i}" for m, i in
                                           zip(match_id, np.tile(np.arange(per_image), images),
                                               strict=True)]),
                      "split": pa.array(split.tolist()),
                      "source_row": pa.array(np.arange(rows), pa.int64()),
                      "image_path": pa.array([None] * rows, pa.string())})
    pq.write_table(table, folder / "captions.parquet")
    direction = rng.normal(size=(images, dim)).astype(np.float32)
    text = direction[match_id] + 0.8 * rng.normal(size=(rows, dim)).astype(np.float32)
    np.save(folder / "text.npy", text.astype(np.float32))
    np.save(folder / "images.npy", direction @ rng.normal(size=(dim, dim)).astype(np.float32))
    return {"captions": str(folder / "captions.parquet"), "text_features": str(folder / "text.npy"),
            "image_features": str(folder / "images.npy")}


def sequences(folder: Path, docs: int = 24, length: int = 12, dim: int = 8,
              context: int = 3) -> dict:
    """A compact sequence file: chunk t of document d is start_d + t * step, plus noise."""
    rng = np.random.default_rng(0)
    start = rng.normal(size=(docs, 1, dim)) * 3
    vectors = start + np.arange(length)[None, :, None] * 0.5 + 0.1 * rng.normal(
        size=(docs, length, dim))
    path = folder / "sequences.npz"
    write_npz(path, {"vectors": vectors.reshape(-1, dim).astype(np.float32),
                     "doc_offsets": np.arange(0, docs * length + 1, length, dtype=np.int64),
                     "context_length": np.array(context, dtype=np.int64)})
    return {"sequences": str(path)}


def attributes(folder: Path) -> dict:
    embeddings, table = synthetic_attribute_embeddings(rows=480, dim=16, attributes=2,
                                                       identities=40, seed=0)
    np.save(folder / "embeddings.npy", embeddings)
    write_attribute_table(table, folder / "attributes.parquet")
    return {"embeddings": str(folder / "embeddings.npy"),
            "attributes": str(folder / "attributes.parquet")}


def scenes(folder: Path) -> dict:
    save_scenes(generate_scenes(48, 16, 3, seed=0), folder / "scenes.npz")
    return {"scenes": str(folder / "scenes.npz")}


DATA = {"contrastive": captions, "lvm": sequences, "flow": attributes, "slots": scenes}

# small models and batches: per-process batch sizes (the global batch is twice as large)
OPTIONS = {
    "contrastive": {"batch_size": 8, "per_group": 2, "hidden": 32, "dim": 16, "lr": 3e-3},
    "lvm": {"batch_size": 8, "max_per_doc": 2, "hidden": 16, "layers": 2, "lr": 3e-3,
            "mse_weight": 1.0, "moment_weight": 0.1, "variance_weight": 0.1},
    "flow": {"batch_size": 16, "per_group": 8, "hidden": 32, "lr": 3e-3},
    "slots": {"batch_size": 4, "slots": 4, "slot_dim": 16, "channels": 8, "iterations": 2,
              "lr": 1e-3, "init": "spectral", "diversity_weight": 0.1},
}
COMMON = {"device": "cpu", "quiet": True, "warmup_steps": 2, "precision": "fp32"}


def recipe_options(recipe: str, folder: Path, **overrides) -> dict:
    """Config values of ``recipe`` on fresh data in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return {**DATA[recipe](folder), **OPTIONS[recipe], **COMMON, **overrides}


def flags(values: dict) -> list[str]:
    """``uncollapse train`` flags of config values (``--batch-size 8``, ``--quiet``)."""
    out = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False and value is not None:
            out += [flag, str(value)]
    return out


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
            "UNCOLLAPSE_DIST_TIMEOUT": "120"}


def torchrun(*args: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc ARGS`` (a module with ``-m``); the timeout
    only guards the test run against a hang, the tests assert on the exit code."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", *args], env=env(), capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def train_under_torchrun(recipe: str, values: dict, nproc: int = 2,
                         timeout: float = 300) -> subprocess.CompletedProcess:
    return torchrun("-m", "uncollapse", "train", recipe, *flags(values), nproc=nproc,
                    timeout=timeout)


def output(done: subprocess.CompletedProcess) -> str:
    return done.stdout[-4000:] + done.stderr[-4000:]


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(json.dumps(spec))
    return path
