"""The slot-attention recipe on CPU: it learns, evaluates every metric, resumes exactly, guards
its loss terms (an unclamped diversity term that goes negative is stopped, the clamped one is
not), and every slot initialisation runs and logs the initial slots' cosine."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.data.scenes.contract import save_scenes
from uncollapse.pipeline.scenes import generate_scenes
from uncollapse.trainers.engine import train
from uncollapse.trainers.recipe import PreflightError, recipe_class
from uncollapse.trainers.run_dir import RunDir
from uncollapse.trainers.slots.config import SlotsConfig
from uncollapse.trainers.slots.model import (
    SlotAutoencoder,
    SlotModelConfig,
    kmeans_slots,
    spectral_slots,
)
from uncollapse.trainers.slots.recipe import SlotsRecipe, diversity_loss, mean_pairwise_cosine
from uncollapse.validators.collapse.monitor import LossGuard, LossGuardError

EVAL_METRICS = ("eval_scenes", "fg_ari", "fg_ari_by_objects", "slot_cosine", "init_slot_cosine",
                "reconstruction_mse", "findings")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    path = tmp_path_factory.mktemp("slots") / "scenes.npz"
    save_scenes(generate_scenes(64, 16, 3, seed=0), path)
    return path


def config(scenes, out, **overrides) -> SlotsConfig:
    values = dict(out=str(out), scenes=str(scenes), steps=40, batch_size=16, slots=4,
                  slot_dim=16, channels=16, lr=3e-3, warmup_steps=5, device="cpu", quiet=True,
                  log_every=5, monitor_every=10, monitor_warmup=0, eval_fraction=0.25)
    values.update(overrides)
    return SlotsConfig(**values)


def test_recipe_is_found_by_its_name_in_the_recipes_table():
    assert recipe_class("slots") is SlotsRecipe


def test_loss_decreases_and_evaluation_has_every_metric(scenes, tmp_path):
    result = train(SlotsRecipe, config(scenes, tmp_path / "run"))
    records = RunDir(tmp_path / "run").read_metrics()
    assert {5, 10, 15, 20, 25, 30, 35, 40} <= {r["step"] for r in records}
    assert records[-1]["reconstruction"] < 0.5 * records[0]["reconstruction"]
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert set(EVAL_METRICS) <= set(evaluation)
    assert evaluation == json.loads(json.dumps(result.evaluation))
    assert evaluation["eval_scenes"] == 17  # 25% of 64 by the seeded draw
    assert 0 <= evaluation["reconstruction_mse"] < 0.5
    assert -1 <= evaluation["fg_ari"] <= 1
    assert set(evaluation["fg_ari_by_objects"]) <= {"1", "2", "3"}
    # the learned Gaussian start is not flagged, whatever its cosine
    assert evaluation["findings"] == []
    with np.load(tmp_path / "run" / "projection.npz", allow_pickle=False) as arrays:
        assert arrays["pred"].shape == (17 * 4, 16)
        assert arrays["images"].shape == (8, 16, 16, 3) and arrays["images"].dtype == np.uint8
        assert arrays["reconstructions"].shape == (8, 16, 16, 3)
        assert arrays["masks"].shape == (8, 4, 16, 16)
        np.testing.assert_allclose(arrays["masks"].sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("init", ["learned", "spectral", "kmeans"])
def test_every_init_runs_and_logs_the_initial_slot_cosine(scenes, tmp_path, init):
    result = train(SlotsRecipe, config(scenes, tmp_path / init, init=init, steps=10))
    records = RunDir(tmp_path / init).read_metrics()
    assert all(-1 <= r["init_slot_cosine"] <= 1 for r in records)
    monitored = [r for r in records if "monitor/init_slot_cosine" in r]
    assert monitored and all("monitor/slot_cosine" in r for r in monitored)
    assert result.evaluation["init"] == init
    assert json.loads((tmp_path / init / "config.json").read_text())["init"] == init


def test_near_identical_spectral_and_kmeans_starts_are_a_finding(scenes, tmp_path, caplog):
    # an untrained encoder's features share one direction: both starts are near-identical
    for init in ("spectral", "kmeans"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="uncollapse"):
            result = train(SlotsRecipe, config(scenes, tmp_path / init, init=init, steps=5))
        logged = [r for r in caplog.records if r.name == "uncollapse"]
        assert logged and all(r.levelno == logging.WARNING for r in logged)
        assert f"{init} initial slots are near-identical" in logged[0].getMessage()
        assert result.evaluation["init_slot_cosine"] > 0.5
        assert [f["code"] for f in result.evaluation["findings"]] == ["SLOT_INIT_NEAR_IDENTICAL"]
        records = RunDir(tmp_path / init).read_metrics()
        assert any(r.get("monitor/init_slots_near_identical") == 1.0 for r in records)


def test_the_command_line_shows_the_logged_warning_and_logging_configuration_silences_it(
        scenes, tmp_path):
    def run(out):
        return CliRunner().invoke(main, [
            "train", "slots", "--scenes", str(scenes), "--init", "spectral", "--steps", "2",
            "--batch-size", "16", "--slots", "4", "--slot-dim", "16", "--channels", "16",
            "--monitor-every", "1", "--monitor-warmup", "0", "--device", "cpu", "--quiet",
            "--out", str(out)])

    shown = run(tmp_path / "shown")
    assert shown.exit_code == 0, shown.output
    assert "WARNING: spectral initial slots are near-identical" in shown.stderr
    logger = logging.getLogger("uncollapse")
    level = logger.level
    logger.setLevel(logging.ERROR)  # what a user's logging configuration does
    try:
        silenced = run(tmp_path / "silenced")
    finally:
        logger.setLevel(level)
    assert silenced.exit_code == 0, silenced.output
    assert "near-identical" not in silenced.stderr
    # the finding stays in the evaluation whatever the logging configuration
    findings = json.loads(silenced.stdout)["findings"]
    assert [f["code"] for f in findings] == ["SLOT_INIT_NEAR_IDENTICAL"]


def test_spectral_and_kmeans_find_separated_clusters():
    # two tight clusters of features: both starts put one slot on each
    rng = torch.Generator().manual_seed(0)
    a = torch.tensor([1.0, 0.0, 0.0]) + 0.01 * torch.randn(20, 3, generator=rng)
    b = torch.tensor([0.0, 1.0, 0.0]) + 0.01 * torch.randn(12, 3, generator=rng)
    features = torch.cat([a, b])[None]
    for slots in (spectral_slots(features, 2), kmeans_slots(features, 2)):
        assert slots.shape == (1, 2, 3)
        nearest = torch.cdist(slots[0], torch.stack([a.mean(0), b.mean(0)])).argmin(dim=1)
        assert sorted(nearest.tolist()) == [0, 1]
        assert float(mean_pairwise_cosine(slots)) < 0.2


def test_diversity_term_is_clamped_where_the_plain_cosine_goes_negative():
    # slots pointing away from each other: plain mean cosine is -1, the clamped term 0
    slots = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    assert float(diversity_loss(slots, clamped=False)) == pytest.approx(-1.0)
    assert float(diversity_loss(slots, clamped=True)) == 0.0
    same = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]])
    assert float(diversity_loss(same, clamped=True)) == pytest.approx(1.0)
    guard = LossGuard(SlotsRecipe.lower_bounds)
    guard.check(0, diversity=diversity_loss(slots, clamped=True))
    with pytest.raises(LossGuardError):
        guard.check(0, diversity=diversity_loss(slots, clamped=False))


def test_guard_stops_an_unclamped_diversity_term_and_not_the_clamped_one(scenes, tmp_path):
    pushed = dict(diversity_weight=20.0, diversity_warmup=0, steps=60, log_every=1,
                  monitor_warmup=1000)
    with pytest.raises(LossGuardError) as caught:
        train(SlotsRecipe, config(scenes, tmp_path / "unclamped", diversity="unclamped",
                                  **pushed))
    assert caught.value.term == "diversity" and caught.value.value < 0
    assert caught.value.bound == 0.0
    result = train(SlotsRecipe, config(scenes, tmp_path / "clamped", **pushed))
    records = RunDir(tmp_path / "clamped").read_metrics()
    assert result.step == 60 and len(records) == 60
    assert all(r["diversity"] >= 0 for r in records)
    # the clamped term was pushed down too: the slots moved apart
    assert records[-1]["slot_cosine"] < records[0]["slot_cosine"]


def test_guard_fires_on_an_impossible_bound(scenes, tmp_path):
    class Impossible(SlotsRecipe):
        lower_bounds = {**SlotsRecipe.lower_bounds, "reconstruction": 50.0}

    with pytest.raises(LossGuardError) as caught:
        train(Impossible, config(scenes, tmp_path / "run", steps=5, log_every=1))
    assert caught.value.term == "reconstruction" and caught.value.step == 0


def test_diversity_weight_ramps_over_the_warmup_epochs(scenes, tmp_path):
    recipe = SlotsRecipe(config(scenes, tmp_path / "run", diversity_weight=1.0,
                                diversity_warmup=4), torch.device("cpu"))
    recipe.setup()
    scales = []
    for epoch in (0, 1, 2, 4, 9):
        recipe.on_epoch(epoch)
        scales.append(recipe.diversity_scale)
    assert scales == [0.0, 0.25, 0.5, 1.0, 1.0]


def test_resume_reproduces_an_uninterrupted_run(scenes, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    settings = dict(steps=10, checkpoint_every=5, log_every=1, diversity_weight=0.1)
    train(SlotsRecipe, config(scenes, whole, **settings))
    shutil.copytree(whole, cut)
    (cut / "checkpoints" / "step-00000010.pt").unlink()
    train(SlotsRecipe, config(scenes, cut, resume=True, **settings))
    a, b = RunDir(whole).read_metrics(), RunDir(cut).read_metrics()
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    sa = torch.load(whole / "checkpoints" / "step-00000010.pt", weights_only=True)
    sb = torch.load(cut / "checkpoints" / "step-00000010.pt", weights_only=True)
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    assert sa["sampler"] == sb["sampler"]


def test_broken_scene_file_is_refused_before_training(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((4, 8, 8, 3), np.float32), masks=np.zeros((4, 8, 8), np.uint8),
             num_objects=np.ones(4, np.int8))
    with pytest.raises(PreflightError, match="SCENE_SCHEMA"):
        train(SlotsRecipe, config(bad, tmp_path / "run", force=True))
    assert not (tmp_path / "run").exists()


def test_masks_are_a_softmax_over_slots_and_reconstruct_the_image_shape():
    model = SlotAutoencoder(SlotModelConfig(size=8, slots=3, slot_dim=8, channels=8))
    out = model(torch.zeros(2, 3, 8, 8))
    assert out["recon"].shape == (2, 3, 8, 8) and out["masks"].shape == (2, 3, 8, 8)
    assert torch.allclose(out["masks"].sum(dim=1), torch.ones(2, 8, 8), atol=1e-6)
    assert out["slots"].shape == out["initial_slots"].shape == (2, 3, 8)


def test_implicit_iterations_give_the_same_slots_and_train_only_the_last_one():
    torch.manual_seed(0)
    model = SlotAutoencoder(SlotModelConfig(size=16, slots=4, slot_dim=16, channels=8,
                                            init="queries"))
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    unrolled = model(images)
    model.config.implicit = True
    implicit = model(images)
    # the same forward values: only the gradient's path changes
    assert torch.allclose(unrolled["slots"], implicit["slots"], atol=1e-6)
    assert torch.allclose(unrolled["recon"], implicit["recon"], atol=1e-6)

    def gradients(out):
        model.zero_grad()
        out["recon"].pow(2).mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    implicit_grads = gradients(model(images))
    model.config.implicit = False
    unrolled_grads = gradients(model(images))
    # the queries learn either way (the straight-through path), yet from other gradients
    assert implicit_grads["slot_queries"].abs().sum() > 0
    assert not torch.allclose(implicit_grads["slot_queries"], unrolled_grads["slot_queries"])
    # each slot starts at its own query: no noise, one start per slot
    start = model.initial_slots(model.features(images))
    assert torch.equal(start[0], start[1]) and not torch.equal(start[0, 0], start[0, 1])


def test_queries_with_implicit_differentiation_train_from_the_command_options(scenes,
                                                                            tmp_path):
    result = train(recipe_class("slots"), config(scenes, tmp_path / "run", init="queries",
                                                 implicit=True, steps=30))
    curve = [r["loss"] for r in RunDir(tmp_path / "run").read_metrics()]
    assert curve[-1] < curve[0]
    assert "SLOT_INIT_NEAR_IDENTICAL" not in json.dumps(result.evaluation["findings"])
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["init"] == "queries" and stored["implicit"] is True
