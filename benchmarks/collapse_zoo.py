"""The collapse zoo: runs broken the way real projects break them, and the doctor's verdicts.

Every case makes one run, on CPU in seconds, and asks ``diagnose_run`` for its cause:

- runs of the four included recipes (``uncollapse train ...`` through the command line), each
  broken in its data or its config the way the founding write-ups broke them (loop-counter
  image ids, row-counter document ids, documents cut into paragraphs, unit-norm vectors,
  shuffled targets, a learning rate far too high, rank-deficient features, splits drawn per
  caption or per image instead of per image or per identity, batch prototypes, unclamped
  diversity, slots that never separate), at several strengths and seeds, next to healthy runs
  of every recipe;
- runs of "another framework" (plain torch loops written here, logging JSONL, CSV or
  TensorBoard under their own metric names) for the causes the included trainers cannot
  produce: overfitting, divergence to NaN, positives split across (simulated) ranks, flips
  applied with a probability, a negative regulariser, unit-norm outputs handed to a decoder.

It prints the confusion matrix of the doctor's top-ranked cause against the true one and exits
1 unless every broken run's true cause is ranked first and no healthy run gets a cause.

    python benchmarks/collapse_zoo.py            # the full zoo (make zoo)
    python benchmarks/collapse_zoo.py --small    # one run per cause (the test suite's)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from uncollapse.cli import main  # noqa: E402
from uncollapse.data.attributes.synthetic import (  # noqa: E402
    synthetic_attribute_embeddings,
    write_attribute_table,
)
from uncollapse.data.sequences.dataset import SequenceDataset  # noqa: E402
from uncollapse.samplers.grouped import GroupedBatchSampler  # noqa: E402
from uncollapse.validators.doctor import diagnose_run  # noqa: E402
from uncollapse.validators.doctor.causes import CAUSES  # noqa: E402

COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"
HEALTHY = "HEALTHY"
CONTRASTIVE = ["--hidden", 64, "--dim", 32, "--warmup-steps", 5, "--log-every", 5,
               "--monitor-every", 10, "--monitor-warmup", 10, "--batch-size", 40, "--steps", 60,
               "--lr", 2e-3]
LVM = ["--hidden", 64, "--layers", 1, "--warmup-steps", 5, "--log-every", 5, "--monitor-every",
       10, "--monitor-warmup", 10, "--batch-size", 16, "--steps", 80, "--lr", 2e-3]
FLOW = ["--steps", 150, "--batch-size", 64, "--per-group", 8, "--hidden", 64, "--lr", 3e-3,
        "--warmup-steps", 5, "--log-every", 10, "--monitor-every", 50, "--monitor-warmup", 50]
SLOTS = ["--slots", 4, "--slot-dim", 16, "--channels", 16, "--batch-size", 16, "--steps", 40,
         "--lr", 3e-3, "--warmup-steps", 5, "--log-every", 2, "--monitor-every", 10,
         "--monitor-warmup", 10, "--eval-fraction", 0.25, "--diversity-warmup", 0]


# inputs --------------------------------------------------------------------------------------
class Workshop:
    """The zoo's inputs, built once with the pipeline's own commands, and its runs."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.runs = root / "runs"
        self.data.mkdir(parents=True, exist_ok=True)
        self.runs.mkdir(parents=True, exist_ok=True)
        self._built: dict[str, object] = {}

    def cli(self, *args, expect: tuple[int, ...] = (0,)) -> None:
        result = CliRunner().invoke(main, [str(a) for a in args])
        if result.exit_code not in expect:
            raise RuntimeError(f"uncollapse {' '.join(map(str, args))} exited "
                               f"{result.exit_code}: {result.output[-2000:]}")

    def once(self, key: str, build: Callable[[], object]):
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def train(self, name: str, recipe: str, *args, expect: tuple[int, ...] = (0,)) -> Path:
        out = self.runs / name
        shutil.rmtree(out, ignore_errors=True)
        self.cli("train", recipe, *args, "--out", out, "--device", "cpu", "--quiet",
                 expect=expect)
        return out

    # captions ---------------------------------------------------------------------------------
    def captions(self) -> Path:
        """The bundled COCO captions cut to 120 images (600 captions)."""
        def build():
            full = self.data / "coco.parquet"
            self.cli("build", "captions", COCO, "-o", full, "--cache-dir", self.data / "cache",
                     "--quiet")
            table = pq.read_table(full)
            keep = np.asarray(table.column("match_id")) < 120
            path = self.data / "captions.parquet"
            pq.write_table(table.filter(pa.array(keep)), path)
            return path
        return self.once("captions", build)

    def caption_variant(self, name: str, change: Callable[[pa.Table], pa.Table]) -> Path:
        path = self.data / f"captions_{name}.parquet"
        pq.write_table(change(pq.read_table(self.captions())), path)
        return path

    def text_features(self, seed: int, rank: int | None = None) -> Path:
        """Caption features: a random direction per image plus noise (rank-limited if asked:
        features read from a layer that keeps ``rank`` directions)."""
        match_id = np.asarray(pq.read_table(self.captions(), columns=["match_id"]).column(0))
        rng = np.random.default_rng(seed)
        direction = rng.normal(size=(match_id.max() + 1, 32))
        text = direction[match_id] + 1.2 * rng.normal(size=(len(match_id), 32))
        if rank is not None:
            text = text @ rng.normal(size=(32, rank)) @ rng.normal(size=(rank, 32))
        path = self.data / f"text_s{seed}_r{rank}.npy"
        np.save(path, text.astype(np.float32))
        return path

    def image_features(self, seed: int) -> Path:
        """Image features written the way a loop-counter pipeline writes them: row k holds the
        image of caption k (each image repeated once per caption)."""
        match_id = np.asarray(pq.read_table(self.captions(), columns=["match_id"]).column(0))
        rng = np.random.default_rng(seed)
        direction = rng.normal(size=(match_id.max() + 1, 32))
        image = direction @ rng.normal(size=(32, 40)) / np.sqrt(32)
        path = self.data / f"images_per_caption_s{seed}.npy"
        np.save(path, image[match_id].astype(np.float32))
        return path

    # sequences --------------------------------------------------------------------------------
    def sequences(self) -> Path:
        """A compact sequence file of 24 documents of 12 chunks whose vectors drift by a fixed
        step (raw scale), built with `build chunks` and `build sequences`."""
        def build():
            source = self.data / "docs.jsonl"
            with open(source, "w", encoding="utf-8") as fh:
                for d in range(24):
                    text = "\n\n".join(f"Document {d} paragraph {t}." for t in range(12))
                    fh.write(json.dumps({"doc_id": f"doc{d:03d}", "text": text}) + "\n")
            chunks = self.data / "chunks.parquet"
            self.cli("build", "chunks", source, "-o", chunks, "--cache-dir",
                     self.data / "cache", "--quiet")
            table = pq.read_table(chunks)
            doc = np.unique(np.asarray(table.column("doc_key")), return_inverse=True)[1]
            position = np.asarray(table.column("position"))
            rng = np.random.default_rng(0)
            vectors = (rng.normal(size=(24, 8)) * 20)[doc] + position[:, None] * 3.0 \
                + 0.2 * rng.normal(size=(len(doc), 8))
            np.save(self.data / "vectors.npy", vectors.astype(np.float32))
            out = self.data / "sequences.npz"
            self.cli("build", "sequences", chunks, "--vectors", self.data / "vectors.npy",
                     "--context", 3, "--compact", "-o", out, "--cache-dir",
                     self.data / "cache", "--quiet")
            return out
        return self.once("sequences", build)

    def dense(self) -> dict[str, np.ndarray]:
        def build():
            data = SequenceDataset(self.sequences(), mmap=False)
            contexts, targets = data.get_batch(np.arange(len(data)))
            return {"context_sequences": np.asarray(contexts, dtype=np.float32),
                    "target_vectors": np.asarray(targets, dtype=np.float32),
                    "doc_ids": np.asarray(data.doc_ids, dtype=np.int64),
                    "target_positions": np.asarray(data.target_positions, dtype=np.int32)}
        return self.once("dense", build)

    def sequence_variant(self, name: str, **arrays) -> Path:
        values = {**self.dense(), **arrays}
        values = {k: v for k, v in values.items() if v is not None}
        path = self.data / f"sequences_{name}.npz"
        np.savez(path, **values)
        return path

    # attributes and scenes --------------------------------------------------------------------
    def attributes(self, seed: int, leak: float = 0.0) -> tuple[Path, Path]:
        """Synthetic attribute-structured embeddings; ``leak``: the share of rows whose split is
        drawn per row instead of per identity."""
        embeddings, table = synthetic_attribute_embeddings(rows=600, dim=32, attributes=3,
                                                           identities=40, seed=seed)
        if leak:
            rng = np.random.default_rng(seed + 100)
            redraw = rng.random(len(table["split"])) < leak
            table["split"] = np.where(redraw, np.where(rng.random(len(redraw)) < 0.2, "test",
                                                       "train"), table["split"])
        stem = f"attributes_s{seed}_l{leak}"
        np.save(self.data / f"{stem}.npy", embeddings)
        write_attribute_table(table, self.data / f"{stem}.parquet")
        return self.data / f"{stem}.npy", self.data / f"{stem}.parquet"

    def scenes(self) -> Path:
        def build():
            path = self.data / "scenes.npz"
            self.cli("build", "scenes", "--num", 64, "--size", 16, "--max-objects", 3, "--seed",
                     0, "--quiet", "-o", path)
            return path
        return self.once("scenes", build)


