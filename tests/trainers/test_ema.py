"""``--ema-decay``: the exponential moving average of the weights is what a run checkpoints as
its model, evaluates and serves; the training weights travel beside it, so a resumed run
continues both exactly."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import uncollapse.trainers.run_dir as run_dir_module
from uncollapse.trainers.checkpoints import CheckpointError, check_state
from uncollapse.trainers.engine import evaluate_run, train
from uncollapse.trainers.lvm.config import LVMConfig
from uncollapse.trainers.lvm.recipe import LVMRecipe
from uncollapse.trainers.run_dir import RunDir

STEPS = 6


def config(sequences, out, **overrides) -> LVMConfig:
    values = dict(out=str(out), sequences=str(sequences), steps=STEPS, batch_size=32,
                  max_per_doc=4, lr=1e-2, hidden=16, layers=1, warmup_steps=0, device="cpu",
                  quiet=True, log_every=1, monitor_every=100, monitor_warmup=100,
                  eval_fraction=0.25, residual="last", checkpoint_every=STEPS)
    values.update(overrides)
    return LVMConfig(**values)


def state(run, step: int) -> dict:
    return torch.load(RunDir(run).path / "checkpoints" / f"step-{step:08d}.pt", weights_only=True)


def test_the_checkpointed_model_is_the_average_of_the_training_weights(
        drift_sequences, tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir_module, "KEEP_CHECKPOINTS", 100)
    plain, averaged = tmp_path / "plain", tmp_path / "averaged"
    train(LVMRecipe, config(drift_sequences, plain, checkpoint_every=1))
    train(LVMRecipe, config(drift_sequences, averaged, ema_decay=0.5))
    # the average does not change training: the same losses, the same final weights
    assert ([r["loss"] for r in RunDir(plain).read_metrics()]
            == [r["loss"] for r in RunDir(averaged).read_metrics()])
    trajectory = [state(plain, step)["model"] for step in range(1, STEPS + 1)]
    expected = dict(trajectory[0])
    for weights in trajectory[1:]:
        expected = {k: 0.5 * expected[k] + 0.5 * weights[k] for k in expected}
    saved = state(averaged, STEPS)
    assert saved["ema_updates"] == STEPS
    assert all(torch.equal(saved["train_model"][k], trajectory[-1][k]) for k in expected)
    assert all(torch.allclose(saved["model"][k], expected[k], atol=1e-6) for k in expected)
    assert not all(torch.allclose(saved["model"][k], trajectory[-1][k]) for k in expected)


def test_the_average_is_what_the_run_and_evaluate_report(drift_sequences, tmp_path):
    run = tmp_path / "run"
    train(LVMRecipe, config(drift_sequences, run, ema_decay=0.9))
    final = json.loads(RunDir(run).eval.read_text())
    again = evaluate_run(run, device="cpu")
    assert again["model"]["mean_cosine"] == pytest.approx(final["model"]["mean_cosine"])
    assert again["model"]["recall@1"] == pytest.approx(final["model"]["recall@1"])
    plain = tmp_path / "plain"
    train(LVMRecipe, config(drift_sequences, plain))
    other = json.loads(RunDir(plain).eval.read_text())
    assert other["model"]["mean_cosine"] != pytest.approx(final["model"]["mean_cosine"])


def test_resume_continues_the_average_exactly(drift_sequences, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    settings = dict(ema_decay=0.7, checkpoint_every=3)
    train(LVMRecipe, config(drift_sequences, whole, **settings))
    shutil.copytree(whole, cut)
    (cut / "checkpoints" / f"step-{STEPS:08d}.pt").unlink()
    train(LVMRecipe, config(drift_sequences, cut, resume=True, **settings))
    a, b = state(whole, STEPS), state(cut, STEPS)
    assert [r["loss"] for r in RunDir(whole).read_metrics()] == [
        r["loss"] for r in RunDir(cut).read_metrics()]
    for key in ("model", "train_model"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert a["ema_updates"] == b["ema_updates"] == STEPS


def test_resuming_with_or_without_the_average_against_the_run_is_refused(drift_sequences,
                                                                          tmp_path):
    run = tmp_path / "run"
    train(LVMRecipe, config(drift_sequences, run, ema_decay=0.7, steps=3, checkpoint_every=3))
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    with pytest.raises(CheckpointError, match="--ema-decay"):
        train(LVMRecipe, config(drift_sequences, run, resume=True, steps=STEPS,
                                checkpoint_every=3), allow_change=("ema_decay", "steps"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


@pytest.mark.parametrize("damage, message", [
    (lambda s: s["train_model"].update({next(iter(s["train_model"])): torch.tensor(
        [float("nan")])}), "train_model weight .* holds NaN"),
    (lambda s: s.update(ema_updates=-1), "'ema_updates' is -1"),
    (lambda s: s.update(train_model=[1, 2]), "'train_model' is a list"),
])
def test_a_damaged_average_run_checkpoint_is_refused_naming_the_part(drift_sequences, tmp_path,
                                                                     damage, message):
    run = tmp_path / "run"
    train(LVMRecipe, config(drift_sequences, run, ema_decay=0.7, steps=2, checkpoint_every=2))
    saved = state(run, 2)
    check_state(saved, run / "checkpoints" / "step-00000002.pt")  # as written: accepted
    damage(saved)
    with pytest.raises(CheckpointError, match=message):
        check_state(saved, run / "checkpoints" / "step-00000002.pt")
