"""Checkpoints carry their SHA-256: a flipped bit, a missing digest or a hostile file is never
loaded by ``evaluate``, ``--resume`` or ``serve``; a bad newest checkpoint falls back to the
newest good one with a warning naming both, and none good is exit 2 naming each file."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from reliability_runs import assert_clean, contrastive, invoke, snapshot

from uncollapse.trainers.checkpoints import CheckpointError
from uncollapse.trainers.run_dir import RunDir

NEWEST, OLDER = "step-00000006.pt", "step-00000004.pt"


@pytest.fixture(scope="module")
def trained(run_data, tmp_path_factory):
    """A contrastive run with checkpoints at steps 4 and 6."""
    run = tmp_path_factory.mktemp("ckpt") / "run"
    result = contrastive(run_data, run, "--checkpoint-every", 4)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def flip(path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 1 << bit
    path.write_bytes(bytes(data))


def write_hostile(path, state) -> None:
    """A checkpoint of other contents with a matching digest: what a digest cannot catch."""
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def test_save_records_the_digest_of_the_bytes_on_disk(run):
    for name in (NEWEST, OLDER):
        path = run / "checkpoints" / name
        recorded = (run / "checkpoints" / f"{name}.sha256").read_text().split()
        assert recorded == [hashlib.sha256(path.read_bytes()).hexdigest(), name]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        OLDER, f"{OLDER}.sha256", NEWEST, f"{NEWEST}.sha256"]


def test_every_bit_flip_in_the_newest_checkpoint_falls_back_to_the_older(run):
    path = run / "checkpoints" / NEWEST
    original = path.read_bytes()
    offsets = np.random.default_rng(0).integers(0, len(original), size=30)
    for offset in offsets:
        flip(path, int(offset), bit=int(offset) % 8)
        with pytest.warns(RuntimeWarning) as caught:
            state, used = RunDir(run).load_checkpoint()
        message = str(caught[0].message)
        assert NEWEST in message and "sha256" in message and OLDER in message
        assert used.name == OLDER and state["step"] == 4
        path.write_bytes(original)
    state, used = RunDir(run).load_checkpoint()
    assert used.name == NEWEST and state["step"] == 6


def test_evaluate_warns_naming_both_and_evaluates_the_good_checkpoint(run):
    flip(run / "checkpoints" / NEWEST, 5000)
    result = invoke("evaluate", run, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoint"] == OLDER
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and NEWEST in warning[0] and OLDER in warning[0]


def test_all_checkpoints_damaged_is_exit_2_for_evaluate_and_resume(run_data, run):
    for name in (NEWEST, OLDER):
        flip(run / "checkpoints" / name, 3000)
    before = snapshot(run)
    evaluated = invoke("evaluate", run, "--device", "cpu")
    assert evaluated.exit_code == 2
    assert NEWEST in evaluated.output and OLDER in evaluated.output
    assert "no checkpoint can be used" in evaluated.output
    assert_clean(evaluated.output)
    resumed = contrastive(run_data, run, "--resume")
    assert resumed.exit_code == 2 and "no checkpoint can be used" in resumed.output
    assert_clean(resumed.output)
    assert snapshot(run) == before  # the failed resume wrote nothing


def test_a_checkpoint_without_its_digest_is_not_loaded(run):
    for name in (NEWEST, OLDER):
        (run / "checkpoints" / f"{name}.sha256").unlink()
    with pytest.raises(CheckpointError, match=r"no digest recorded.*sha256sum step-00000006.pt"):
        RunDir(run).load_checkpoint()
    # the command the message gives makes it load again
    for name in (NEWEST, OLDER):
        path = run / "checkpoints" / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (run / "checkpoints" / f"{name}.sha256").write_text(f"{digest}  {name}\n")
    assert RunDir(run).load_checkpoint()[1].name == NEWEST


def test_a_damaged_digest_file_is_named(run):
    (run / "checkpoints" / f"{NEWEST}.sha256").write_text("not a digest\n")
    with pytest.warns(RuntimeWarning, match=r"digest file step-00000006.pt.sha256 is damaged"):
        assert RunDir(run).load_checkpoint()[1].name == OLDER


def _hostile_states(good: dict) -> dict[str, tuple[object, str]]:
    model = good["model"]
    first = next(iter(model))
    return {
        "a list": ([1, 2, 3], "holds a list"),
        "no model": ({k: v for k, v in good.items() if k != "model"}, "lacks model"),
        "step as text": ({**good, "step": "6"}, "'step' is '6'; expected a whole number"),
        "step negative": ({**good, "step": -3}, "'step' is -3"),
        "step huge": ({**good, "step": 2**70}, "'step' is 1180591620717411303424"),
        "step of another file": ({**good, "step": 4}, "holds step 4, not the step its name"),
        "model as a list": ({**good, "model": [1.0]}, "'model' is a list"),
        "weight as a number": ({**good, "model": {**model, first: 3.0}},
                               "is 3.0; expected a tensor"),
        "weights NaN": ({**good, "model": {k: torch.full_like(v, float("nan"))
                                           if v.is_floating_point() else v
                                           for k, v in model.items()}}, "holds NaN or infinity"),
        "weights of another shape": ({**good, "model": {**model, first: torch.zeros(3)}},
                                     "does not fit"),
        "a missing weight": ({**good, "model": {k: v for k, v in model.items() if k != first}},
                             "does not fit"),
        "rng as text": ({**good, "rng": {"cpu": "seed"}}, "no CPU generator state"),
    }


@pytest.mark.parametrize("kind", list(_hostile_states({"model": {"w": torch.zeros(1)}})))
def test_a_hostile_checkpoint_is_exit_2_naming_the_file(run, kind):
    good = torch.load(run / "checkpoints" / NEWEST, weights_only=True)
    state, expected = _hostile_states(good)[kind]
    (run / "checkpoints" / OLDER).unlink()
    (run / "checkpoints" / f"{OLDER}.sha256").unlink()
    write_hostile(run / "checkpoints" / NEWEST, state)
    result = invoke("evaluate", run, "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert NEWEST in result.output and expected in result.output
    assert_clean(result.output)


def test_a_hostile_optimizer_state_is_exit_2_on_resume_and_nothing_is_written(run_data, run):
    good = torch.load(run / "checkpoints" / NEWEST, weights_only=True)
    (run / "checkpoints" / OLDER).unlink()
    (run / "checkpoints" / f"{OLDER}.sha256").unlink()
    write_hostile(run / "checkpoints" / NEWEST,
                  {**good, "optimizer": {"state": {}, "param_groups": [{"x": 1}]}})
    before = snapshot(run)
    result = contrastive(run_data, run, "--resume")
    assert result.exit_code == 2, result.output
    assert NEWEST in result.output and "does not fit" in result.output
    assert_clean(result.output)
    assert snapshot(run) == before


def test_a_newest_checkpoint_that_does_not_fit_the_model_falls_back(run_data, run):
    """Found by the checkpoints fuzz target: a well-formed checkpoint with a matching digest whose
    weights have another shape stopped evaluate and --resume instead of falling back."""
    good = torch.load(run / "checkpoints" / NEWEST, weights_only=True)
    first = next(iter(good["model"]))
    write_hostile(run / "checkpoints" / NEWEST,
                  {**good, "model": {**good["model"], first: torch.zeros(3, 5)}})
    evaluated = invoke("evaluate", run, "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["checkpoint"] == OLDER
    assert f"{NEWEST}: does not fit the run's model" in evaluated.stderr
    resumed = contrastive(run_data, run, "--checkpoint-every", 4, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["step"] == 6
    assert RunDir(run).load_checkpoint()[0]["step"] == 6  # step 6 trained again from step 4
