"""What every recipe's config shares: the run directory, the device, the length of the run, the
optimiser and schedule, precision, checkpoints, guards and monitors.

Each recipe has its own dataclass that extends ``TrainConfig`` with its data and model options;
the resolved config is written to ``RUN_DIR/config.json`` and read back by ``--resume``,
``uncollapse evaluate`` and ``uncollapse serve``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path

from uncollapse.atomic import atomic_path
from uncollapse.errors import InputError

PRECISIONS = ("bf16", "fp32")
DEVICES = ("auto", "cuda", "cpu")
ON_COLLAPSE = ("warn", "stop")
PROTOTYPES = ("bank", "batch")


@dataclass
class TrainConfig:
    """Options of the training engine (every recipe has them).

    Args:
        out: the run directory (config, metrics, checkpoints, evaluation).
        device: ``auto`` (CUDA when available), ``cuda`` or ``cpu``.
        steps: optimiser steps to run; ``epochs`` instead gives the length in epochs.
        epochs: length in epochs of the sampler's plan (instead of ``steps``).
        batch_size: rows per batch.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up from 0 to ``lr``; cosine decay to ``lr * min_lr_ratio`` after.
        min_lr_ratio: the learning rate at the end, as a share of ``lr``.
        grad_clip: clip the gradient norm to this (0 turns it off).
        precision: ``bf16`` (autocast on CUDA; CPU runs in fp32) or ``fp32``.
        compile: wrap the model in ``torch.compile``.
        seed: seed of the model's initialisation, the sampler's plans and every draw.
        resume: continue the run of the run directory from its latest readable checkpoint
            (without it, a directory that already holds a run is refused).
        log_every: write a line of ``metrics.jsonl`` (and check the loss guard) every N steps.
        checkpoint_every: write a checkpoint every N steps (and at the end).
        monitor_every: run the collapse monitor every N steps ...
        monitor_warmup: ... from this step on (before it the model is untrained).
        on_collapse: ``warn`` (log and go on) or ``stop`` (end the run with an error).
        force: start even when the pre-flight check of the inputs finds errors.
        tensorboard: also write TensorBoard event files to ``out/tensorboard``.
        quiet: no progress bar.
    """

    out: str = "run"
    device: str = "auto"
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    precision: str = "bf16"
    compile: bool = False
    seed: int = 0
    resume: bool = False
    log_every: int = 10
    checkpoint_every: int = 500
    monitor_every: int = 100
    monitor_warmup: int = 100
    on_collapse: str = "warn"
    force: bool = False
    tensorboard: bool = False
    quiet: bool = False

    recipe = ""

    def check(self) -> None:
        """Raise ValueError naming the first option out of range."""
        if self.steps is None and self.epochs is None:
            raise ValueError("give steps or epochs (the length of the run)")
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give steps or epochs, not both")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        for name in ("batch_size", "log_every", "checkpoint_every", "monitor_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "grad_clip", "warmup_steps", "monitor_warmup"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        for name, allowed in (("precision", PRECISIONS), ("device", DEVICES),
                              ("on_collapse", ON_COLLAPSE)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        """The config of ``values``, ignoring keys this class does not have (older runs)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"recipe": getattr(self, "recipe", None), **self.to_dict()},
                                      indent=2) + "\n")


def read_run_config(run_dir: str | Path) -> dict:
    """The ``config.json`` of a run directory, as a dict (``recipe`` says which recipe)."""
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(path, f"no such file; is {run_dir} a run directory written by "
                         "`uncollapse train`?") from exc
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})", line=exc.lineno) from exc


@dataclass
class ContrastiveConfig(TrainConfig):
    """``TrainConfig`` plus the contrastive recipe's data and model options.

    Args:
        captions: the caption table (Parquet).
        text_features: ``.npy`` [rows, D_text] aligned to the table's rows.
        image_features: optional ``.npy`` [groups, D_image] (row k = match_id k) or ``.npz``
            with ``features`` and ``image_ids``.
        per_group: captions of each image in a batch (positives of each anchor, itself included).
        eval_split: the table's split held out for evaluation; when the table has no such
            split, ``eval_fraction`` of the images are held out by a seeded hash.
        eval_fraction: share of images held out when ``eval_split`` is not in the table.
        hidden: width of each tower's hidden layer.
        dim: dimension of the shared embedding space.
        temperature: initial temperature of the InfoNCE logits.
    """

    captions: str = ""
    text_features: str = ""
    image_features: str | None = None
    per_group: int = 2
    eval_split: str = "test"
    eval_fraction: float = 0.2
    hidden: int = 512
    dim: int = 128
    temperature: float = 0.07
    recipe: str = "contrastive"

    def check(self) -> None:
        super().check()
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.per_group < 1:
            raise ValueError(f"per_group must be at least 1, got {self.per_group}")


