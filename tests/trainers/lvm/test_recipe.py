"""The next-vector (LVM) recipe on CPU: every architecture trains, the evaluation holds every
metric beside its baselines, resume is exact, and the decoding round trip tells a raw-scale
head (``y_dec``) from an L2-normalised one."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from uncollapse.trainers.engine import train
from uncollapse.trainers.lvm.config import LVMConfig
from uncollapse.trainers.lvm.model import LVMModelConfig, NextVectorModel
from uncollapse.trainers.lvm.recipe import LVMRecipe
from uncollapse.trainers.run_dir import RunDir
from uncollapse.validators.collapse.monitor import LossGuardError

PREDICTORS = ("model", "baseline_mean_target", "baseline_last_context", "baseline_context_mean")
METRICS = ("mean_cosine", "recall@1", "mrr", "contrastive_accuracy_hardest", "std_ratio_median",
           "mean_shift_median")


@pytest.fixture(scope="module")
def sequences(drift_sequences):
    return drift_sequences


def config(sequences, out, **overrides) -> LVMConfig:
    values = dict(out=str(out), sequences=str(sequences), steps=60, batch_size=32,
                  max_per_doc=4, lr=1e-2, hidden=32, layers=1, heads=4, warmup_steps=5,
                  device="cpu", quiet=True, log_every=5, monitor_every=20, monitor_warmup=20,
                  eval_fraction=0.25, mse_weight=1.0, residual="last")
    values.update(overrides)
    return LVMConfig(**values)


def test_gru_learns_and_passes_the_round_trip_where_a_normalised_head_fails(sequences,
                                                                             tmp_path):
    result = train(LVMRecipe, config(sequences, tmp_path / "run"))
    curve = [r["loss"] for r in RunDir(tmp_path / "run").read_metrics()]
    assert curve[-1] < 0.5 * curve[0]
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    for name in PREDICTORS:
        assert set(METRICS) <= set(evaluation[name])
    trip = evaluation["round_trip"]
    # (A) the encoder's vectors decode to themselves; (C) y_dec lands on the true next chunk;
    # (B) and y_cos, on the unit sphere, land on neither: the corpus is raw scale (norm ~ 60)
    assert trip["A_encoder_top1"] == 1.0
    assert trip["C_y_dec_top1"] >= 0.9
    assert trip["B_normalised_top1"] <= 0.1 and trip["y_cos_top1"] <= 0.1
    assert trip["corpus_mean_norm"] > 20
    # the model beats copying the last context vector (the target moves on by a fixed step
    # the baseline cannot know)
    assert evaluation["model"]["mean_cosine"] > evaluation["baseline_last_context"]["mean_cosine"]
    assert result.evaluation["eval_documents"] >= 1


@pytest.mark.parametrize("arch", ["lstm", "transformer", "ssm"])
def test_every_architecture_trains(sequences, tmp_path, arch):
    train(LVMRecipe, config(sequences, tmp_path / arch, arch=arch, steps=12, log_every=4,
                            monitor_warmup=100))
    records = RunDir(tmp_path / arch).read_metrics()
    assert [r["step"] for r in records] == [4, 8, 12]
    assert all(r["infonce"] >= 0 and r["moment"] >= 0 and r["variance"] >= 0 for r in records)
    assert json.loads((tmp_path / arch / "config.json").read_text())["arch"] == arch


def test_resume_reproduces_an_uninterrupted_run(sequences, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    settings = dict(steps=10, checkpoint_every=5, log_every=1, dropout=0.1, layers=2)
    train(LVMRecipe, config(sequences, whole, **settings))
    shutil.copytree(whole, cut)
    (cut / "checkpoints" / "step-00000010.pt").unlink()
    train(LVMRecipe, config(sequences, cut, resume=True, **settings))
    a, b = RunDir(whole).read_metrics(), RunDir(cut).read_metrics()
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    sa = torch.load(whole / "checkpoints" / "step-00000010.pt", weights_only=True)
    sb = torch.load(cut / "checkpoints" / "step-00000010.pt", weights_only=True)
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    assert sa["sampler"] == sb["sampler"]


def test_head_outputs_raw_scale_and_its_cosine_copy_is_unit_norm():
    model = NextVectorModel(LVMModelConfig(dim=6, context_length=3, hidden=8, residual="mean"))
    context = torch.full((2, 3, 6), 10.0)
    y_dec = model(context)
    # zero-initialised correction: the model starts at the context mean, in the raw scale
    assert torch.allclose(y_dec, torch.full((2, 6), 10.0))
    assert torch.allclose(NextVectorModel.cosine(y_dec).norm(dim=-1), torch.ones(2))


def test_learned_residual_starts_at_the_context_mean_and_can_move_to_the_last_vector():
    model = NextVectorModel(LVMModelConfig(dim=2, context_length=3, hidden=4,
                                           residual="learned"))
    context = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [0.0, 6.0]]])
    assert torch.allclose(model(context), torch.tensor([[1.0, 2.0]]))
    with torch.no_grad():
        model.position_logits.copy_(torch.tensor([-50.0, -50.0, 50.0]))
    assert torch.allclose(model(context), torch.tensor([[0.0, 6.0]]), atol=1e-4)


def test_document_negatives_come_from_the_samples_own_training_document(sequences, tmp_path):
    recipe = LVMRecipe(config(sequences, tmp_path / "run", doc_negatives=16),
                       torch.device("cpu"))
    recipe.setup()
    torch.manual_seed(0)
    samples = recipe.train_samples[:100]
    picked, valid = recipe.document_negatives(samples)
    assert picked.shape == valid.shape == (100, 16)
    train = set(recipe.train_samples.tolist())
    assert set(picked.flatten().tolist()) <= train  # never a held-out sample
    assert torch.equal(recipe.doc_ids[picked], recipe.doc_ids[samples][:, None].expand(-1, 16))
    assert len(set(recipe.doc_ids[samples].tolist())) > 1
    offset = recipe.positions[samples][:, None] - recipe.positions[picked]
    in_context = (offset >= 1) & (offset <= recipe.context_length)
    itself = picked == samples[:, None]
    assert torch.equal(valid, ~in_context & ~itself)
    assert itself.any() and in_context.any()  # both happen, and both are masked
    # the draw covers the document: every member of the first sample's document shows up
    many, _ = recipe.document_negatives(samples[:1].repeat(400))
    members = recipe.train_samples[recipe.doc_ids[recipe.train_samples] == recipe.doc_ids[
        samples[0]]]
    assert set(many.flatten().tolist()) == set(members.tolist())


def test_document_infonce_ranks_the_target_against_the_valid_negatives_only(sequences,
                                                                          tmp_path):
    recipe = LVMRecipe(config(sequences, tmp_path / "run", doc_negatives=3),
                       torch.device("cpu"))
    target = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    negatives = torch.randn(4, 3, 8)
    valid = torch.ones(4, 3, dtype=torch.bool)
    right = recipe.document_infonce(target, target, negatives, valid)
    wrong = recipe.document_infonce(torch.nn.functional.normalize(negatives[:, 0], dim=-1),
                                    target, negatives, valid)
    assert 0 <= right < wrong
    # a masked negative counts for nothing, even one equal to the target itself
    copies = torch.cat([negatives[:, :2], target[:, None]], dim=1)
    valid[:, 2] = False
    assert torch.allclose(recipe.document_infonce(target, target, copies, valid),
                          recipe.document_infonce(target, target, negatives[:, :2],
                                                  valid[:, :2]))


def test_document_infonce_is_trained_logged_and_guarded(sequences, tmp_path):
    train(LVMRecipe, config(sequences, tmp_path / "run", doc_negatives=8, steps=20))
    records = RunDir(tmp_path / "run").read_metrics()
    assert all(r["doc_infonce"] > 0 for r in records)
    train(LVMRecipe, config(sequences, tmp_path / "off", doc_negatives=8, steps=20,
                            doc_infonce_weight=0.0))
    off = RunDir(tmp_path / "off").read_metrics()
    assert [r["loss"] for r in off] != [r["loss"] for r in records]  # it is trained on
    without = train(LVMRecipe, config(sequences, tmp_path / "without", steps=20))
    assert not any("doc_infonce" in r for r in RunDir(tmp_path / "without").read_metrics())
    assert without.step == 20

    class Impossible(LVMRecipe):
        lower_bounds = {**LVMRecipe.lower_bounds, "doc_infonce": 1e9}

    with pytest.raises(LossGuardError) as caught:
        train(Impossible, config(sequences, tmp_path / "guarded", doc_negatives=8, steps=5,
                                 log_every=1))
    assert caught.value.term == "doc_infonce"