# the included recipes, broken and healthy ---------------------------------------------------
def contrastive(w: Workshop, name: str, *, seed: int = 0, captions: Path | None = None,
                rank: int | None = None, extra=()) -> dict:
    run = w.train(name, "contrastive", "--captions", captions or w.captions(),
                  "--text-features", w.text_features(seed, rank), "--seed", seed,
                  *CONTRASTIVE, *extra)
    return {"run_dir": run}


def row_ids(table: pa.Table, *, text: bool = False) -> pa.Table:
    """The loop-counter bug: every caption gets its row number as image id and match_id."""
    rows = np.arange(table.num_rows)
    image = np.char.add("caption_", rows.astype(str)) if text else rows.astype(str)
    table = table.set_column(table.schema.get_field_index("match_id"), "match_id",
                             pa.array(rows, pa.int64()))
    return table.set_column(table.schema.get_field_index("image_id"), "image_id",
                            pa.array(image))


def splits(table: pa.Table, *, per_caption: float, seed: int = 0) -> pa.Table:
    """Splits by image (20% of images in test), except that ``per_caption`` of the captions
    get a split drawn per caption (the leak)."""
    rng = np.random.default_rng(seed)
    match = np.asarray(table.column("match_id"))
    by_image = np.where(rng.random(match.max() + 1)[match] < 0.2, "test", "train")
    by_row = np.where(rng.random(len(match)) < 0.2, "test", "train")
    split = np.where(rng.random(len(match)) < per_caption, by_row, by_image)
    return table.set_column(table.schema.get_field_index("split"), "split", pa.array(split))


