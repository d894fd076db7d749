"""One table of recipes: ``uncollapse.families.RECIPES`` is what the command line, the engine,
``uncollapse evaluate`` and the report read to find a recipe. A new recipe is one folder of
three files (``__init__.py``, ``config.py``, ``recipe.py``) plus one line in the table; the test
below adds one that way and trains it through ``uncollapse train``."""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import uncollapse.trainers
from uncollapse import families
from uncollapse.trainers.cli import make_train_group
from uncollapse.trainers.engine import evaluate_run
from uncollapse.trainers.plots import write_report
from uncollapse.trainers.recipe import recipe_class, recipe_module

FAKE_FILES = {
    "__init__.py": '"""A recipe that exists only in a test."""\n',
    "config.py": '''"""Fit a linear map of a vector file towards zero (a test recipe).

Example:
    uncollapse train fake --vectors vectors.npy --steps 2 --out runs/fake
"""

from __future__ import annotations

from dataclasses import dataclass

from uncollapse.trainers.config import TrainConfig, input_file, option


@dataclass
class FakeConfig(TrainConfig):
    """``TrainConfig`` plus the fake recipe's options.

    Args:
        vectors: ``.npy`` [rows, D] of float vectors.
        width: output width of the linear map.
    """

    vectors: str = input_file()
    width: int = option(4, at_least=1)
    recipe: str = "fake"
''',
    "recipe.py": '''"""The fake recipe: a linear map whose outputs are pulled to zero."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from uncollapse.report import Report
from uncollapse.samplers.grouped import GroupedBatchSampler
from uncollapse.trainers.fake.config import FakeConfig
from uncollapse.trainers.preflight import load_features
from uncollapse.trainers.recipe import Recipe, StepOutput


class FakeRecipe(Recipe):
    config_class = FakeConfig
    name = "fake"
    lower_bounds = {"mse": 0.0}

    def preflight(self) -> Report:
        self.vectors = load_features(self.config.vectors, None, "vectors")
        return Report(self.config.vectors, "fake inputs", [], {"rows": len(self.vectors)})

    def setup(self) -> None:
        self.x = torch.tensor(np.asarray(self.vectors), device=self.device)
        self.sampler = GroupedBatchSampler(np.arange(len(self.x)), self.config.batch_size,
                                           per_group=1, seed=self.config.seed, drop_last=True)

    def build_model(self) -> nn.Module:
        return nn.Linear(self.x.shape[1], self.config.width)

    def batch(self, rows):
        return {"x": self.x[rows]}

    def loss(self, model, batch) -> StepOutput:
        out = model(batch["x"])
        mse = out.pow(2).mean()
        return StepOutput(mse, {"mse": mse}, {"outputs": out.detach()})

    def evaluate(self, model):
        return {"mse": float(model(self.x).pow(2).mean())}, {"pred": model(self.x)}


RECIPE = FakeRecipe
''',
}


@pytest.fixture
def fake_recipe(tmp_path, monkeypatch):
    """The three files of a recipe ``fake`` in a folder on ``uncollapse.trainers``' path, and
    its one line in ``RECIPES``."""
    folder = tmp_path / "recipes" / "fake"
    folder.mkdir(parents=True)
    for name, text in FAKE_FILES.items():
        (folder / name).write_text(text)
    monkeypatch.setattr(uncollapse.trainers, "__path__",
                        [*uncollapse.trainers.__path__, str(folder.parent)])
    monkeypatch.setattr(families, "RECIPES", (*families.RECIPES, families.RecipeEntry(
        "fake", "sequences", "FakeConfig", "a linear map pulled to zero (a test recipe)")))
    importlib.invalidate_caches()
    yield folder
    for name in [m for m in sys.modules if m.startswith("uncollapse.trainers.fake")]:
        del sys.modules[name]


def test_every_recipe_of_the_table_has_its_config_recipe_and_command():
    group = make_train_group()
    assert sorted(group.commands) == sorted(entry.name for entry in families.RECIPES)
    for entry in families.RECIPES:
        cls = recipe_class(entry.name)
        assert cls.name == entry.name and cls.config_class is entry.config_class()
        assert cls.config_class().recipe == entry.name
        assert group.commands[entry.name].short_help == entry.summary
        assert f"uncollapse train {entry.name} " in group.commands[entry.name].help


def test_an_unknown_recipe_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown recipe 'nope'; one of contrastive, lvm"):
        recipe_class("nope")


def test_a_recipe_draws_its_own_figure_only_where_it_has_a_plots_module():
    assert recipe_module("flow", "plots").FIGURE == "flow-trajectories"
    assert recipe_module("slots", "plots").FIGURE == "slots-grid"
    assert recipe_module("contrastive", "plots") is None
    assert recipe_module("lvm", "plots") is None


def test_a_new_recipe_is_three_files_and_one_line_in_the_table(fake_recipe, tmp_path):
    assert sorted(p.name for p in fake_recipe.iterdir()) == ["__init__.py", "config.py",
                                                             "recipe.py"]
    group = make_train_group()
    assert "fake" in group.commands
    runner = CliRunner()
    shown = runner.invoke(group, ["fake", "--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "Fit a linear map of a vector file towards zero" in shown.output
    assert "uncollapse train fake --vectors vectors.npy --steps 2 --out runs/fake" in shown.output
    assert "output width of the linear map." in shown.output

    vectors = tmp_path / "vectors.npy"
    np.save(vectors, np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32))
    args = ["fake", "--vectors", str(vectors), "--steps", "6", "--batch-size", "16",
            "--device", "cpu", "--quiet", "--log-every", "2", "--monitor-warmup", "1000",
            "--lr", "0.1", "--warmup-steps", "0"]
    refused = runner.invoke(group, [*args, "--width", "0", "--out", str(tmp_path / "bad")])
    assert refused.exit_code == 2 and "--width must be at least 1, got 0" in refused.output
    assert not (tmp_path / "bad").exists()

    run = tmp_path / "run"
    result = runner.invoke(group, [*args, "--width", "3", "--out", str(run)])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["recipe"] == "fake" and evaluation["step"] == 6
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"] == "fake" and config["width"] == 3
    losses = [json.loads(line)["mse"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and losses[-1] < 0.5 * losses[0], losses
    # evaluate and report find the recipe through the table as well
    again = evaluate_run(run, device="cpu")
    assert again["recipe"] == "fake" and again["mse"] == pytest.approx(evaluation["mse"])
    page = write_report(run).read_text()
    assert 'alt="mse"' in page and 'alt="projection"' in page
