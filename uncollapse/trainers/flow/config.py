"""Attribute flow in a frozen embedding space (a vector field toward target attributes;
prototype InfoNCE against real-embedding prototypes).

Example:
    uncollapse train flow --embeddings embeddings.npy --attributes attributes.parquet \\
        --flow-steps 2 --steps 2000 --out runs/flow
"""

from __future__ import annotations

from dataclasses import dataclass

from uncollapse.trainers.config import TrainConfig, input_file, option

__all__ = ["PROTOTYPES", "FlowConfig"]

PROTOTYPES = ("bank", "batch")


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

    embeddings: str = input_file()
    attributes: str = input_file()
    attributes_to_flip: str = ""
    min_flips: int = option(1, at_least=1)
    max_flips: int = option(2, at_least=1)
    per_group: int = option(8, at_least=1)
    flow_steps: int = option(2, at_least=1)
    alpha: float = option(1.0, above=0)
    hidden: int = option(512, at_least=1)
    temperature: float = option(0.1, above=0)
    identity_weight: float = option(0.1, at_least=0)
    divergence_weight: float = option(0.01, at_least=0)
    curl_weight: float = option(0.01, at_least=0)
    prototypes: str = option("bank", choices=PROTOTYPES)
    eval_split: str = "test"
    eval_fraction: float = option(0.2, at_least=0, below=1)
    recipe: str = "flow"

    def check(self) -> None:
        super().check()
        if self.min_flips > self.max_flips:
            raise ValueError(f"need 1 <= min_flips ({self.min_flips}) <= max_flips "
                             f"({self.max_flips}): every sample must flip")
        if self.batch_size % self.per_group:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of per_group "
                             f"({self.per_group})")
