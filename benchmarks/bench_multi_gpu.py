"""Data-parallel scaling of every recipe: samples/s on 1 and on N GPUs at the same global batch,
the scaling efficiency, and the final evaluation of both runs side by side.

For each recipe, on a synthetic dataset with a known answer (numpy and pyarrow only, so it runs
on a GPU host without polars, pandera or datasets):

1. one process: ``python -m uncollapse train RECIPE --batch-size G ...``;
2. N processes: ``torchrun --standalone --nproc_per_node=N -m uncollapse train RECIPE
   --batch-size G/N ...`` (the batch size is per process, so the global batch is G again and
   the contrastive losses see all of it).

Both runs take the same number of steps. samples/s is the median of the engine's own
``samples_per_s`` (global, over every rank) over the logged intervals after the first, which
holds the warm-up; the evaluation is the run's ``eval.json``, written once by rank 0. Scaling
efficiency = samples/s(N) / (N x samples/s(1)).

On a machine with N GPUs::

    PYTHONPATH=. python benchmarks/bench_multi_gpu.py --nproc 2 \\
        --json benchmarks/results/multi_gpu_2x.json

One GPU (the 1-GPU figures only)::

    PYTHONPATH=. python benchmarks/bench_multi_gpu.py --nproc 1

Smoke test on the CPU (gloo, tiny data)::

    PYTHONPATH=. python benchmarks/bench_multi_gpu.py --device cpu --nproc 2 --size smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from uncollapse.data.attributes.synthetic import (
    synthetic_attribute_embeddings,
    write_attribute_table,
)
from uncollapse.data.npz import write_npz
from uncollapse.data.scenes.contract import SceneSet, save_scenes
from uncollapse.trainers.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("contrastive", "lvm", "flow", "slots")

# (data sizes, global batch, steps, training options) of each recipe, per size
SIZES = {
    "gpu": {
        "contrastive": ({"images": 200_000, "dim": 384}, 8192, 300,
                        {"per_group": 2, "hidden": 512, "dim": 128, "lr": 1e-3}),
        "lvm": ({"docs": 4000, "length": 100, "dim": 384, "context": 8}, 8192, 300,
                {"arch": "gru", "hidden": 512, "max_per_doc": 8, "lr": 1e-3,
                 "eval_fraction": 0.05}),
        "flow": ({"rows": 100_000, "dim": 512, "attributes": 5}, 4096, 300,
                 {"per_group": 128, "hidden": 512, "lr": 1e-3}),
        "slots": ({"scenes": 20_000, "size": 32}, 256, 300,
                  {"slots": 5, "slot_dim": 64, "channels": 64, "lr": 4e-4,
                   "warmup_steps": 50}),
    },
    "smoke": {
        "contrastive": ({"images": 300, "dim": 16}, 32, 6,
                        {"per_group": 2, "hidden": 32, "dim": 16, "lr": 3e-3}),
        "lvm": ({"docs": 40, "length": 12, "dim": 8, "context": 3}, 32, 6,
                {"arch": "gru", "hidden": 16, "layers": 1, "max_per_doc": 2, "lr": 3e-3,
                 "eval_fraction": 0.2}),
        "flow": ({"rows": 600, "dim": 16, "attributes": 2}, 32, 6,
                 {"per_group": 8, "hidden": 32, "lr": 3e-3}),
        "slots": ({"scenes": 48, "size": 16}, 8, 6,
                  {"slots": 4, "slot_dim": 16, "channels": 8, "iterations": 2, "lr": 1e-3,
                   "warmup_steps": 2}),
    },
}
METRIC = {"contrastive": ("text_to_image/recall@1",), "lvm": ("model", "recall@1"),
          "flow": ("flow/identity_recall@1",), "slots": ("fg_ari",)}


# synthetic data ---------------------------------------------------------------------------------
def captions_data(folder: Path, images: int, dim: int) -> dict:
    """5 captions per image: the image's direction plus strong noise; image features a linear
    map of it; 5% of the images in split test (the evaluation)."""
    rng = np.random.default_rng(0)
    match_id = np.repeat(np.arange(images), 5)
    rows = len(match_id)
    caption_idx = np.tile(np.arange(5), images)
    split = np.where(rng.random(images) < 0.05, "test", "train")[match_id]
    width = len(str(images))
    image_id = np.char.add("img", np.char.zfill(match_id.astype(str), width))
    table = pa.table({"image_id": pa.array(image_id),
                      "match_id": pa.array(match_id, pa.int64()),
                      "caption_idx": pa.array(caption_idx, pa.int16()),
                      "caption": pa.array(np.char.add(np.char.add(image_id, " caption "),
                                                      caption_idx.astype(str))),
                      "split": pa.array(split),
                      "source_row": pa.array(np.arange(rows), pa.int64()),
                      "image_path": pa.nulls(rows, pa.string())})
    pq.write_table(table, folder / "captions.parquet")
    direction = rng.normal(size=(images, dim)).astype(np.float32)
    # noise well above the signal, so that recall@1 among the held-out images is far from 1
    text = direction[match_id] + 3.0 * rng.normal(size=(rows, dim)).astype(np.float32)
    np.save(folder / "text.npy", text)
    mixing = rng.normal(size=(dim, dim + 128)).astype(np.float32) / np.sqrt(dim)
    np.save(folder / "images.npy", direction @ mixing)
    return {"captions": str(folder / "captions.parquet"),
            "text_features": str(folder / "text.npy"),
            "image_features": str(folder / "images.npy")}


def sequence_data(folder: Path, docs: int, length: int, dim: int, context: int) -> dict:
    """Compact sequences: document d starts at a random point and moves by its own step per
    chunk, plus noise, so the next vector is predictable from the context."""
    rng = np.random.default_rng(0)
    start = rng.normal(size=(docs, 1, dim)).astype(np.float32)
    step = 0.3 * rng.normal(size=(docs, 1, dim)).astype(np.float32)
    noise = 0.2 * rng.normal(size=(docs, length, dim)).astype(np.float32)
    vectors = start + np.arange(length, dtype=np.float32)[None, :, None] * step + noise
    path = folder / "sequences.npz"
    write_npz(path, {"vectors": vectors.reshape(-1, dim),
                     "doc_offsets": np.arange(0, docs * length + 1, length, dtype=np.int64),
                     "context_length": np.array(context, dtype=np.int64)})
    return {"sequences": str(path)}


def attribute_data(folder: Path, rows: int, dim: int, attributes: int) -> dict:
    # noisy enough that the transfer is not perfect after a short run
    embeddings, table = synthetic_attribute_embeddings(rows, dim, attributes=attributes,
                                                       identities=max(40, rows // 50),
                                                       attribute_scale=0.3, noise=1.5, seed=0)
    np.save(folder / "embeddings.npy", embeddings)
    write_attribute_table(table, folder / "attributes.parquet")
    return {"embeddings": str(folder / "embeddings.npy"),
            "attributes": str(folder / "attributes.parquet")}


def scene_data(folder: Path, scenes: int, size: int) -> dict:
    """Scenes of 1..4 coloured rectangles, one per quadrant (never hidden), on a dark
    background; the masks label them 1..k in order."""
    rng = np.random.default_rng(0)
    half = size // 2
    count = rng.integers(1, 5, size=scenes)
    images = np.broadcast_to(rng.integers(0, 60, size=(scenes, 1, 1, 3), dtype=np.uint8),
                             (scenes, size, size, 3)).copy()
    masks = np.zeros((scenes, size, size), dtype=np.uint8)
    ys, xs = np.mgrid[0:size, 0:size]
    for k in range(4):  # the 4 quadrants, each scene's k-th object in quadrant k
        top, left = (k // 2) * half, (k % 2) * half
        h, w = rng.integers(3, half, size=scenes), rng.integers(3, half, size=scenes)
        y0 = top + rng.integers(0, half - h + 1)
        x0 = left + rng.integers(0, half - w + 1)
        inside = ((ys >= y0[:, None, None]) & (ys < (y0 + h)[:, None, None])
                  & (xs >= x0[:, None, None]) & (xs < (x0 + w)[:, None, None])
                  & (k < count)[:, None, None])
        colour = rng.integers(80, 256, size=(scenes, 3), dtype=np.uint8)
        images[inside] = np.repeat(colour, inside.sum(axis=(1, 2)), axis=0)
        masks[inside] = k + 1
    save_scenes(SceneSet(images, masks, count.astype(np.int8)), folder / "scenes.npz")
    return {"scenes": str(folder / "scenes.npz")}


DATA = {"contrastive": captions_data, "lvm": sequence_data, "flow": attribute_data,
        "slots": scene_data}


# runs -------------------------------------------------------------------------------------------
def flags(values: dict) -> list[str]:
    out = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False and value is not None:
            out += [flag, str(value)]
    return out


def train(recipe: str, nproc: int, options: dict, out: Path, device: str) -> dict:
    """One run of ``nproc`` processes; its samples/s, wall time and evaluation."""
    arguments = ["-m", "uncollapse", "train", recipe, *flags(options), "--out", str(out),
                 "--device", device, "--quiet"]
    if nproc > 1:
        arguments = ["--standalone", f"--nproc_per_node={nproc}", *arguments]
    launcher = ["torchrun"] if nproc > 1 else ["python"]
    command = [sys.executable, *(["-m", "torch.distributed.run"] if nproc > 1 else []),
               *arguments]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    if device == "cpu":  # one core per process, as one GPU per process
        env["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n"
                           f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    records = RunDir(out).read_metrics()
    rates = [r["samples_per_s"] for r in records[1:]] or [records[-1]["samples_per_s"]]
    evaluation = json.loads((out / "eval.json").read_text())
    return {"processes": nproc, "batch_size_per_process": options["batch_size"],
            "samples_per_s": statistics.median(rates), "wall_s": wall,
            "final_loss": records[-1]["loss"], "metric": metric_of(recipe, evaluation),
            "evaluation": numbers(evaluation),
            "command": " ".join(launcher + arguments)}


def numbers(evaluation: dict, prefix: str = "") -> dict[str, float]:
    """The evaluation's numbers, nested keys joined by '/' (the JSON keeps every one)."""
    out: dict[str, float] = {}
    for key, value in evaluation.items():
        if isinstance(value, dict):
            out.update(numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def metric_of(recipe: str, evaluation: dict) -> float:
    value = evaluation
    for key in METRIC[recipe]:
        value = value[key]
    return float(value)


def bench_recipe(recipe: str, size: str, nproc: int, device: str, folder: Path,
                 steps: int | None, compile_model: bool) -> dict:
    data_size, global_batch, default_steps, options = SIZES[size][recipe]
    steps = steps or default_steps
    if global_batch % nproc:
        raise SystemExit(f"{recipe}: global batch {global_batch} is not divisible by "
                         f"{nproc} processes")
    data_dir = folder / recipe / "data"
    data_dir.mkdir(parents=True)
    started = time.perf_counter()
    data = DATA[recipe](data_dir, **data_size)
    made = time.perf_counter() - started
    common = {**data, **options, "steps": steps, "log_every": max(1, steps // 12),
              "checkpoint_every": steps + 1, "monitor_warmup": steps + 1,
              "compile": compile_model}
    runs = {"1": train(recipe, 1, {**common, "batch_size": global_batch},
                       folder / recipe / "run1", device)}
    result = {"global_batch": global_batch, "steps": steps, "data": data_size,
              "data_seconds": made, "options": options,
              "metric_name": "/".join(METRIC[recipe]), "runs": runs}
    if nproc > 1:
        runs[str(nproc)] = train(recipe, nproc, {**common, "batch_size": global_batch // nproc},
                                 folder / recipe / f"run{nproc}", device)
        result["scaling_efficiency"] = (runs[str(nproc)]["samples_per_s"]
                                        / (nproc * runs["1"]["samples_per_s"]))
    return result


def device_name(device: str) -> str:
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def table(result: dict) -> str:
    n = result["nproc"]
    lines = [f"{'recipe':<12} {'global batch':>12} {'steps':>6} {'1 proc/s':>12} "
             + (f"{f'{n} proc/s':>12} {'efficiency':>10} " if n > 1 else "")
             + f"{'metric':<24} {'1 proc':>8}" + (f" {f'{n} proc':>8}" if n > 1 else "")]
    for recipe, r in result["recipes"].items():
        one = r["runs"]["1"]
        line = (f"{recipe:<12} {r['global_batch']:>12} {r['steps']:>6} "
                f"{one['samples_per_s']:>12.0f} ")
        if n > 1:
            many = r["runs"][str(n)]
            line += f"{many['samples_per_s']:>12.0f} {r['scaling_efficiency']:>10.3f} "
        line += f"{r['metric_name']:<24} {one['metric']:>8.4f}"
        if n > 1:
            line += f" {many['metric']:>8.4f}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help="comma-separated recipes (default: all four)")
    parser.add_argument("--nproc", type=int, default=None,
                        help="processes of the multi-process run (default: the GPUs, else 2)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--size", choices=tuple(SIZES), default=None,
                        help="data and batch sizes (default: gpu on a GPU, else smoke)")
    parser.add_argument("--steps", type=int, help="steps of every run (default: the size's)")
    parser.add_argument("--compile", action="store_true", help="train with torch.compile")
    parser.add_argument("--keep", help="keep the data and run directories here")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    cuda = args.device != "cpu" and torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        raise SystemExit("--device cuda: torch sees no CUDA device")
    device = "cuda" if cuda else "cpu"
    nproc = args.nproc or (torch.cuda.device_count() if cuda else 2)
    if cuda and nproc > torch.cuda.device_count():
        raise SystemExit(f"--nproc {nproc}: this machine shows {torch.cuda.device_count()} GPUs")
    size = args.size or ("gpu" if cuda else "smoke")
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_multi_gpu_"))
    folder.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "bench_multi_gpu", "date": datetime.date.today().isoformat(),
              "device": device_name(device), "device_count": torch.cuda.device_count()
              if cuda else 0, "torch": torch.__version__, "nproc": nproc, "size": size,
              "command": " ".join(["python", "benchmarks/bench_multi_gpu.py",
                                   *(sys.argv[1:] if argv is None else argv)]),
              "recipes": {}}
    try:
        for recipe in recipes:
            result["recipes"][recipe] = bench_recipe(recipe, size, nproc, device, folder,
                                                     args.steps, args.compile)
            print(f"{recipe}: {json.dumps(result['recipes'][recipe])}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
