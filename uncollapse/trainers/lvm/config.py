"""Next-vector prediction over a sequence file (InfoNCE with same-document hard negatives,
moment matching, DiverseBatchSampler).

Example:
    uncollapse train lvm --sequences sequences.npz --arch gru --steps 5000 \\
        --out runs/lvm
"""

from __future__ import annotations

from dataclasses import dataclass

from uncollapse.trainers.config import TrainConfig, input_file, new_default, option

__all__ = ["ARCHS", "RESIDUALS", "LVMConfig"]

ARCHS = ("gru", "lstm", "transformer", "ssm")
RESIDUALS = ("mean", "last", "learned", "none")


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
        doc_negatives: same-document negatives per sample for the ``doc_infonce`` term (0:
            off): targets of the sample's own training document drawn uniformly each step,
            never the sample itself or a sentence of its context, as within-document
            retrieval ranks them (recall@1 against copy-last, BENCHMARKS.md).
        doc_infonce_weight: weight of ``doc_infonce``, the cross-entropy of the true target
            against those negatives (at ``temperature``).
        eval_fraction: share of documents held out for evaluation (seeded).
    """

    sequences: str = input_file()
    batch_size: int = new_default("batch_size", 128)
    arch: str = option("gru", choices=ARCHS)
    hidden: int = option(512, at_least=1)
    layers: int = option(2, at_least=1)
    heads: int = option(8, at_least=1)
    dropout: float = option(0.1, at_least=0, below=1)
    residual: str = option("learned", choices=RESIDUALS)
    max_per_doc: int = option(4, at_least=1)
    exclude_window: int = option(1, at_least=0)
    temperature: float = option(0.05, above=0)
    infonce_weight: float = option(0.1, at_least=0)
    moment_weight: float = option(0.0, at_least=0)
    variance_weight: float = option(0.0, at_least=0)
    mse_weight: float = option(0.0, at_least=0)
    cosine_weight: float = option(1.0, at_least=0)
    variance_ratio: float = option(0.5, at_least=0)
    doc_negatives: int = option(0, at_least=0)
    doc_infonce_weight: float = option(1.0, at_least=0)
    eval_fraction: float = option(0.15, at_least=0, below=1)
    recipe: str = "lvm"

    def check(self) -> None:
        super().check()
        if self.arch == "transformer" and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads}) "
                             "for the transformer")
