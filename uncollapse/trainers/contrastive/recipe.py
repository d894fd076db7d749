"""The contrastive recipe: dual-tower training on precomputed features of a caption table.

Inputs: the caption table (Parquet, read with pyarrow), text features aligned to its rows, and
optionally image features aligned to its images: a ``.npy`` whose row ``k`` is ``match_id`` k
(the table numbers groups in sorted ``image_id`` order), or an ``.npz`` with ``features`` and
``image_ids`` (aligned by ``image_id``). Without image features it trains caption-to-caption:
the captions of one image are each other's positives.

Batches come from ``GroupedBatchSampler``: ``per_group`` captions of each of
``batch_size // per_group`` images. Loss: symmetric multi-positive InfoNCE with a learnable
temperature (clamped to at most 100 as a logit scale). Monitored: the positive-negative
similarity gap, effective rank, alignment and uniformity. Evaluation on the held-out split:
recall@1/5/10 in both directions, all captions of an image counted as positives.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uncollapse.data.captions.contract import IMAGE_ID, MATCH_ID, SPLIT
from uncollapse.data.captions.table import read_caption_arrays, read_image_features
from uncollapse.errors import InputError
from uncollapse.families import recipe
from uncollapse.report import Report
from uncollapse.samplers.grouped import GroupedBatchSampler
from uncollapse.trainers.contrastive.config import ContrastiveConfig
from uncollapse.trainers.contrastive.model import DualTower
from uncollapse.trainers.gather import gather, gather_with_grad, global_mean, local_rows
from uncollapse.trainers.losses import multi_positive_infonce_per_anchor, similarity_gap
from uncollapse.trainers.preflight import load_features, validate_caption_inputs
from uncollapse.trainers.recipe import Recipe, StepOutput
from uncollapse.validators.collapse.metrics import (
    alignment,
    effective_rank,
    recall_at_k,
    uniformity,
)

__all__ = ["RECIPE", "ContrastiveRecipe", "caption_recall", "held_out_mask", "image_rows"]


def image_rows(path: str | Path, table: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Image features and, for every group (match_id), its row in them."""
    path = Path(path)
    groups = int(table[MATCH_ID].max()) + 1 if len(table[MATCH_ID]) else 0
    if path.suffix == ".npz":
        features, ids = read_image_features(path)
        order = np.argsort(ids)
        # the image_id of each group, then where that id sits in the NPZ
        first = np.unique(table[MATCH_ID], return_index=True)
        group_image = np.full(groups, "", dtype=object)
        group_image[first[0]] = table[IMAGE_ID][first[1]]
        where = np.searchsorted(ids[order], group_image.astype(str))
        where = np.minimum(where, len(ids) - 1)
        found = ids[order][where] == group_image.astype(str)
        present = np.zeros(groups, dtype=bool)
        present[first[0]] = True
        missing = present & ~found
        if missing.any():
            examples = group_image[missing][:5].tolist()
            raise InputError(path, f"{int(missing.sum())} image(s) of the caption table have no "
                             f"features here, e.g. image_id {examples}")
        return features, order[where]
    features = load_features(path, None, "image features")
    if features.shape[0] < groups:
        raise InputError(path, f"{features.shape[0]} rows of image features for {groups} groups "
                         "(match_id 0..max): row k must hold the image of match_id k")
    return features, np.arange(groups)


