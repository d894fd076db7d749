"""Where a training step's time goes: the engine's full step against the model's forward and
backward pass alone, and against the same model fed the common way.

Three measurements of one recipe, same model, same batch size, same precision, in one process:

1. ``engine``: ``uncollapse.trainers.engine.train`` itself (the per-epoch plan on the device, the
   batch gathered there by indexing, the loss guard and metrics every ``log_every`` steps),
   timed inside its own loop from the start of step 20 to the start of step 20 + ``steps``.
2. ``forward+backward``: the recipe's loss, backward and optimiser step on one batch gathered
   once and kept on the device (no data path at all).
3. ``common way``: a per-item ``Dataset`` (one ``__getitem__`` per sample, numpy arrays), a
   ``DataLoader`` with the same batch sampler and torch's default collate, and a host-to-device
   copy of every batch (pinned memory, ``non_blocking``), then the same loss and step.

Each is timed over ``--steps`` steps after 20 warm-up steps, with CUDA events on a GPU; the three
are run ``--repeats`` times, interleaved, and each figure is the median of the runs.

Run on a GPU (it runs on a CPU too, slowly)::

    python benchmarks/bench_trainers.py --recipe lvm --sequences seq.npz --steps 300
    python benchmarks/bench_trainers.py --recipe contrastive --synthetic-captions 200000
    python benchmarks/bench_trainers.py --recipe flow --synthetic-rows 100000
    python benchmarks/bench_trainers.py --recipe slots --batch-size 64 --scenes 20000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from uncollapse.data.attributes.synthetic import (
    synthetic_attribute_embeddings,
    write_attribute_table,
)
from uncollapse.data.npz import write_npz
from uncollapse.data.scenes.contract import save_scenes
from uncollapse.trainers.compiling import compile_for_training, step_begins
from uncollapse.trainers.contrastive.config import ContrastiveConfig
from uncollapse.trainers.engine import resolve_device, train
from uncollapse.trainers.flow.config import FlowConfig
from uncollapse.trainers.lvm.config import LVMConfig
from uncollapse.trainers.recipe import recipe_class
from uncollapse.trainers.run_dir import RunDir
from uncollapse.trainers.slots.config import SlotsConfig


class PerItemSequences(Dataset):
    """The common way: one sample at a time, (context, target, negative) numpy arrays."""

    def __init__(self, recipe):
        self.data = recipe.data  # a HardNegativeSequenceDataset: its own negative draw per item
        self.samples = recipe.train_samples_np

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        context, target, negative = self.data[int(self.samples[i])]
        return np.asarray(context), np.asarray(target), np.asarray(negative)


class PerItemCaptions(Dataset):
    def __init__(self, recipe):
        self.text = recipe.text.cpu().numpy()
        self.groups = recipe.match_id.cpu().numpy()
        self.rows = recipe.train_rows_np
        self.images = None if recipe.images is None else recipe.images.cpu().numpy()
        self.group_row = None if recipe.group_row is None else recipe.group_row.cpu().numpy()

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = int(self.rows[i])
        item = {"text": self.text[row], "groups": self.groups[row]}
        if self.images is not None:
            item["image"] = self.images[self.group_row[self.groups[row]]]
        return item


class PerItemFlow(Dataset):
    """The common way for the flow recipe: one (embedding, target attributes, target
    combination) triple per item, numpy arrays on the host."""

    def __init__(self, recipe):
        self.z = recipe.z.cpu().numpy()
        self.target = recipe.target_attributes.cpu().numpy()
        self.combination = recipe.target_combination.cpu().numpy()

    def __len__(self):
        return len(self.z)

    def __getitem__(self, i):
        return {"z": self.z[i], "target": self.target[i], "combination": self.combination[i]}


class PerItemScenes(Dataset):
    """The common way for the slots recipe: one uint8 image per item, converted to floats in
    [-1, 1] on the host."""

    def __init__(self, recipe):
        self.images = recipe.images.cpu().numpy()
        self.scenes = recipe.train_scenes.cpu().numpy()

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, i):
        image = self.images[self.scenes[i]].transpose(2, 0, 1).astype(np.float32)
        return {"images": image / 127.5 - 1.0}


PER_ITEM = {"lvm": PerItemSequences, "contrastive": PerItemCaptions, "flow": PerItemFlow,
            "slots": PerItemScenes}


def synthetic_sequences(path: Path, docs: int, length: int, dim: int, context: int) -> Path:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(docs * length, dim)).astype(np.float32)
    write_npz(path, {"vectors": vectors,
                     "doc_offsets": np.arange(0, docs * length + 1, length, dtype=np.int64),
                     "context_length": np.array(context, dtype=np.int64)})
    return path


def synthetic_captions(folder: Path, images: int, dim: int) -> tuple[Path, Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    match_id = np.repeat(np.arange(images), 5)
    table = pa.table({"image_id": pa.array(match_id.astype(str)),
                      "match_id": pa.array(match_id, pa.int64()),
                      "caption_idx": pa.array(np.tile(np.arange(5), images), pa.int16()),
                      "caption": pa.array([f"caption {i}" for i in range(len(match_id))]),
                      "split": pa.array(["train"] * len(match_id)),
                      "source_row": pa.array(np.arange(len(match_id)), pa.int64()),
                      "image_path": pa.array([None] * len(match_id), pa.string())})
    pq.write_table(table, folder / "captions.parquet")
    direction = rng.normal(size=(images, dim)).astype(np.float32)
    np.save(folder / "text.npy", direction[match_id] + rng.normal(size=(len(match_id), dim))
            .astype(np.float32))
    np.save(folder / "images.npy", direction)
    return folder / "captions.parquet", folder / "text.npy", folder / "images.npy"


class Stopwatch:
    """Elapsed time between two marks: CUDA events on a GPU (the device's own clock, no host
    synchronisation inside the timed region), the host clock after a synchronisation on a CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> float:
        first, last = self.marks[0], self.marks[-1]
        if self.cuda:
            last.synchronize()
            return first.elapsed_time(last) / 1000
        return last - first


