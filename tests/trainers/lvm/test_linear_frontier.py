"""benchmarks/lvm_linear_frontier.py: the fixed predictors reproduce the recipe's baselines, and
the ridge predictor, fit on the training documents alone, finds a linear rule on held-out ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.nn.functional as F

from uncollapse.data.npz import write_npz

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
import lvm_linear_frontier  # noqa: E402

ANGLES = (2.0, 2.3, 2.9, 1.7)


def rotating_documents(path: Path, docs: int = 40, length: int = 30, dim: int = 8) -> Path:
    """Each document starts at a random unit vector and turns by one fixed rotation a chunk
    (large, unrelated angles in four planes): the next vector is a linear function of the last
    one but not its nearest neighbour, and no vector comes back near itself in a document."""
    rng = np.random.default_rng(0)
    rotation = np.eye(dim)
    for i, angle in zip(range(0, dim, 2), ANGLES, strict=True):
        rotation[i:i + 2, i:i + 2] = [[np.cos(angle), -np.sin(angle)],
                                      [np.sin(angle), np.cos(angle)]]
    vectors = []
    for _ in range(docs):
        v = rng.normal(size=dim)
        v /= np.linalg.norm(v)
        for _ in range(length):
            vectors.append(v)
            v = rotation @ v
    write_npz(path, {"vectors": np.asarray(vectors, dtype=np.float32),
                     "doc_offsets": np.arange(0, docs * length + 1, length, dtype=np.int64),
                     "context_length": np.array(3, dtype=np.int64)})
    return path


def test_fixed_predictors_are_the_recipes_baselines_and_ridge_learns_the_rotation(tmp_path):
    recipe = lvm_linear_frontier.held_out(str(rotating_documents(tmp_path / "seq.npz")), 0.25, 0)
    out = lvm_linear_frontier.frontier(recipe, decays=[0.0, 1.0], corpus_mean=[(1.0, 0.0)],
                                       lambdas=[1e-3])
    predictors = out["predictors"]
    assert predictors["decay 0.0"] == predictors["copy-last"]
    assert predictors["corpus mean a=1.0 c=0.0"] == predictors["copy-last"]
    # the same direction (ties between candidates at equal angles may break either way)
    assert predictors["decay 1.0"]["mean_cosine"] == pytest.approx(
        predictors["context mean"]["mean_cosine"], abs=1e-4)
    # copy-last is at the mean cosine of the four planes' angles; the fit finds the rotation
    assert predictors["copy-last"]["mean_cosine"] == pytest.approx(np.cos(ANGLES).mean(),
                                                                   abs=0.05)
    assert predictors["ridge 0.001"]["mean_cosine"] > 0.999
    assert predictors["ridge 0.001"]["recall@1"] == 1.0
    assert predictors["copy-last"]["recall@1"] < 0.5
    assert 0 < out["eval_documents"] < 40   # held out by document, none trained on


def test_decay_plus_corpus_mean_is_the_decay_at_c_zero_and_mu_at_a_large_c(tmp_path):
    recipe = lvm_linear_frontier.held_out(str(rotating_documents(tmp_path / "seq.npz")), 0.25, 0)
    out = lvm_linear_frontier.frontier(recipe, decays=[0.5], corpus_mean=[], lambdas=[],
                                       decay_mu=[(0.5, 0.0), (0.5, 1e6)])["predictors"]
    # normalising the weights leaves the direction, so every metric, as it was
    assert out["decay 0.5 + 0.0 mu"] == out["decay 0.5"]
    # a large c makes every prediction the training targets' mean direction μ
    mu = F.normalize(recipe.target(recipe.train_samples).double(), dim=-1).mean(dim=0)
    targets = F.normalize(recipe.target(recipe.eval_samples).double(), dim=-1)
    expected = float((targets @ F.normalize(mu, dim=0)).mean())
    assert out["decay 0.5 + 1000000.0 mu"]["mean_cosine"] == pytest.approx(expected, abs=1e-3)
    assert abs(expected - out["decay 0.5"]["mean_cosine"]) > 0.1


def test_selection_takes_the_best_recall_above_the_cosine_floor_and_judges_every_seed():
    def seed(**predictors):
        return {"predictors": {name: {"mean_cosine": c, "recall@1": r}
                               for name, (c, r) in predictors.items()}}

    seeds = {"0": seed(**{"copy-last": (0.40, 0.20), "context mean": (0.48, 0.10),
                          "a": (0.50, 0.18), "b": (0.49, 0.19), "c": (0.47, 0.25)}),
             "1": seed(**{"copy-last": (0.38, 0.17), "context mean": (0.44, 0.10),
                          "a": (0.46, 0.18), "b": (0.45, 0.175), "c": (0.43, 0.30)})}
    chosen = lvm_linear_frontier.select(seeds, "0")
    # c has the best recall but not the cosine; b the best recall of those above the floor
    assert chosen == {"seed": "0", "chosen": "b", "beats_both": {"0": False, "1": True}}
    none_above = {"0": seed(**{"copy-last": (0.4, 0.2), "context mean": (0.5, 0.1),
                               "a": (0.45, 0.3)})}
    assert lvm_linear_frontier.select(none_above, "0") == {"seed": "0", "chosen": None}


def test_the_command_writes_every_seed(tmp_path):
    sequences = rotating_documents(tmp_path / "seq.npz")
    result = tmp_path / "frontier.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lvm_linear_frontier.py"),
                    "--sequences", str(sequences), "--seeds", "0,1", "--decays", "0.5",
                    "--corpus-mean", "0.7:-0.5", "--ridge", "1", "--decay-mu", "0.5:0.2",
                    "--select-seed", "0", "--json", str(result)],
                   check=True, capture_output=True, cwd=ROOT)
    written = json.loads(result.read_text())
    seeds = written["seeds"]
    assert sorted(seeds) == ["0", "1"]
    assert sorted(seeds["1"]["predictors"]) == ["context mean", "copy-last",
                                                "corpus mean a=0.7 c=-0.5", "decay 0.5",
                                                "decay 0.5 + 0.2 mu", "ridge 1.0"]
    assert written["selection"] == lvm_linear_frontier.select(seeds, "0")
