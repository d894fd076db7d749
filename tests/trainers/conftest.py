"""Small inputs for the trainer tests, made with the pipeline's own commands (fixtures
``caption_data`` and ``drift_sequences``, built once per session).

Caption tables are built from the bundled COCO captions; their features are synthetic (a random
direction per image plus noise, so the right answer is known). Sequence files are built with
``build chunks`` and ``build sequences`` from a JSONL of documents whose chunk vectors follow a
known rule (each document starts somewhere and moves by one fixed step per chunk, in raw scale).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from uncollapse.cli import main

ROOT = Path(__file__).resolve().parents[2]
COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"


def run_cli(*args: str) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def caption_table(tmp: Path, images: int = 120) -> Path:
    """The bundled COCO table, cut to its first ``images`` images (match_id < images)."""
    full = tmp / "coco.parquet"
    run_cli("build", "captions", COCO, "-o", full, "--cache-dir", tmp / "cache")
    table = pq.read_table(full)
    keep = np.asarray(table.column("match_id")) < images
    path = tmp / "captions.parquet"
    pq.write_table(table.filter(pa.array(keep)), path)
    return path


def with_unique_match_ids(table_path: Path, tmp: Path) -> Path:
    """The loop-counter bug: every caption its own image_id and match_id (the row number)."""
    table = pq.read_table(table_path)
    rows = np.arange(table.num_rows)
    table = table.set_column(table.schema.get_field_index("match_id"), "match_id",
                             pa.array(rows, pa.int64()))
    table = table.set_column(table.schema.get_field_index("image_id"), "image_id",
                             pa.array(rows.astype(str)))
    path = tmp / "broken.parquet"
    pq.write_table(table, path)
    return path


def caption_features(table_path: Path, tmp: Path, *, dim: int = 32, noise: float = 1.2,
                     seed: int = 0) -> tuple[Path, Path]:
    """Text features per row and image features per match_id: each image a random direction,
    its captions that direction plus noise, its image feature a fixed linear map of it."""
    match_id = np.asarray(pq.read_table(table_path, columns=["match_id"]).column(0))
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(match_id.max() + 1, dim))
    text = direction[match_id] + noise * rng.normal(size=(len(match_id), dim))
    image = direction @ rng.normal(size=(dim, dim + 8)) / np.sqrt(dim)
    text_path, image_path = tmp / "text.npy", tmp / "images.npy"
    np.save(text_path, text.astype(np.float32))
    np.save(image_path, image.astype(np.float32))
    return text_path, image_path


def build_drift_sequences(tmp: Path, *, docs: int = 24, length: int = 12, dim: int = 8,
                    context: int = 3, seed: int = 0) -> Path:
    """A compact sequence file built by the pipeline: chunk t of document d has the vector
    ``start_d + t * step`` (+ small noise), with |start| ~ 20 per dimension (raw scale)."""
    source = tmp / "docs.jsonl"
    with open(source, "w", encoding="utf-8") as fh:
        for d in range(docs):
            text = "\n\n".join(f"Document {d} paragraph {t}." for t in range(length))
            fh.write(json.dumps({"doc_id": f"doc{d:03d}", "text": text}) + "\n")
    chunks = tmp / "chunks.parquet"
    run_cli("build", "chunks", source, "-o", chunks, "--cache-dir", tmp / "cache")
    table = pq.read_table(chunks)
    doc = np.unique(np.asarray(table.column("doc_key")), return_inverse=True)[1]
    position = np.asarray(table.column("position"))
    rng = np.random.default_rng(seed)
    start = rng.normal(size=(docs, dim)) * 20
    vectors = start[doc] + position[:, None] * 3.0 + 0.2 * rng.normal(size=(len(doc), dim))
    vectors_path = tmp / "vectors.npy"
    np.save(vectors_path, vectors.astype(np.float32))
    out = tmp / "sequences.npz"
    run_cli("build", "sequences", chunks, "--vectors", vectors_path, "--context", context,
            "--compact", "-o", out, "--cache-dir", tmp / "cache")
    return out


@pytest.fixture(scope="session")
def caption_data(tmp_path_factory):
    """``caption_data(images=120)``: ``{"table", "text", "images", "broken"}`` for the first
    ``images`` images of the bundled COCO table: the table, text features per row, image
    features per match_id, and the table with loop-counter ids (built once per size)."""
    built: dict[int, dict[str, Path]] = {}

    def make(images: int = 120) -> dict[str, Path]:
        if images not in built:
            tmp = tmp_path_factory.mktemp(f"captions{images}")
            table = caption_table(tmp, images=images)
            text, image = caption_features(table, tmp)
            built[images] = {"table": table, "text": text, "images": image,
                             "broken": with_unique_match_ids(table, tmp)}
        return built[images]

    return make


@pytest.fixture(scope="session")
def drift_sequences(tmp_path_factory) -> Path:
    """A compact sequence file of 24 drifting documents (``build_drift_sequences``)."""
    return build_drift_sequences(tmp_path_factory.mktemp("sequences"))