def timed_recipe(cls, stopwatch: Stopwatch, warmup: int, steps: int):
    """``cls`` with a mark at the start of engine step ``warmup`` and of step ``warmup +
    steps``: the time between them is ``steps`` whole engine steps (data, forward, backward,
    optimiser, the guard's read-backs), taken inside the engine's own loop."""

    class Timed(cls):
        calls = 0

        def step(self, model, rows):
            if Timed.calls in (warmup, warmup + steps):
                stopwatch.mark()
            Timed.calls += 1
            return super().step(model, rows)

    Timed.__name__ = cls.__name__
    return Timed


WARMUP = 20


def common_loader(dataset: Dataset, batch_sampler, n_workers: int,
                  device: torch.device) -> DataLoader:
    """The common way's loader: the per-item dataset in ``n_workers`` worker processes, default
    collate, pinned memory on a GPU. The workers are spawned: workers forked from a process that
    holds a CUDA context and the LVM recipe's background thread aborted on an H100 with "CUDA
    error: initialization error"."""
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=n_workers,
                      pin_memory=device.type == "cuda", persistent_workers=n_workers > 0,
                      multiprocessing_context="spawn" if n_workers > 0 else None)


def measure_once(config, steps: int, workers: list[int], run: int) -> dict:
    """One run of the three measurements, each over ``steps`` steps after ``WARMUP``."""
    device = resolve_device(config.device)
    cls = recipe_class(config.recipe)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())

    # 1. the engine itself, timed inside its loop
    engine_watch = Stopwatch(device)
    config.out = f"{config.out.rsplit('-', 1)[0]}-{run}"
    config.steps, config.log_every = WARMUP + steps + 1, 10
    config.monitor_warmup, config.checkpoint_every = config.steps + 1, config.steps + 1
    train(timed_recipe(cls, engine_watch, WARMUP, steps), config)
    records = RunDir(config.out).read_metrics()
    batch_size = config.batch_size

    # 2. forward+backward alone on one batch kept on the device
    torch.manual_seed(config.seed)
    recipe = cls(config, device)
    recipe.preflight()
    recipe.setup()
    recipe.on_epoch(0)
    model = recipe.build_model().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  fused=device.type == "cuda")
    compiled = (compile_for_training(recipe, model, distributed=False,
                                     cuda_graphs=config.cuda_graphs)
                if config.compile else model)  # what the engine compiles
    batch = recipe.batch(recipe.epoch_plan(0)[0])
    batch_size = len(next(iter(batch.values())))

    def train_step(b):
        step_begins(config.cuda_graphs)
        with autocast:
            out = recipe.loss(compiled, b)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(WARMUP):
        train_step(batch)
    alone_watch = Stopwatch(device)
    alone_watch.mark()
    for _ in range(steps):
        train_step(batch)
    alone_watch.mark()

    # 3. the common way: per-item dataset, DataLoader, default collate, copy each batch
    dataset = PER_ITEM[config.recipe](recipe)
    common = {}
    for n_workers in workers:
        loader = common_loader(dataset, recipe.sampler, n_workers, device)
        names = ("context", "target", "negative") if config.recipe == "lvm" else None
        watch, done = Stopwatch(device), 0
        while done < WARMUP + steps:
            for item in loader:
                if names:
                    item = dict(zip(names, item, strict=True))
                if done == WARMUP:
                    watch.mark()
                b = {k: v.to(device, non_blocking=True) for k, v in item.items()}
                train_step(b)
                done += 1
                if done >= WARMUP + steps:
                    break
        watch.mark()
        common[f"common_way_workers_{n_workers}"] = steps * batch_size / watch.seconds()
    engine = steps * batch_size / engine_watch.seconds()
    alone = steps * batch_size / alone_watch.seconds()
    return {"engine_samples_per_s": engine, "forward_backward_samples_per_s": alone, **common,
            "engine_step_over_forward_backward": alone / engine,
            "engine_over_best_common_way": (engine / max(common.values()) if common
                                            else float("nan")),
            "engine_logged_samples_per_s": statistics.median(
                r["samples_per_s"] for r in records[1:]),
            "parameters": sum(p.numel() for p in model.parameters()),
            "batch_size": batch_size}


