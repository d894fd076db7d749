"""GPU hosts have torch, numpy and pyarrow but not polars, pandera or datasets: every recipe
imports there, and a contrastive run trains, its pre-flight falling back to the grouping check
on the arrays that the pyarrow reader gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import json, sys
for name in ("polars", "pandera", "datasets"):
    sys.modules[name] = None
import importlib
from uncollapse.families import RECIPES
for entry in RECIPES:
    for leaf in ("config", "model", "recipe"):
        importlib.import_module(f"{entry.package}.{leaf}")
import uncollapse.trainers.cli
from uncollapse.trainers.contrastive.config import ContrastiveConfig
from uncollapse.trainers.engine import train
from uncollapse.trainers.recipe import recipe_class
table, text, out = sys.argv[1:]
result = train(recipe_class("contrastive"), ContrastiveConfig(
    captions=table, text_features=text, out=out, steps=4, batch_size=20, hidden=16, dim=8,
    device="cpu", quiet=True, log_every=2, monitor_warmup=1000))
print(json.dumps({"step": result.step, "polars": "polars" in sys.modules and
                  sys.modules["polars"] is not None}))
"""


def test_every_recipe_imports_and_contrastive_trains_without_polars(caption_data, tmp_path):
    data = caption_data(images=60)
    result = subprocess.run(
        [sys.executable, "-c", CODE, str(data["table"]), str(data["text"]), str(tmp_path / "r")],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=3600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"step": 4, "polars": False}
    preflight = json.loads((tmp_path / "r" / "preflight.json").read_text())
    assert preflight["stats"]["checks"].startswith("grouping only (diagnose match-ids)")
