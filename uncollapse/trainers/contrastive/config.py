"""Dual-tower contrastive training on precomputed caption and image features (multi-positive
InfoNCE, GroupedBatchSampler).

Example:
    uncollapse train contrastive --captions captions.parquet \\
        --text-features text.npy --image-features images.npy --steps 2000 \\
        --out runs/contrastive
"""

from __future__ import annotations

from dataclasses import dataclass

from uncollapse.trainers.config import TrainConfig, input_file, option

__all__ = ["ContrastiveConfig"]


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

    captions: str = input_file()
    text_features: str = input_file()
    image_features: str | None = input_file(None, required=False)
    per_group: int = option(2, at_least=1)
    eval_split: str = "test"
    eval_fraction: float = option(0.2, at_least=0, below=1)
    hidden: int = option(512, at_least=1)
    dim: int = option(128, at_least=1)
    temperature: float = option(0.07, above=0)
    recipe: str = "contrastive"