def measure(config, steps: int, workers: list[int], repeats: int = 1) -> dict:
    """``repeats`` runs of the three measurements, interleaved; each figure is the median of
    the runs (every run is kept under ``runs``)."""
    device = resolve_device(config.device)
    runs = [measure_once(config, steps, workers, run) for run in range(repeats)]
    keys = [k for k in runs[0] if k not in ("parameters", "batch_size")]
    return {"recipe": config.recipe, "device": torch.cuda.get_device_name(0)
            if device.type == "cuda" else "cpu", "batch_size": runs[0]["batch_size"],
            "parameters": runs[0]["parameters"], "steps": steps, "repeats": repeats,
            "timing": "CUDA events" if device.type == "cuda" else "host clock",
            **{k: statistics.median(r[k] for r in runs) for k in keys}, "runs": runs}


ARCH = {"contrastive": "dual tower", "flow": "vector-field MLP, 2 Euler steps",
        "slots": "slot attention, 5 slots, 32x32"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=tuple(PER_ITEM), default="lvm")
    parser.add_argument("--sequences", help="sequence file (default: synthetic)")
    parser.add_argument("--synthetic-captions", type=int, default=100_000,
                        help="images of the synthetic caption table (5 captions each)")
    parser.add_argument("--synthetic-rows", type=int, default=100_000,
                        help="rows of the synthetic attribute embeddings (flow)")
    parser.add_argument("--scenes", type=int, default=20_000,
                        help="generated scenes of 32x32 with up to 4 objects (slots)")
    parser.add_argument("--scene-file", help="a scene file instead (the GPU host lacks polars, "
                        "which the scene builder's package imports)")
    parser.add_argument("--arch", default="gru")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--workers", default="0,4",
                        help="worker counts of the common way's loader, comma-separated; "
                             "'none' measures the engine and forward+backward alone")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of the three measurements; each figure is their median")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="CUDA graphs of the compiled loss (mode reduce-overhead); "
                             "implies --compile")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        common = dict(out=str(folder / "run"), device=args.device, batch_size=args.batch_size,
                      hidden=args.hidden, compile=args.compile or args.cuda_graphs,
                      cuda_graphs=args.cuda_graphs, quiet=True, lr=1e-3)
        if args.recipe == "lvm":
            sequences = args.sequences or synthetic_sequences(folder / "seq.npz", 2000, 100,
                                                              384, 8)
            config = LVMConfig(sequences=str(sequences), arch=args.arch, max_per_doc=8,
                               eval_fraction=0.05, **common)
        elif args.recipe == "flow":
            config = FlowConfig(embeddings=str(folder / "e.npy"),
                                attributes=str(folder / "a.parquet"), **common)
            embeddings, table = synthetic_attribute_embeddings(args.synthetic_rows, 512,
                                                               attributes=5, identities=2000)
            np.save(config.embeddings, embeddings)
            write_attribute_table(table, config.attributes)
        elif args.recipe == "slots":
            scene_file = args.scene_file
            if not scene_file:
                from uncollapse.pipeline.scenes import generate_scenes  # needs polars

                scene_file = folder / "scenes.npz"
                save_scenes(generate_scenes(args.scenes, 32, 4, seed=0), scene_file)
            common.pop("hidden")
            config = SlotsConfig(scenes=str(scene_file), **common)
        else:
            captions, text, images = synthetic_captions(folder, args.synthetic_captions, 384)
            config = ContrastiveConfig(captions=str(captions), text_features=str(text),
                                       image_features=str(images), per_group=2,
                                       eval_split="none", eval_fraction=0.02, **common)
        result = measure(config, args.steps, [int(w) for w in args.workers.split(",")
                                               if w.strip() not in ("", "none")],
                         args.repeats)
        result.update({"arch": ARCH.get(args.recipe, args.arch), "compile": args.compile,
                       "cuda_graphs": args.cuda_graphs,
                       **({} if args.recipe == "slots" else {"hidden": args.hidden})})
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
