"""What a recipe gives the training engine: its data on the device, its model, one step's loss,
its monitors and its evaluation; and how a recipe is found by its name.

Every recipe of ``uncollapse.families.RECIPES`` (contrastive, lvm, flow, slots) implements
``Recipe`` in ``uncollapse.trainers.<name>.recipe``, which names its class ``RECIPE``; the
engine (``engine.train``) runs any of them the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import torch

from uncollapse import families
from uncollapse.errors import ToolError
from uncollapse.report import Report

__all__ = ["PreflightError", "Recipe", "StepOutput", "recipe_class", "recipe_module"]


class PreflightError(ToolError):
    """The inputs failed the recipe's pre-flight check (exit 1: the data is invalid)."""

    exit_code = 1

    def __init__(self, report: Report, *, forceable: bool = True):
        self.report = report
        codes = ", ".join(f"{f.code} ({f.message})" for f in report.errors)
        advice = ("Fix the data, or pass force=True to train on it anyway" if forceable else
                  "Fix the data: this recipe cannot train on it even with force=True")
        super().__init__(f"pre-flight check of the inputs failed, training not started: "
                         f"{codes}. {advice}")


@dataclass
class StepOutput:
    """One step's result: the loss to minimise, its named terms, and what the monitors read.

    ``probe`` holds detached tensors of this batch for the collapse monitor: ``outputs``
    (required), and optionally ``targets``, ``groups`` (which targets are positives of a row)
    and ``labels`` (a class per row, without targets).
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    probe: dict[str, torch.Tensor] = field(default_factory=dict)


class Recipe:
    """Base class of a recipe. Subclasses set ``name`` and ``lower_bounds`` and implement the
    methods below; everything a step touches lives on ``self.device`` after ``setup``."""

    name = "recipe"
    lower_bounds: dict[str, float] = {}
    unforceable: frozenset[str] = frozenset()  # finding codes force=True cannot train past
    # tensors ``setup`` computes that must be bit-identical on every rank of a data-parallel
    # run (a GPU's reductions need not be): the engine copies rank 0's to the others
    replicated: tuple[str, ...] = ()
    sampler = None

    def __init__(self, config, device: torch.device):
        self.config = config
        self.device = device

    def preflight(self) -> Report:
        """Check the inputs before anything is trained; errors stop the run unless forced."""
        raise NotImplementedError

    def setup(self) -> None:
        """Load the data onto the device and build the batch sampler (``self.sampler``)."""
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def model_config(self) -> dict:
        """What ``build_model`` needs to rebuild the same architecture (stored in checkpoints)."""
        return {}

    def batches_per_epoch(self) -> int:
        return len(self.sampler.plan(0))

    def epoch_plan(self, epoch: int) -> torch.Tensor:
        """[batches, batch_size] row indices of this rank's batches of ``epoch``, on the device.

        One host-to-device copy per epoch; each step takes one row of it.
        """
        return torch.from_numpy(self.plan_rows(epoch)).to(self.device)

    def plan_rows(self, epoch: int) -> np.ndarray:
        """[batches, batch_size] row indices of this rank's batches of ``epoch`` (host memory;
        a pure function of the epoch, so it may be computed ahead in another thread)."""
        plan = self.sampler.plan(epoch)
        sizes = np.diff(plan.offsets)
        if len(sizes) and (sizes != sizes[0]).any():
            raise ValueError("the engine needs batches of one size (drop_last=True)")
        return np.ascontiguousarray(plan.rows.reshape(len(plan), -1))

    def on_epoch(self, epoch: int) -> None:
        """Per-epoch draws (hard negatives, flips) before the epoch's first step."""

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gather one batch on the device from the plan's row indices (the whole data path)."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        """The model's forward pass and loss terms on a gathered batch."""
        raise NotImplementedError

    def step(self, model: torch.nn.Module, rows: torch.Tensor) -> StepOutput:
        return self.loss(model, self.batch(rows))

    def monitor(self, probe: dict[str, torch.Tensor]) -> dict[str, float]:
        """Recipe-specific metrics of a probe (similarity gap, effective rank, ...)."""
        return {}

    def evaluate(self, model: torch.nn.Module) -> tuple[dict, dict[str, np.ndarray]]:
        """Held-out metrics, and arrays for the report's projection (``pred``, ``target``)."""
        raise NotImplementedError


def recipe_module(name: str, leaf: str) -> ModuleType | None:
    """``uncollapse.trainers.<name>.<leaf>`` of the recipe called ``name`` (``plots``, ...), or
    None where the recipe has no such module; a ValueError lists the known recipes."""
    module = f"{families.recipe(name).package}.{leaf}"
    return importlib.import_module(module) if importlib.util.find_spec(module) else None


def recipe_class(name: str) -> type[Recipe]:
    """The ``Recipe`` subclass of the recipe called ``name`` (the ``RECIPE`` of its ``recipe``
    module); a ValueError lists the known recipes."""
    return recipe_module(name, "recipe").RECIPE