@dataclass
class LVMConfig(TrainConfig):
    """``TrainConfig`` plus the LVM recipe's data, model and loss options.

    Args:
        sequences: the sequence file (NPZ, dense or compact).
        arch: ``gru``, ``lstm``, ``transformer`` or ``ssm``.
        hidden, layers, heads: backbone width, depth and (transformer) attention heads.
        dropout: dropout rate inside the backbone.
        residual: skip from the context added to the head's output: ``mean``, ``last``,
            ``learned`` (softmax weights over the context positions, starting equal), ``none``.
        max_per_doc: samples of one document in a batch (``DiverseBatchSampler``).
        exclude_window: hard negatives are not drawn within +-w positions of the target.
        temperature: of the InfoNCE logits.
        infonce_weight, moment_weight, variance_weight, mse_weight, cosine_weight: loss
            weights (cosine: mean 1 - cos(y_dec, target)). Every term is computed, logged and
            guarded whatever its weight. The defaults are the setting that beat every baseline
            on mean cosine on real sentence embeddings (BENCHMARKS.md); raise moment_weight
            when a decoder needs y_dec on the targets' per-dimension scale.
        variance_ratio: the variance floor per dimension, as a share of the targets' std.
        eval_fraction: share of documents held out for evaluation (seeded).
    """

    sequences: str = ""
    batch_size: int = 128
    arch: str = "gru"
    hidden: int = 512
    layers: int = 2
    heads: int = 8
    dropout: float = 0.1
    residual: str = "learned"
    max_per_doc: int = 4
    exclude_window: int = 1
    temperature: float = 0.05
    infonce_weight: float = 0.1
    moment_weight: float = 0.0
    variance_weight: float = 0.0
    mse_weight: float = 0.0
    cosine_weight: float = 1.0
    variance_ratio: float = 0.5
    eval_fraction: float = 0.15
    recipe: str = "lvm"

    def check(self) -> None:
        super().check()
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.arch == "transformer" and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads}) "
                             "for the transformer")
        for name in ("infonce_weight", "moment_weight", "variance_weight", "mse_weight",
                     "cosine_weight", "temperature", "exclude_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")



@dataclass
class FlowConfig(TrainConfig):
    """``TrainConfig`` plus the attribute-flow recipe's data, model and loss options.

    Args:
        embeddings: ``.npy`` [rows, D] of frozen embeddings, row i of the attribute table.
        attributes: the attribute table (Parquet, docs/data-contracts.md).
        attributes_to_flip: comma-separated attribute names to flip and condition on
            (default: every attribute column, at most 8 so that each combination has rows).
        min_flips, max_flips: every sample flips between these many attributes (1..2).
        per_group: samples of each target combination in a batch.
        flow_steps: Euler steps from z to z'; each is z <- normalize(z + alpha/flow_steps * v).
        alpha: total step length of the flow.
        hidden: width of the vector field's MLP.
        temperature: of the prototype InfoNCE logits.
        identity_weight: weight of mean |z' - z|^2.
        divergence_weight: weight of the squared Hutchinson divergence estimate of v.
        curl_weight: weight of the squared antisymmetric-Jacobian estimate of v.
        prototypes: ``bank`` (means of the real embeddings of every combination, no
            gradient; the fix) or ``batch`` (means of the flowed batch, with gradient: the
            broken variant, kept to show its collapse).
        eval_split: the table's split held out for evaluation (else ``eval_fraction`` of the
            identities, or of the rows without identities, by a seeded draw).
        eval_fraction: share held out when ``eval_split`` is not in the table.
    """

    embeddings: str = ""
    attributes: str = ""
    attributes_to_flip: str = ""
    min_flips: int = 1
    max_flips: int = 2
    per_group: int = 8
    flow_steps: int = 2
    alpha: float = 1.0
    hidden: int = 512
    temperature: float = 0.1
    identity_weight: float = 0.1
    divergence_weight: float = 0.01
    curl_weight: float = 0.01
    prototypes: str = "bank"
    eval_split: str = "test"
    eval_fraction: float = 0.2
    lr: float = 1e-3
    recipe: str = "flow"

    def check(self) -> None:
        super().check()
        if not 1 <= self.min_flips <= self.max_flips:
            raise ValueError(f"need 1 <= min_flips ({self.min_flips}) <= max_flips "
                             f"({self.max_flips}): every sample must flip")
        for name in ("per_group", "flow_steps", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("alpha", "temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("identity_weight", "divergence_weight", "curl_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.prototypes not in PROTOTYPES:
            raise ValueError(f"prototypes must be one of {PROTOTYPES}, got {self.prototypes!r}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.batch_size % self.per_group:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of per_group "
                             f"({self.per_group})")



@dataclass
class SlotsConfig(TrainConfig):
    """``TrainConfig`` plus the slot-attention recipe's data, model and loss options.

    Args:
        scenes: the scene file (NPZ from ``uncollapse build scenes``).
        slots: slots per image (at least the most objects a scene holds plus the background).
        slot_dim: width of the slots and of the encoder's output features.
        iterations: rounds of slot attention.
        channels: channels of the encoder's and decoder's convolutions.
        init: initial slots: ``learned`` (a learned Gaussian), ``spectral`` (eigenvectors of the
            features' normalised-Laplacian affinity graph) or ``kmeans`` (centroids of the
            features).
        diversity: ``clamped`` (mean of max(0, cos) between slots, in [0, 1]) or
            ``unclamped`` (plain mean cosine, which can go negative: the loss guard stops it).
        diversity_weight: weight of the diversity term (0: logged and guarded, not trained on).
        diversity_warmup: epochs over which the diversity weight ramps up from 0.
        eval_fraction: share of the scenes held out for evaluation (seeded).
    """

    scenes: str = ""
    batch_size: int = 64
    lr: float = 4e-4
    warmup_steps: int = 500
    weight_decay: float = 0.0
    slots: int = 5
    slot_dim: int = 64
    iterations: int = 3
    channels: int = 64
    init: str = "learned"
    diversity: str = "clamped"
    diversity_weight: float = 0.0
    diversity_warmup: float = 1.0
    eval_fraction: float = 0.1
    recipe: str = "slots"

    def check(self) -> None:
        super().check()
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        for name in ("slots", "slot_dim", "iterations", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("diversity_weight", "diversity_warmup"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for name, allowed in (("init", ("learned", "spectral", "kmeans")),
                              ("diversity", ("clamped", "unclamped"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")


RECIPE_CONFIGS = {"contrastive": ContrastiveConfig, "lvm": LVMConfig, "flow": FlowConfig,
                  "slots": SlotsConfig}
