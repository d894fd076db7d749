"""The contrastive recipe on CPU: it learns, evaluates, resumes exactly, guards its loss, and
refuses (or, forced, visibly fails on) a caption table with loop-counter ids."""

from __future__ import annotations

import functools
import json
import logging
import shutil

import pytest
import torch

from uncollapse.trainers import engine
from uncollapse.trainers.contrastive.config import ContrastiveConfig
from uncollapse.trainers.contrastive.recipe import ContrastiveRecipe
from uncollapse.trainers.engine import evaluate_run, train
from uncollapse.trainers.recipe import PreflightError
from uncollapse.trainers.run_dir import RunDir
from uncollapse.validators.collapse.monitor import CollapseMonitor, LossGuardError


@pytest.fixture(scope="module")
def data(caption_data):
    return caption_data(images=120)


def config(data, out, **overrides) -> ContrastiveConfig:
    values = dict(out=str(out), captions=str(data["table"]), text_features=str(data["text"]),
                  steps=30, batch_size=40, per_group=2, lr=3e-3, hidden=64, dim=32,
                  warmup_steps=5, device="cpu", quiet=True, log_every=5, monitor_every=10,
                  monitor_warmup=10, eval_fraction=0.25)
    values.update(overrides)
    return ContrastiveConfig(**values)


def losses(run_dir) -> list[float]:
    return [r["loss"] for r in RunDir(run_dir).read_metrics()]


def test_dual_tower_learns_and_reports_every_metric(data, tmp_path):
    result = train(ContrastiveRecipe, config(data, tmp_path / "run",
                                             image_features=str(data["images"])))
    curve = losses(tmp_path / "run")
    assert curve[-1] < 0.7 * curve[0]
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    for direction in ("text_to_image", "image_to_text"):
        for k in (1, 5, 10):
            assert 0.0 <= evaluation[f"{direction}/recall@{k}"] <= 1.0
    # synthetic features carry the image: retrieval far above chance (1 of ~30 images)
    assert evaluation["text_to_image/recall@5"] > 0.5
    assert evaluation["similarity_gap"] > 0.2
    for key in ("effective_rank", "uniformity", "eval_rows", "eval_images"):
        assert key in evaluation
    assert result.evaluation == evaluation
    metrics = RunDir(tmp_path / "run").read_metrics()
    logged = {k for r in metrics for k in r}
    assert {"infonce_text_to_image", "infonce_image_to_text", "temperature", "lr",
            "samples_per_s", "monitor/similarity_gap", "monitor/effective_rank",
            "monitor/alignment", "monitor/uniformity"} <= logged
    assert json.loads((tmp_path / "run" / "config.json").read_text())["recipe"] == "contrastive"


def test_resume_reproduces_an_uninterrupted_run(data, tmp_path):
    whole = tmp_path / "whole"
    train(ContrastiveRecipe, config(data, whole, steps=12, checkpoint_every=6, log_every=1))
    # the same run cut at step 6: drop its later checkpoint and metrics, then resume
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    (cut / "checkpoints" / "step-00000012.pt").unlink()
    resumed = train(ContrastiveRecipe, config(data, cut, steps=12, checkpoint_every=6,
                                              log_every=1, resume=True))
    assert losses(cut) == losses(whole)
    a = torch.load(whole / "checkpoints" / "step-00000012.pt", weights_only=True)["model"]
    b = torch.load(cut / "checkpoints" / "step-00000012.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.step == 12


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous(data, tmp_path):
    run = tmp_path / "run"
    train(ContrastiveRecipe, config(data, run, steps=8, checkpoint_every=4))
    newest = run / "checkpoints" / "step-00000008.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="step-00000008.pt"):
        state, path = RunDir(run).load_checkpoint()
    assert path.name == "step-00000004.pt" and state["step"] == 4


def test_guard_stops_a_term_below_its_bound(data, tmp_path):
    class Impossible(ContrastiveRecipe):
        lower_bounds = {"infonce": 50.0}  # InfoNCE of a batch of 40 stays far below 50

    with pytest.raises(LossGuardError) as caught:
        train(Impossible, config(data, tmp_path / "run", steps=5, log_every=1))
    assert caught.value.term == "infonce" and caught.value.step == 0
    assert caught.value.bound == 50.0


def test_loop_counter_ids_are_refused_before_training(data, tmp_path):
    with pytest.raises(PreflightError, match="GROUPS_ALL_UNIQUE") as caught:
        train(ContrastiveRecipe, config(data, tmp_path / "run", captions=str(data["broken"])))
    assert "GROUPS_ALL_UNIQUE" in caught.value.report.codes()
    assert not (tmp_path / "run").exists()  # a refused run writes nothing


def test_forced_run_on_broken_grouping_keeps_the_gap_shut(data, tmp_path):
    good = train(ContrastiveRecipe, config(data, tmp_path / "good", steps=40))
    train(ContrastiveRecipe, config(data, tmp_path / "broken", steps=40, force=True,
                                    captions=str(data["broken"])))
    # during training: positives of the broken run are only the row itself, so no gap opens
    gaps = [r["monitor/similarity_gap"] for r in RunDir(tmp_path / "broken").read_metrics()
            if "monitor/similarity_gap" in r]
    assert gaps and max(abs(g) for g in gaps) < 0.05
    assert good.evaluation["similarity_gap"] > 0.2
    # judged on the correct grouping, the broken run retrieves worse
    overrides = {"captions": str(data["table"]), "eval_split": "all"}
    good_eval = evaluate_run(tmp_path / "good", overrides, device="cpu")
    broken_eval = evaluate_run(tmp_path / "broken", overrides, device="cpu")
    key = "caption_to_caption/recall@1"
    assert broken_eval[key] < good_eval[key] - 0.1
    assert broken_eval["similarity_gap"] < good_eval["similarity_gap"]


def test_a_collapse_the_monitor_finds_is_logged_and_the_run_goes_on(data, tmp_path, caplog,
                                                                    monkeypatch):
    # the monitor judges from step 0 (its own default waits 1000 steps)
    monkeypatch.setattr(engine, "CollapseMonitor", functools.partial(CollapseMonitor, warmup=0))

    class Collapsed(ContrastiveRecipe):
        def loss(self, model, batch):
            out = super().loss(model, batch)
            out.probe["outputs"] = torch.ones_like(out.probe["outputs"])  # every row one point
            return out

    with caplog.at_level(logging.WARNING, logger="uncollapse"):
        result = train(Collapsed, config(data, tmp_path / "run", steps=10, monitor_every=5,
                                         monitor_warmup=0, on_collapse="warn"))
    assert result.step == 10
    messages = [r.getMessage() for r in caplog.records if r.name == "uncollapse"]
    assert messages, "the monitor's finding was not logged"
    assert all(m.startswith(("step 0: ", "step 5: ")) for m in messages)
    assert any("COLLAPSE" in m for m in messages)