def lvm(w: Workshop, name: str, *, sequences: Path | None = None, seed: int = 0,
        extra=()) -> dict:
    run = w.train(name, "lvm", "--sequences", sequences or w.sequences(), "--seed", seed,
                  *LVM, *extra)
    return {"run_dir": run}


def flow(w: Workshop, name: str, *, seed: int = 0, leak: float = 0.0, extra=()) -> dict:
    embeddings, attributes = w.attributes(seed, leak)
    run = w.train(name, "flow", "--embeddings", embeddings, "--attributes", attributes,
                  "--seed", seed, *FLOW, *extra)
    return {"run_dir": run}


def slots(w: Workshop, name: str, *, seed: int = 0, extra=(), expect=(0,)) -> dict:
    run = w.train(name, "slots", "--scenes", w.scenes(), "--seed", seed, *SLOTS, *extra,
                  expect=expect)
    return {"run_dir": run}


# another framework: plain torch loops with their own logging --------------------------------
def write_log(path: Path, rows: list[dict], fmt: str) -> Path:
    """Logged metrics as JSON lines, CSV or TensorBoard events (``path`` without suffix)."""
    if fmt == "jsonl":
        path = path.with_suffix(".jsonl")
        path.write_text("".join(json.dumps({k: (v if math.isfinite(v) else str(v))
                                            for k, v in r.items()}) + "\n" for r in rows))
    elif fmt == "csv":
        path = path.with_suffix(".csv")
        names = list(dict.fromkeys(k for r in rows for k in r))
        lines = [",".join(names)] + [",".join("" if k not in r else repr(float(r[k]))
                                              for k in names) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    else:
        from torch.utils.tensorboard import SummaryWriter

        shutil.rmtree(path, ignore_errors=True)
        writer = SummaryWriter(str(path))
        for r in rows:
            for key, value in r.items():
                if key != "step":
                    writer.add_scalar(key, value, int(r["step"]))
        writer.close()
    return path


def user_regression(w: Workshop, name: str, *, train_rows: int, noise: float, lr: float,
                    epochs: int, frequency: float = 0.25, every_step: bool = False,
                    fmt: str = "jsonl", names=("train/loss", "val/loss"),
                    seed: int = 0) -> dict:
    """An MLP regression of ``sin(frequency * x.w)`` logged per epoch (train and validation
    loss; the training loss of every step with ``every_step``): overfits a target too wiggly
    for its few rows, diverges at a learning rate far too high."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(16, 1, generator=generator)

    def rows(n):
        x = torch.randn(n, 16, generator=generator)
        return x, torch.sin(frequency * x @ weights) + noise * torch.randn(
            n, 1, generator=generator)

    (x, y), (vx, vy) = rows(train_rows), rows(512)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 1))
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    logged, step = [], 0
    for epoch in range(epochs):
        for batch in torch.randperm(train_rows, generator=generator).split(32):
            loss = F.mse_loss(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if every_step:
                logged.append({"step": step, names[0]: loss.item()})
        if every_step:
            continue
        with torch.no_grad():
            logged.append({"step": epoch, names[0]: float(F.mse_loss(model(x), y)),
                           names[1]: float(F.mse_loss(model(vx), vy))})
    inputs = {"metrics": write_log(w.runs / name, logged, fmt)}
    if names != ("train/loss", "val/loss"):  # the doctor is told the run's own names
        inputs["mapping"] = f"loss={names[0]},val_loss={names[1]}"
    return inputs


def user_ranks(w: Workshop, name: str, *, world: int, deal: str, loss_form: str = "masked",
               log_positives: bool = True, seed: int = 0, fmt: str = "jsonl") -> dict:
    """Caption-caption contrastive training on ``world`` simulated ranks: each global batch
    (2 captions of each of 20 images, a group's rows side by side) is dealt to the ranks
    ``strided`` (rank r takes rows r, r + world, ...: a DistributedSampler over the grouped
    order) or ``contiguous`` (rank r takes its own block); the loss is computed per rank."""
    captions = w.captions()
    match = np.asarray(pq.read_table(captions, columns=["match_id"]).column(0))
    features = torch.from_numpy(np.load(w.text_features(seed)))
    torch.manual_seed(seed)
    tower = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(),
                                torch.nn.Linear(64, 32))
    optimiser = torch.optim.AdamW(tower.parameters(), lr=2e-3)
    sampler = GroupedBatchSampler(match, 40, 2, seed=seed, drop_last=True)
    groups = torch.from_numpy(np.array(match, dtype=np.int64))
    logged, step = [], 0
    for epoch in range(4):
        sampler.set_epoch(epoch)
        for batch in sampler:
            batch = torch.as_tensor(batch)
            parts = ([batch[r::world] for r in range(world)] if deal == "strided" else
                     list(batch.chunk(world)))
            losses, positives = [], []
            for rows in parts:
                z = F.normalize(tower(features[rows]), dim=-1)
                logits = z @ z.T / 0.1
                eye = torch.eye(len(rows), dtype=torch.bool)
                same = (groups[rows][:, None] == groups[rows][None, :]) & ~eye
                positives.append(float(same.sum(1).float().mean()))
                log_prob = logits.masked_fill(eye, -1e9).log_softmax(dim=1)
                per_anchor = -(log_prob * same).sum(1) / same.sum(1)  # SupCon: 0/0 = NaN
                has = same.any(1)
                losses.append(per_anchor[has].mean() if loss_form == "supcon" or has.any()
                              else per_anchor.new_zeros(()) * z.sum())
            loss = torch.stack(losses).mean()
            optimiser.zero_grad()
            if torch.isfinite(loss):
                loss.backward()
                optimiser.step()
            step += 1
            row = {"step": step, "loss": loss.item(), "world_size": float(world)}
            if log_positives:
                row["positives_per_row"] = float(np.mean(positives))
            logged.append(row)
    return {"metrics": write_log(w.runs / name, logged, fmt), "captions": captions}


def user_flips(w: Workshop, name: str, *, p: float, seed: int = 0, fmt: str = "csv") -> dict:
    """An attribute flow whose augmentation flips one attribute with probability ``p``; logs
    loss and flip rate, and records the last epoch's source and target attributes."""
    embeddings, attributes = w.attributes(seed)
    z = F.normalize(torch.from_numpy(np.load(embeddings)), dim=-1)
    table = pq.read_table(attributes)
    source = np.stack([np.asarray(table.column(f"attr{j}")) for j in range(3)], 1)
    combo = torch.from_numpy(source @ (1 << np.arange(3)))
    bank = F.normalize(torch.zeros(8, 32).index_add_(0, combo, z), dim=-1)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    field = torch.nn.Sequential(torch.nn.Linear(35, 64), torch.nn.GELU(),
                                torch.nn.Linear(64, 32))
    optimiser = torch.optim.AdamW(field.parameters(), lr=3e-3)
    logged = []
    for epoch in range(10):
        flip = rng.random(len(source)) < p
        column = rng.integers(0, 3, len(source))
        target = source.copy()
        target[np.flatnonzero(flip), column[flip]] ^= 1
        a = torch.from_numpy(target.astype(np.float32))
        goal = torch.from_numpy(target @ (1 << np.arange(3)))
        for rows in torch.randperm(len(source)).split(64):
            moved = F.normalize(z[rows] + field(torch.cat([z[rows], a[rows]], 1)), dim=-1)
            loss = F.cross_entropy(moved @ bank.T / 0.1, goal[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        logged.append({"step": epoch, "loss": loss.item(), "flip_rate": float(flip.mean())})
    flips = w.runs / f"{name}_flips.npz"
    np.savez(flips, source_attributes=source.astype(np.int8),
             target_attributes=target.astype(np.int8))
    return {"metrics": write_log(w.runs / name, logged, fmt), "attributes": attributes,
            "flips": flips}


def user_regulariser(w: Workshop, name: str, *, clamped: bool, weight: float, seed: int = 0,
                     fmt: str = "tensorboard") -> dict:
    """An autoencoder with K codes per input and a diversity term between them (the mean
    cosine, clamped at 0 or not); logs loss, reconstruction and diversity."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 24, generator=generator)
    torch.manual_seed(seed)
    encoder, decoder = torch.nn.Linear(24, 4 * 8), torch.nn.Linear(4 * 8, 24)
    optimiser = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)
    logged = []
    for step in range(60):
        rows = torch.randint(0, 512, (64,), generator=generator)
        codes = encoder(x[rows]).reshape(64, 4, 8)
        unit = F.normalize(codes, dim=-1)
        cos = (unit @ unit.transpose(1, 2))[:, ~torch.eye(4, dtype=torch.bool)]
        diversity = (cos.clamp(min=0) if clamped else cos).mean()
        reconstruction = F.mse_loss(decoder(codes.reshape(64, -1)), x[rows])
        loss = reconstruction + weight * diversity
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        logged.append({"step": step, "loss": float(loss),
                       "loss/reconstruction": float(reconstruction),
                       "loss/diversity": float(diversity)})
    return {"metrics": write_log(w.runs / name, logged, fmt)}


def user_decoder_inputs(w: Workshop, name: str, *, seed: int = 0) -> dict:
    """A next-vector model's held-out outputs, L2-normalised by the user's head, beside the raw
    targets a decoder was trained on."""
    run = lvm(w, f"{name}_lvm", seed=seed)["run_dir"]
    with np.load(run / "projection.npz") as arrays:
        pred, target = arrays["pred"], arrays["target"]
    path = w.runs / f"{name}.npz"
    np.savez(path, pred=pred / np.linalg.norm(pred, axis=1, keepdims=True), target=target)
    return {"embeddings": path}


# the cases ------------------------------------------------------------------------------------
@dataclass
class Case:
    """One run of the zoo: its true cause (or HEALTHY), the recipe, and how it is made."""

    name: str
    cause: str
    recipe: str
    make: Callable[[Workshop, str], dict]
    small: bool = False
    note: str = ""


@dataclass
class Outcome:
    case: Case
    top: str
    confidence: float
    codes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def right(self) -> bool:
        return self.top == self.case.cause


def _seq(w: Workshop, key: str, **arrays) -> Path:
    return w.sequence_variant(key, **arrays)


def _short_docs(w: Workshop, size: int) -> Path:
    d = w.dense()
    docs = d["doc_ids"] * 1000 + (d["target_positions"] - d["target_positions"].min()) // size
    return _seq(w, f"short{size}", doc_ids=docs)


def _shuffled(w: Workshop, share: float, seed: int) -> Path:
    d = w.dense()
    rng = np.random.default_rng(seed)
    target = d["target_vectors"].copy()
    moved = np.flatnonzero(rng.random(len(target)) < share)
    target[moved] = target[rng.permutation(moved)]
    return _seq(w, f"shuffled{share}_{seed}", target_vectors=target)


def _unit(w: Workshop) -> Path:
    d = w.dense()
    norm = np.linalg.norm
    return _seq(w, "unit", context_sequences=d["context_sequences"]
                / norm(d["context_sequences"], axis=-1, keepdims=True),
                target_vectors=d["target_vectors"] / norm(d["target_vectors"], axis=-1,
                                                          keepdims=True))


FORCE = ("--force",)


def cases() -> list[Case]:
    """Every case of the full zoo; ``small=True`` marks the one-per-cause subset."""
    c = Case
    return [
        # healthy runs of every recipe and of the other framework
        c("contrastive_s0", HEALTHY, "contrastive", lambda w, n: contrastive(w, n, seed=0),
          small=True),
        c("contrastive_s1", HEALTHY, "contrastive", lambda w, n: contrastive(w, n, seed=1)),
        c("contrastive_s2_splits", HEALTHY, "contrastive", lambda w, n: contrastive(
            w, n, seed=2, captions=w.caption_variant("by_image", lambda t: splits(
                t, per_caption=0.0, seed=2)))),
        c("lvm_s0", HEALTHY, "lvm", lambda w, n: lvm(w, n, seed=0), small=True),
        c("lvm_s1_transformer", HEALTHY, "lvm", lambda w, n: lvm(
            w, n, seed=1, extra=("--arch", "transformer", "--heads", 4))),
        c("flow_s0", HEALTHY, "flow", lambda w, n: flow(w, n, seed=0), small=True),
        c("flow_s1", HEALTHY, "flow", lambda w, n: flow(w, n, seed=1)),
        c("slots_s0", HEALTHY, "slots", lambda w, n: slots(
            w, n, seed=0, extra=("--diversity-weight", 20)), small=True),
        c("slots_s1", HEALTHY, "slots", lambda w, n: slots(
            w, n, seed=1, extra=("--diversity-weight", 10))),
        c("user_regression", HEALTHY, "user", lambda w, n: user_regression(
            w, n, train_rows=2048, noise=0.1, lr=0.02, epochs=12), small=True),
        c("user_ranks_contiguous", HEALTHY, "user", lambda w, n: user_ranks(
            w, n, world=2, deal="contiguous")),
        c("user_flips_always", HEALTHY, "user", lambda w, n: user_flips(w, n, p=1.0)),
        c("user_clamped", HEALTHY, "user", lambda w, n: user_regulariser(
            w, n, clamped=True, weight=1.0)),
        # the batches
        c("row_ids", "NO_POSITIVES_IN_BATCH", "contrastive", lambda w, n: contrastive(
            w, n, captions=w.caption_variant("row_ids", row_ids), extra=FORCE), small=True),
        c("row_ids_text_s1", "NO_POSITIVES_IN_BATCH", "contrastive", lambda w, n: contrastive(
            w, n, seed=1, captions=w.caption_variant("row_ids_text", lambda t: row_ids(
                t, text=True)), extra=FORCE)),
        c("row_ids_image_features", "NO_POSITIVES_IN_BATCH", "contrastive",
          lambda w, n: contrastive(w, n, seed=2, captions=w.caption_variant("row_ids", row_ids),
                                   extra=(*FORCE, "--image-features", w.image_features(2)))),
        c("ranks_strided_2", "POSITIVES_SPLIT_ACROSS_RANKS", "user", lambda w, n: user_ranks(
            w, n, world=2, deal="strided"), small=True),
        c("ranks_strided_4_csv", "POSITIVES_SPLIT_ACROSS_RANKS", "user",
          lambda w, n: user_ranks(w, n, world=4, deal="strided", seed=1, fmt="csv")),
        c("ranks_strided_supcon", "POSITIVES_SPLIT_ACROSS_RANKS", "user",
          lambda w, n: user_ranks(w, n, world=2, deal="strided", loss_form="supcon",
                                  log_positives=False, seed=2)),
        # the sequence file
        c("doc_ids_row_counter", "NO_DOC_IDS", "lvm", lambda w, n: lvm(
            w, n, sequences=_seq(w, "rowdoc", doc_ids=np.arange(len(w.dense()["doc_ids"])))),
          small=True),
        c("doc_ids_row_counter_s1", "NO_DOC_IDS", "lvm", lambda w, n: lvm(
            w, n, seed=1, sequences=_seq(w, "rowdoc", doc_ids=np.arange(
                len(w.dense()["doc_ids"]))))),
        c("doc_ids_missing", "NO_DOC_IDS", "lvm", lambda w, n: {
            "sequences": _seq(w, "nodoc", doc_ids=None, target_positions=None)},
          note="refused by the trainer (MISSING_DOC_IDS cannot be forced): the file alone"),
        c("docs_of_2", "NO_HARD_NEGATIVES", "lvm", lambda w, n: lvm(
            w, n, sequences=_short_docs(w, 2)), small=True),
        c("docs_of_3_window_2", "NO_HARD_NEGATIVES", "lvm", lambda w, n: lvm(
            w, n, seed=1, sequences=_short_docs(w, 3), extra=("--exclude-window", 2))),
        c("docs_of_4_window_2", "NO_HARD_NEGATIVES", "lvm", lambda w, n: lvm(
            w, n, seed=2, sequences=_short_docs(w, 4), extra=("--exclude-window", 2))),
        # the outputs
        c("targets_shuffled", "MEAN_VECTOR_COLLAPSE", "lvm", lambda w, n: lvm(
            w, n, sequences=_shuffled(w, 1.0, 0), extra=FORCE), small=True),
        c("targets_shuffled_mse", "MEAN_VECTOR_COLLAPSE", "lvm", lambda w, n: lvm(
            w, n, seed=1, sequences=_shuffled(w, 1.0, 1), extra=(
                *FORCE, "--cosine-weight", 0, "--mse-weight", 1, "--infonce-weight", 0))),
        c("targets_70pct_shuffled", "MEAN_VECTOR_COLLAPSE", "lvm", lambda w, n: lvm(
            w, n, seed=2, sequences=_shuffled(w, 0.7, 2), extra=FORCE)),
        c("unit_norm_vectors", "NORMALISED_DECODER_INPUT", "lvm", lambda w, n: lvm(
            w, n, sequences=_unit(w)), small=True),
        c("unit_norm_vectors_s1", "NORMALISED_DECODER_INPUT", "lvm", lambda w, n: lvm(
            w, n, seed=1, sequences=_unit(w))),
        c("user_normalised_head", "NORMALISED_DECODER_INPUT", "user",
          lambda w, n: user_decoder_inputs(w, n)),
        c("features_rank_1", "DIMENSIONAL_COLLAPSE", "contrastive", lambda w, n: contrastive(
            w, n, rank=1), small=True),
        c("features_rank_2", "DIMENSIONAL_COLLAPSE", "contrastive", lambda w, n: contrastive(
            w, n, seed=1, rank=2)),
        c("features_rank_3", "DIMENSIONAL_COLLAPSE", "contrastive", lambda w, n: contrastive(
            w, n, seed=2, rank=3)),
        # the loss
        c("slots_unclamped_20", "NEGATIVE_LOSS_TERM", "slots", lambda w, n: slots(
            w, n, extra=("--diversity", "unclamped", "--diversity-weight", 20), expect=(1,)),
          small=True),
        c("slots_unclamped_50_s1", "NEGATIVE_LOSS_TERM", "slots", lambda w, n: slots(
            w, n, seed=1, extra=("--diversity", "unclamped", "--diversity-weight", 50),
            expect=(1,))),
        c("user_unclamped", "NEGATIVE_LOSS_TERM", "user", lambda w, n: user_regulariser(
            w, n, clamped=False, weight=1.0)),
        c("slots_no_diversity", "SLOTS_IDENTICAL", "slots", lambda w, n: slots(w, n),
          small=True),
        c("slots_spectral_init", "SLOTS_IDENTICAL", "slots", lambda w, n: slots(
            w, n, seed=1, extra=("--init", "spectral"))),
        c("slots_kmeans_init", "SLOTS_IDENTICAL", "slots", lambda w, n: slots(
            w, n, seed=2, extra=("--init", "kmeans"))),
        # the flow
        c("flips_half", "PARTIAL_AUGMENTATION", "user", lambda w, n: user_flips(w, n, p=0.5),
          small=True),
        c("flips_80pct_s1", "PARTIAL_AUGMENTATION", "user", lambda w, n: user_flips(
            w, n, p=0.8, seed=1, fmt="jsonl")),
        c("flips_95pct_s2_tensorboard", "PARTIAL_AUGMENTATION", "user", lambda w, n: user_flips(
            w, n, p=0.95, seed=2, fmt="tensorboard")),
        c("batch_prototypes", "PROTOTYPES_FROM_OUTPUTS", "flow", lambda w, n: flow(
            w, n, extra=("--prototypes", "batch")), small=True),
        c("batch_prototypes_s1", "PROTOTYPES_FROM_OUTPUTS", "flow", lambda w, n: flow(
            w, n, seed=1, extra=("--prototypes", "batch"))),
        c("batch_prototypes_per_group_4", "PROTOTYPES_FROM_OUTPUTS", "flow", lambda w, n: flow(
            w, n, seed=2, extra=("--prototypes", "batch", "--per-group", 4, "--batch-size",
                                 32))),
        # the splits
        c("captions_split_per_caption", "SPLIT_LEAKAGE", "contrastive", lambda w, n: contrastive(
            w, n, captions=w.caption_variant("leak_all", lambda t: splits(
                t, per_caption=1.0)), extra=FORCE), small=True),
        c("captions_split_20pct_per_caption", "SPLIT_LEAKAGE", "contrastive",
          lambda w, n: contrastive(w, n, seed=1, captions=w.caption_variant(
              "leak_20", lambda t: splits(t, per_caption=0.2, seed=1)), extra=FORCE)),
        c("identities_split_per_row", "SPLIT_LEAKAGE", "flow", lambda w, n: flow(
            w, n, leak=1.0)),
        c("identities_30pct_per_row_s1", "SPLIT_LEAKAGE", "flow", lambda w, n: flow(
            w, n, seed=1, leak=0.3)),
        # the curves
        c("overfit_256_rows", "OVERFITTING", "user", lambda w, n: user_regression(
            w, n, train_rows=256, noise=0.3, frequency=1.0, lr=0.01, epochs=60), small=True),
        c("overfit_512_rows_csv", "OVERFITTING", "user", lambda w, n: user_regression(
            w, n, train_rows=512, noise=0.5, frequency=1.0, lr=0.01, epochs=40, fmt="csv",
            names=("trn_loss", "valid_loss_mean"), seed=1)),
        c("overfit_128_rows_tensorboard", "OVERFITTING", "user", lambda w, n: user_regression(
            w, n, train_rows=128, noise=0.2, frequency=0.7, lr=0.01, epochs=80,
            fmt="tensorboard", seed=2)),
        c("lr_30", "DIVERGENCE", "lvm", lambda w, n: lvm(w, n, extra=(
            "--lr", 30, "--grad-clip", 0, "--mse-weight", 1, "--log-every", 2)), small=True),
        c("lr_300_s1", "DIVERGENCE", "lvm", lambda w, n: lvm(w, n, seed=1, extra=(
            "--lr", 300, "--grad-clip", 0, "--mse-weight", 1, "--warmup-steps", 0))),
        c("user_sgd_lr_5", "DIVERGENCE", "user", lambda w, n: user_regression(
            w, n, train_rows=512, noise=0.1, lr=5.0, epochs=3, every_step=True, fmt="csv")),
    ]


# running and printing -----------------------------------------------------------------------
def run_zoo(root: Path, *, small: bool = False, only: list[str] | None = None,
            progress: Callable[[str], None] | None = None) -> list[Outcome]:
    """Make every case (the small subset with ``small``) under ``root`` and diagnose it."""
    workshop = Workshop(root)
    outcomes = []
    for case in cases():
        if (small and not case.small) or (only and case.name not in only):
            continue
        started = time.perf_counter()
        inputs = case.make(workshop, case.name)
        report = diagnose_run(**inputs)
        causes = report.stats["causes"]
        top = causes[0]["code"] if causes else HEALTHY
        outcome = Outcome(case, top, causes[0]["confidence"] if causes else 0.0,
                          [c["code"] for c in causes], time.perf_counter() - started)
        outcomes.append(outcome)
        if progress:
            progress(f"{'ok ' if outcome.right else 'BAD'} {case.name:34s} true "
                     f"{case.cause:28s} top {top} ({outcome.confidence:.2f}) "
                     f"{outcome.seconds:.1f}s")
    return outcomes


def confusion_matrix(outcomes: list[Outcome]) -> str:
    """Rows: the true cause; columns: the doctor's top-ranked cause, numbered as the rows
    (markdown)."""
    labels = [c.name for c in CAUSES] + [HEALTHY]
    used = [label for label in labels
            if any(o.case.cause == label or o.top == label for o in outcomes)]
    number = {label: str(i) for i, label in enumerate(used, 1)}
    lines = ["| # | true cause \\ top-ranked | " + " | ".join(number[x] for x in used)
             + " | runs |", "|---" * (len(used) + 3) + "|"]
    for truth in used:
        row = [o for o in outcomes if o.case.cause == truth]
        counts = [sum(o.top == label for o in row) for label in used]
        cells = [f"**{n}**" if label == truth and n else (str(n) if n else ".")
                 for label, n in zip(used, counts, strict=True)]
        lines.append(f"| {number[truth]} | `{truth}` | " + " | ".join(cells)
                     + f" | {len(row)} |")
    return "\n".join(lines)


def summary(outcomes: list[Outcome]) -> dict:
    broken = [o for o in outcomes if o.case.cause != HEALTHY]
    healthy = [o for o in outcomes if o.case.cause == HEALTHY]
    return {"runs": len(outcomes), "broken": len(broken), "healthy": len(healthy),
            "broken_right": sum(o.right for o in broken),
            "healthy_right": sum(o.right for o in healthy),
            "wrong": [{"case": o.case.name, "true": o.case.cause, "top": o.top,
                       "confidence": round(o.confidence, 3)} for o in outcomes if not o.right],
            "seconds": round(sum(o.seconds for o in outcomes), 1)}


def main_cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="one run per cause")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--only", nargs="*", help="case names to run")
    parser.add_argument("--json", type=Path, help="write the outcomes as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="collapse-zoo-") as tmp:
        root = args.out or Path(tmp)
        outcomes = run_zoo(root, small=args.small, only=args.only,
                           progress=lambda line: print(line, flush=True))
    result = summary(outcomes)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print()
    print(confusion_matrix(outcomes))
    print()
    print(f"broken runs with their true cause ranked first: {result['broken_right']} of "
          f"{result['broken']}; healthy runs with no cause: {result['healthy_right']} of "
          f"{result['healthy']}; {result['wall_seconds']} s on {platform.machine()} "
          f"({platform.processor() or 'cpu'}), torch {torch.__version__}, 1 thread")
    if args.json:
        args.json.write_text(json.dumps({**result, "cases": [
            {"case": o.case.name, "recipe": o.case.recipe, "true": o.case.cause, "top": o.top,
             "confidence": round(o.confidence, 3), "causes": o.codes,
             "seconds": round(o.seconds, 2)} for o in outcomes]}, indent=2) + "\n")
    return 0 if not result["wrong"] else 1


if __name__ == "__main__":
    sys.exit(main_cli())