def _global_infonce(logits: torch.Tensor, positives: torch.Tensor,
                    candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-positive InfoNCE of this rank's anchors, as its share of the global batch's mean."""
    per_anchor, has_positive = multi_positive_infonce_per_anchor(logits, positives, candidates)
    return global_mean(per_anchor.sum(), has_positive.sum())


def held_out_mask(table: dict[str, np.ndarray], split: str, fraction: float,
                  seed: int) -> np.ndarray:
    """Rows held out for evaluation: the ``split`` rows, else a seeded share of images."""
    splits = table[SPLIT]
    if split != "all" and np.any(splits == split) and not np.all(splits == split):
        return splits == split
    if split == "all":
        return np.ones(len(splits), dtype=bool)
    groups = np.unique(table[MATCH_ID])
    rng = np.random.default_rng(seed)
    chosen = groups[rng.random(len(groups)) < fraction]
    return np.isin(table[MATCH_ID], chosen)


class ContrastiveRecipe(Recipe):
    """Dual-tower training on a caption table's features (see the module)."""

    config_class = ContrastiveConfig
    name = "contrastive"
    lower_bounds = dict(recipe("contrastive").lower_bounds)  # declared in the recipes table

    def preflight(self) -> Report:
        config = self.config
        self.table = read_caption_arrays(config.captions)
        return validate_caption_inputs(self.table, config.captions, batch_size=config.batch_size)

    def setup(self) -> None:
        config, table = self.config, self.table
        n = len(table[MATCH_ID])
        text = load_features(config.text_features, n, "text features")
        self.text = torch.tensor(np.asarray(text), dtype=torch.float32, device=self.device)
        self.match_id = torch.from_numpy(table[MATCH_ID]).to(self.device)
        if config.image_features:
            images, group_row = image_rows(config.image_features, table)
            self.images = torch.tensor(np.asarray(images), dtype=torch.float32,
                                       device=self.device)
            self.group_row = torch.from_numpy(group_row).to(self.device)
        else:
            self.images = self.group_row = None
        held_out = held_out_mask(table, config.eval_split, config.eval_fraction, config.seed)
        self.train_rows_np = np.flatnonzero(~held_out)
        self.eval_rows_np = np.flatnonzero(held_out)
        self.train_rows = torch.from_numpy(self.train_rows_np).to(self.device)
        self.eval_rows = torch.from_numpy(self.eval_rows_np).to(self.device)
        self.per_group = config.per_group
        train_groups = table[MATCH_ID][self.train_rows_np]
        if len(train_groups) == 0:  # evaluation only (eval_split "all")
            self.sampler = None
            return
        if config.force and np.bincount(np.unique(train_groups, return_inverse=True)[1]).max() \
                < config.per_group:
            # broken grouping, trained anyway: every row is its own group of one
            self.per_group = 1
        self.sampler = GroupedBatchSampler(train_groups, config.batch_size, self.per_group,
                                           seed=config.seed, drop_last=True)

    def model_config(self) -> dict:
        return {"d_text": int(self.text.shape[1]),
                "d_image": int(self.images.shape[1]) if self.images is not None else None,
                "hidden": self.config.hidden, "dim": self.config.dim}

    def build_model(self) -> nn.Module:
        c = self.model_config()
        return DualTower(c["d_text"], c["d_image"], c["hidden"], c["dim"],
                         self.config.temperature)

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = self.train_rows[rows]
        groups = self.match_id[rows]
        batch = {"text": self.text[rows], "groups": groups}
        if self.images is not None:
            # rows of a group sit next to each other: group g holds rows g*k .. g*k+k-1
            batch["image"] = self.images[self.group_row[groups[::self.per_group]]]
        return batch

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        # anchors are this rank's rows; candidates and positives (by match_id) come from the
        # global batch of every rank (gather.py), so a positive on another rank stays a positive
        groups = batch["groups"]
        text, image, scale = model(batch["text"], batch.get("image"))
        all_groups, all_text = gather(groups), gather_with_grad(text)
        if image is None:
            logits = scale * text @ all_text.T                             # [B, world * B]
            itself = (local_rows(len(groups), groups.device)[:, None]
                      == torch.arange(len(all_groups), device=groups.device)[None, :])
            same = groups[:, None] == all_groups[None, :]
            loss = _global_infonce(logits, same & ~itself, candidates=~itself)
            terms = {"infonce": loss}
            probe = {"outputs": text.detach(), "labels": groups}
        else:
            image_groups = groups[::self.per_group]  # batch["image"] holds these groups' images
            all_image, all_image_groups = gather_with_grad(image), gather(image_groups)
            logits = scale * text @ all_image.T                                # [B, world * G]
            owner = torch.arange(len(image_groups), device=groups.device).repeat_interleave(
                len(groups) // len(image_groups))
            if all_image is image:
                # one process: the sampler puts each image once in a batch, so a caption's one
                # positive is its own image; cross-entropy gives the loss of the general form
                # below in far fewer passes (the masked form cost a fifth to a third more of a
                # GPU step at batch 8,192), and the image anchors read the logits transposed
                text_to_image = F.cross_entropy(logits.float(), owner)
                image_to_text = _global_infonce(logits.T, image_groups[:, None] == groups[None, :])
            else:  # an image may sit in two ranks' batches: positives by match_id
                text_to_image = _global_infonce(logits,
                                                groups[:, None] == all_image_groups[None, :])
                image_to_text = _global_infonce(scale * image @ all_text.T,       # [G, world * B]
                                                image_groups[:, None] == all_groups[None, :])
            loss = 0.5 * (text_to_image + image_to_text)
            terms = {"infonce_text_to_image": text_to_image,
                     "infonce_image_to_text": image_to_text}
            probe = {"outputs": text.detach(), "targets": image[owner].detach(),
                     "groups": groups}
        terms["temperature"] = 1.0 / scale.detach()
        return StepOutput(loss, terms, probe)

    def monitor(self, probe: dict) -> dict:
        outputs = probe["outputs"].float()
        groups = probe["groups"] if "groups" in probe else probe["labels"]
        same = groups[:, None] == groups[None, :]
        if "targets" in probe:
            targets = probe["targets"].float()
            gap = similarity_gap(outputs, targets, same, exclude_diagonal=False)
            partner = targets
        else:
            gap = similarity_gap(outputs, outputs, same, exclude_diagonal=True)
            k = self.per_group
            partner = outputs.reshape(-1, k, outputs.shape[1]).roll(1, dims=1).reshape_as(outputs)
        return {"similarity_gap": float(gap), "effective_rank": effective_rank(outputs),
                "alignment": alignment(outputs, partner), "uniformity": uniformity(outputs)}

    def evaluate(self, model: nn.Module) -> tuple[dict, dict]:
        rows = self.eval_rows if len(self.eval_rows) else self.train_rows
        groups = self.match_id[rows]
        text = model.text(self.text[rows]).float()
        metrics: dict = {"eval_rows": int(len(rows)),
                         "eval_images": int(torch.unique(groups).numel())}
        if self.images is not None:
            image_groups = torch.unique(groups)
            image = model.image(self.images[self.group_row[image_groups]]).float()
            t2i = recall_at_k(text, image, groups, gallery_groups=image_groups)
            i2t = recall_at_k(image, text, image_groups, gallery_groups=groups)
            metrics.update({f"text_to_image/{k}": v for k, v in t2i.items()})
            metrics.update({f"image_to_text/{k}": v for k, v in i2t.items()})
            same = groups[:, None] == image_groups[None, :]
            metrics["similarity_gap"] = float(similarity_gap(text, image, same, False))
            target = image[torch.searchsorted(image_groups, groups)]
        else:
            metrics.update({f"caption_to_caption/{k}": v
                            for k, v in caption_recall(text, groups).items()})
            same = groups[:, None] == groups[None, :]
            metrics["similarity_gap"] = float(similarity_gap(text, text, same, True))
            target = None
        metrics["effective_rank"] = effective_rank(text)
        metrics["uniformity"] = uniformity(text)
        arrays = {"pred": text.cpu().numpy(), "groups": groups.cpu().numpy()}
        if target is not None:
            arrays["target"] = target.cpu().numpy()
        return metrics, arrays


def caption_recall(embeddings: torch.Tensor, groups: torch.Tensor,
                   ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """Caption-to-caption recall@k: the other captions of a caption's image are its positives
    (the caption itself is not a candidate). Captions without another caption are left out."""
    x = F.normalize(embeddings.float(), dim=-1)
    hits = torch.zeros(len(ks), dtype=torch.float64, device=x.device)
    counted = torch.zeros((), dtype=torch.float64, device=x.device)
    k_values = torch.tensor(ks, device=x.device)
    for start in range(0, x.shape[0], 1024):
        block = x[start:start + 1024] @ x.T
        index = torch.arange(start, start + block.shape[0], device=x.device)
        block[torch.arange(block.shape[0], device=x.device), index] = float("-inf")
        positive = groups[start:start + 1024, None] == groups[None, :]
        positive[torch.arange(block.shape[0], device=x.device), index] = False
        best = block.masked_fill(~positive, float("-inf")).max(dim=1).values
        rank = (block > best[:, None]).sum(dim=1)
        has = positive.any(dim=1)
        hits += ((rank[:, None] < k_values[None, :]) & has[:, None]).sum(dim=0)
        counted += has.sum()
    if counted.item() == 0:
        return {f"recall@{k}": math.nan for k in ks}
    return dict(zip((f"recall@{k}" for k in ks), (hits / counted).tolist(), strict=True))


RECIPE = ContrastiveRecipe
