"""The slot-attention recipe: an object-centric autoencoder on a scene file.

Data: the scene file's images stay on the device as uint8 and are converted per batch to
floats in [-1, 1]; ``eval_fraction`` of the scenes (a seeded draw) are held out. Scenes have no
groups, so batches come from ``GroupedBatchSampler`` over the scenes' own ids with
``per_group=1``: the engine's epoch plan and exact resume work as for the other recipes.

Loss (every term >= 0, declared so to the loss guard): reconstruction MSE, plus the diversity
term ``diversity_weight * mean_{i != j} max(0, cos(slot_i, slot_j))`` over each image's final
slots. Clamped at 0 it lies in [0, 1] and never rewards slots for pointing away from each other
(a plain mean cosine, ``diversity="unclamped"``, can go to -1/(K-1); the guard stops a run where
it does). The weight ramps linearly from 0 over the first ``diversity_warmup`` epochs.

Logged every logged step beside the loss: ``init_slot_cosine`` and ``slot_cosine``, the mean
pairwise cosine of the initial and final slots (diagnostics in [-1, 1], not added to the loss).
Spectral or k-means initial slots with a mean cosine above ``NEAR_IDENTICAL_COSINE`` start
every slot at the same place: the monitor logs a warning (logger ``uncollapse``) and flags
``init_slots_near_identical``, and the evaluation lists the finding ``SLOT_INIT_NEAR_IDENTICAL``.

Evaluation on the held-out scenes: foreground ARI (overall and per object count), slot
similarity, initial-slot similarity, reconstruction MSE; arrays for the report: the final slots
(``pred``, for the projection) and a few images with their reconstructions and per-slot masks.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uncollapse.data.scenes.contract import IMAGES, MASKS, NUM_OBJECTS, load_scenes
from uncollapse.families import recipe
from uncollapse.report import Code, Report
from uncollapse.samplers.grouped import GroupedBatchSampler
from uncollapse.trainers.recipe import Recipe, StepOutput
from uncollapse.trainers.slots.config import SlotsConfig
from uncollapse.trainers.slots.model import SlotAutoencoder, SlotModelConfig
from uncollapse.validators.collapse.metrics import ari_per_image
from uncollapse.validators.scenes import validate_scenes

__all__ = ["RECIPE", "SlotsRecipe", "diversity_loss", "mean_pairwise_cosine", "pairwise_cosine"]

logger = logging.getLogger("uncollapse")
BLOCK = 128
NEAR_IDENTICAL_COSINE = 0.5

SLOT_INIT_NEAR_IDENTICAL = Code(
    "SLOT_INIT_NEAR_IDENTICAL", "warning",
    f"Spectral or k-means initial slots are near-identical (mean pairwise cosine above "
    f"{NEAR_IDENTICAL_COSINE}): every slot starts at the same place and training has to "
    "separate them (listed in a slots run's eval.json).",
    "Use --init learned, or check the encoder features the initial slots are clustered from.")
REPORT_IMAGES = 8


def pairwise_cosine(slots: torch.Tensor) -> torch.Tensor:
    """[B, K, D] -> [B, K*(K-1)] cosines of every ordered pair of distinct slots of an image."""
    unit = F.normalize(slots.float(), dim=-1)
    cos = unit @ unit.transpose(1, 2)
    count = slots.shape[1]
    off = ~torch.eye(count, dtype=torch.bool, device=slots.device)
    return cos[:, off]


def mean_pairwise_cosine(slots: torch.Tensor) -> torch.Tensor:
    """The mean cosine between distinct slots of an image, over the batch (in [-1, 1])."""
    if slots.shape[1] < 2:
        return slots.new_zeros((), dtype=torch.float32)
    return pairwise_cosine(slots).mean()


def diversity_loss(slots: torch.Tensor, *, clamped: bool = True) -> torch.Tensor:
    """Mean over pairs of distinct slots of ``max(0, cos)`` (in [0, 1]); ``clamped=False`` gives
    the plain mean cosine, which goes negative when slots point away from each other."""
    if slots.shape[1] < 2:
        return slots.new_zeros((), dtype=torch.float32)
    cos = pairwise_cosine(slots)
    return (cos.clamp(min=0) if clamped else cos).mean()


class SlotsRecipe(Recipe):
    """A slot-attention autoencoder on a scene file (see the module)."""

    config_class = SlotsConfig
    name = "slots"
    lower_bounds = dict(recipe("slots").lower_bounds)  # declared in the recipes table
    unforceable = frozenset({"SCENE_SCHEMA"})  # no arrays of the right shape, nothing to train

    def preflight(self) -> Report:
        report = validate_scenes(self.config.scenes)
        report.stats["checks"] = "validate scenes"
        return report

    # data -------------------------------------------------------------------------------------
    def setup(self) -> None:
        config, device = self.config, self.device
        arrays = load_scenes(config.scenes)
        images, masks = arrays[IMAGES], arrays[MASKS]
        self.size = int(images.shape[1])
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"{config.scenes}: images are {images.shape[1]}x{images.shape[2]}; "
                             "the recipe needs square images")
        n = len(images)
        rng = np.random.default_rng(config.seed)
        is_eval = rng.random(n) < config.eval_fraction
        if not is_eval.any() and n > 1 and config.eval_fraction > 0:
            is_eval[-1] = True
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.masks = torch.from_numpy(np.ascontiguousarray(masks)).to(device)
        self.num_objects = torch.from_numpy(arrays[NUM_OBJECTS].astype(np.int64)).to(device)
        self.train_scenes = torch.from_numpy(np.flatnonzero(~is_eval)).to(device)
        self.eval_scenes = torch.from_numpy(np.flatnonzero(is_eval)).to(device)
        train_ids = np.flatnonzero(~is_eval)
        self.sampler = (GroupedBatchSampler(train_ids, config.batch_size, per_group=1,
                                            seed=config.seed, drop_last=True)
                        if len(train_ids) else None)
        self.diversity_scale = 1.0

    def on_epoch(self, epoch: int) -> None:
        warmup = self.config.diversity_warmup
        self.diversity_scale = min(1.0, epoch / warmup) if warmup > 0 else 1.0

    def pixels(self, scenes: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] floats in [-1, 1] of the scenes' uint8 images."""
        return self.images[scenes].permute(0, 3, 1, 2).float() / 127.5 - 1.0

    # model and loss ---------------------------------------------------------------------------
    def model_config(self) -> dict:
        c = self.config
        return SlotModelConfig(size=self.size, slots=c.slots, slot_dim=c.slot_dim,
                               iterations=c.iterations, channels=c.channels,
                               init=c.init, implicit=c.implicit).to_dict()

    def build_model(self) -> nn.Module:
        return SlotAutoencoder(SlotModelConfig(**self.model_config()))

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"images": self.pixels(self.train_scenes[rows])}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        c = self.config
        images = batch["images"]
        out = model(images)
        slots = out["slots"].float()
        terms = {"reconstruction": F.mse_loss(out["recon"], images),
                 "diversity": diversity_loss(slots, clamped=c.diversity == "clamped")}
        weight = c.diversity_weight * self.diversity_scale
        loss = terms["reconstruction"] + weight * terms["diversity"]
        with torch.no_grad():
            terms["init_slot_cosine"] = mean_pairwise_cosine(out["initial_slots"])
            terms["slot_cosine"] = mean_pairwise_cosine(slots)
        probe = {"outputs": slots.detach().reshape(-1, slots.shape[-1]),
                 "initial_slots": out["initial_slots"].detach(),
                 "diversity_weight": torch.tensor(weight)}
        return StepOutput(loss, terms, probe)

    def monitor(self, probe: dict) -> dict:
        init_cosine = float(mean_pairwise_cosine(probe["initial_slots"]))
        values = {"init_slot_cosine": init_cosine,
                  "slot_cosine": float(mean_pairwise_cosine(
                      probe["outputs"].reshape(-1, self.config.slots,
                                               probe["outputs"].shape[-1]))),
                  "diversity_weight": float(probe["diversity_weight"])}
        if self.near_identical(init_cosine):
            values["init_slots_near_identical"] = 1.0
            logger.warning(init_finding_message(self.config.init, init_cosine))
        return values

    def near_identical(self, init_cosine: float) -> bool:
        return self.config.init in ("spectral", "kmeans") and init_cosine > NEAR_IDENTICAL_COSINE

    # evaluation -------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module) -> tuple[dict, dict]:
        scenes = self.eval_scenes if len(self.eval_scenes) else self.train_scenes
        ari, errors, slot_cos, init_cos, slots = [], [], [], [], []
        shown: dict[str, torch.Tensor] = {}
        for start in range(0, len(scenes), BLOCK):
            block = scenes[start:start + BLOCK]
            images = self.pixels(block)
            out = model(images)
            pred = out["masks"].argmax(dim=1)
            ari.append(ari_per_image(self.masks[block], pred, foreground_only=True))
            errors.append((out["recon"].float() - images).pow(2).mean(dim=(1, 2, 3)))
            slot_cos.append(pairwise_cosine(out["slots"]).mean(dim=1))
            init_cos.append(pairwise_cosine(out["initial_slots"]).mean(dim=1))
            slots.append(out["slots"].float())
            if not shown:
                keep = slice(0, REPORT_IMAGES)
                shown = {"images": self.images[block[keep]],
                         "reconstructions": to_uint8(out["recon"][keep]),
                         "masks": out["masks"][keep].float(),
                         "true_masks": self.masks[block[keep]]}
        per_image = np.concatenate(ari)
        counts = self.num_objects[scenes].cpu().numpy()
        init_cosine = float(torch.cat(init_cos).mean())
        metrics: dict = {
            "eval_scenes": int(len(scenes)),
            "fg_ari": nanmean(per_image),
            "fg_ari_by_objects": {str(k): nanmean(per_image[counts == k])
                                  for k in np.unique(counts)},
            "slot_cosine": float(torch.cat(slot_cos).mean()),
            "init_slot_cosine": init_cosine,
            "reconstruction_mse": float(torch.cat(errors).mean()),
            "init": self.config.init,
            "findings": [],
        }
        if self.near_identical(init_cosine):
            metrics["findings"].append({"code": SLOT_INIT_NEAR_IDENTICAL.name,
                                        "message": init_finding_message(self.config.init,
                                                                        init_cosine)})
        arrays = {"pred": torch.cat(slots).reshape(-1, self.config.slot_dim).cpu().numpy(),
                  **{k: v.cpu().numpy() for k, v in shown.items()}}
        return metrics, arrays


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8 (the scene file's layout)."""
    pixels = ((images.float() + 1.0) * 127.5).round().clamp(0, 255)
    return pixels.to(torch.uint8).permute(0, 2, 3, 1)


def nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def init_finding_message(init: str, cosine: float) -> str:
    return (f"{init} initial slots are near-identical (mean pairwise cosine {cosine:.3f} > "
            f"{NEAR_IDENTICAL_COSINE}): every slot starts at the same place and has to be "
            "separated by training; use init 'learned' or check the encoder features")


RECIPE = SlotsRecipe
