"""``--resume`` continues a run exactly: options that would change it are refused before anything
is written, each named with the run's value and the new one; a deliberate change goes through
``--allow-change`` and is recorded in ``metrics.jsonl``."""

from __future__ import annotations

import json
import shutil

import pytest
from reliability_runs import FAST, assert_clean, contrastive, invoke, snapshot

from uncollapse.trainers.contrastive.config import ContrastiveConfig
from uncollapse.trainers.contrastive.recipe import ContrastiveRecipe
from uncollapse.trainers.engine import train
from uncollapse.trainers.resume import ResumeMismatch
from uncollapse.trainers.run_dir import RunDir


@pytest.fixture(scope="module")
def trained(run_data, tmp_path_factory):
    """A contrastive run of 6 steps with checkpoints at 4 and 6."""
    run = tmp_path_factory.mktemp("resume") / "run"
    result = contrastive(run_data, run, "--checkpoint-every", 4)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def cut(trained, tmp_path):
    """The same run cut at step 4 (its last checkpoint and metrics after step 4 dropped)."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    for suffix in ("", ".sha256"):
        (run / "checkpoints" / f"step-00000006.pt{suffix}").unlink()
    return run


@pytest.mark.parametrize("extra, named", [
    (["--hidden", "16"], ["--hidden: 32 in the run, 16 now"]),
    (["--batch-size", "10"], ["--batch-size: 20 in the run, 10 now"]),
    (["--hidden", "16", "--batch-size", "10", "--seed", "3"],
     ["--hidden: 32 in the run, 16 now", "--batch-size: 20 in the run, 10 now",
      "--seed: 0 in the run, 3 now"]),
])
def test_resume_with_other_shapes_is_refused_naming_each_option_and_writes_nothing(
        run_data, cut, extra, named):
    before = snapshot(cut)
    result = contrastive(run_data, cut, "--resume", *extra)
    assert result.exit_code == 2, result.output
    assert f"{len(named)} option(s) differ from the run's config.json" in result.output
    for text in named:
        assert text in result.output
    assert "Nothing was written" in result.output
    assert_clean(result.output)
    assert snapshot(cut) == before  # config.json first of all
    again = contrastive(run_data, cut, "--resume")  # the run is still usable
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["step"] == 6


def test_another_architecture_is_refused_for_lvm(run_data, tmp_path):
    args = ["train", "lvm", "--sequences", run_data["sequences"], "--steps", 4, "--batch-size",
            16, "--layers", 1, "--checkpoint-every", 2, "--out", tmp_path / "lvm", *FAST]
    assert invoke(*args).exit_code == 0
    config = (tmp_path / "lvm" / "config.json").read_bytes()
    result = invoke(*args, "--arch", "lstm", "--resume")
    assert result.exit_code == 2
    assert "--arch: 'gru' in the run, 'lstm' now" in result.output
    assert_clean(result.output)
    assert (tmp_path / "lvm" / "config.json").read_bytes() == config


def test_optimiser_changes_need_allow_change_and_are_recorded(run_data, cut):
    refused = contrastive(run_data, cut, "--resume", "--lr", 0.5, "--temperature", 0.5)
    assert refused.exit_code == 2
    assert "--lr: 0.001 in the run, 0.5 now" in refused.output
    assert "--temperature: 0.07 in the run, 0.5 now" in refused.output
    assert "--allow-change lr,temperature" in refused.output
    allowed = contrastive(run_data, cut, "--resume", "--lr", 0.5, "--temperature", 0.5,
                          "--allow-change", "lr,--temperature")
    assert allowed.exit_code == 0, allowed.output
    records = RunDir(cut).read_metrics()
    assert [r["step"] for r in records] == [2, 4, 4, 6]
    assert records[2] == {"step": 4, "event": "resume",
                          "changed": {"lr": {"from": 0.001, "to": 0.5},
                                      "temperature": {"from": 0.07, "to": 0.5}}}
    saved = json.loads((cut / "config.json").read_text())
    assert saved["lr"] == 0.5 and saved["temperature"] == 0.5


def test_resume_alone_takes_the_runs_options(run_data, trained, cut):
    """Options left out of a --resume command line are the run's, not the defaults."""
    result = invoke("train", "contrastive", "--captions", run_data["table"], "--text-features",
                    run_data["text"], "--out", cut, "--resume", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    whole = [r["loss"] for r in RunDir(trained).read_metrics()]
    assert [r["loss"] for r in RunDir(cut).read_metrics()] == whole


def test_a_shape_change_allowed_by_name_still_cannot_load_and_writes_nothing(run_data, cut):
    before = snapshot(cut)
    result = contrastive(run_data, cut, "--resume", "--hidden", 16, "--allow-change", "hidden")
    assert result.exit_code == 2
    assert "step-00000004.pt" in result.output and "does not fit" in result.output
    assert "(changed: --hidden)" in result.output
    assert_clean(result.output)
    assert snapshot(cut) == before


def test_allow_change_of_an_unknown_option_is_refused(run_data, cut):
    result = contrastive(run_data, cut, "--resume", "--allow-change", "learning_rate")
    assert result.exit_code == 2
    assert "unknown option(s) learning_rate" in result.output


def test_the_python_api_refuses_the_same_way(run_data, cut):
    values = dict(out=str(cut), captions=str(run_data["table"]),
                  text_features=str(run_data["text"]), steps=6, batch_size=20, hidden=32,
                  warmup_steps=2, log_every=2, monitor_warmup=1000, device="cpu", quiet=True,
                  resume=True, checkpoint_every=4)
    with pytest.raises(ResumeMismatch) as caught:
        train(ContrastiveRecipe, ContrastiveConfig(**{**values, "lr": 0.01}))
    assert caught.value.changes == {"lr": (0.001, 0.01)}
    result = train(ContrastiveRecipe, ContrastiveConfig(**{**values, "lr": 0.01}),
                   allow_change=["lr"])
    assert result.step == 6


def test_inputs_moved_elsewhere_with_the_same_bytes_are_no_change(run_data, cut, tmp_path):
    moved = tmp_path / "moved"
    moved.mkdir()
    table = shutil.copy(run_data["table"], moved / "captions.parquet")
    text = shutil.copy(run_data["text"], moved / "text.npy")
    result = invoke("train", "contrastive", "--captions", table, "--text-features", text,
                    "--out", cut, "--resume", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    other = moved / "other.npy"
    import numpy as np

    np.save(other, np.load(run_data["text"])[::-1].copy())
    refused = invoke("train", "contrastive", "--captions", table, "--text-features", other,
                     "--out", cut, "--resume", "--device", "cpu", "--quiet")
    assert refused.exit_code == 2 and "--text-features: " in refused.output
