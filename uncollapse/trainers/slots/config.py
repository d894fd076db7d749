"""Slot-attention autoencoder on a scene file (reconstruction plus a clamped slot-diversity
term; learned, spectral or k-means slots).

Example:
    uncollapse train slots --scenes scenes.npz --slots 5 --init learned \\
        --steps 30000 --out runs/slots
"""

from __future__ import annotations

from dataclasses import dataclass

from uncollapse.trainers.config import TrainConfig, input_file, new_default, option

__all__ = ["DIVERSITY", "INITS", "SlotsConfig"]

INITS = ("learned", "queries", "spectral", "kmeans")
DIVERSITY = ("clamped", "unclamped")


@dataclass
class SlotsConfig(TrainConfig):
    """``TrainConfig`` plus the slot-attention recipe's data, model and loss options.

    Args:
        scenes: the scene file (NPZ from ``uncollapse build scenes``).
        slots: slots per image (at least the most objects a scene holds plus the background).
        slot_dim: width of the slots and of the encoder's output features.
        iterations: rounds of slot attention.
        channels: channels of the encoder's and decoder's convolutions.
        init: initial slots: ``learned`` (a learned Gaussian), ``queries`` (one learned vector
            per slot, BO-QSA), ``spectral`` (eigenvectors of the features'
            normalised-Laplacian affinity graph) or ``kmeans`` (centroids of the features).
        implicit: differentiate only the last slot iteration, from the others' fixed point,
            with a straight-through path to the initial slots (implicit differentiation with
            BO-QSA's bi-level optimisation; steadier training).
        diversity: ``clamped`` (mean of max(0, cos) between slots, in [0, 1]) or
            ``unclamped`` (plain mean cosine, which can go negative: the loss guard stops it).
        diversity_weight: weight of the diversity term (0: logged and guarded, not trained on).
        diversity_warmup: epochs over which the diversity weight ramps up from 0.
        eval_fraction: share of the scenes held out for evaluation (seeded).
    """

    scenes: str = input_file()
    batch_size: int = new_default("batch_size", 64)
    lr: float = new_default("lr", 4e-4)
    warmup_steps: int = new_default("warmup_steps", 500)
    weight_decay: float = new_default("weight_decay", 0.0)
    slots: int = option(5, at_least=1)
    slot_dim: int = option(64, at_least=1)
    iterations: int = option(3, at_least=1)
    channels: int = option(64, at_least=1)
    init: str = option("learned", choices=INITS)
    implicit: bool = False
    diversity: str = option("clamped", choices=DIVERSITY)
    diversity_weight: float = option(0.0, at_least=0)
    diversity_warmup: float = option(1.0, at_least=0)
    eval_fraction: float = option(0.1, at_least=0, below=1)
    recipe: str = "slots"
