"""What reads a run directory (``evaluate``, ``serve``, ``--resume``) stands a damaged
``config.json`` and a training that rotates its checkpoints while it reads.

Found while looking past the issue's list: a hand-edited or damaged ``config.json`` gave raw
``TypeError``/``RuntimeError``/``AttributeError`` messages from ``evaluate``; a reader that
listed the checkpoints just before the training replaced them found none."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from reliability_runs import assert_clean, contrastive, invoke, snapshot

from uncollapse.trainers import checkpoints
from uncollapse.trainers.run_dir import RunDir


@pytest.fixture(scope="module")
def trained(run_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("readers") / "run"
    result = contrastive(run_data, run, "--checkpoint-every", 4)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


@pytest.mark.parametrize("change, expected", [
    ({"hidden": "x"}, "option 'hidden' is 'x'; expected int"),
    ({"hidden": -5}, "option 'hidden': the value must be at least 1, got -5"),
    ({"captions": 7}, "option 'captions' is 7; expected str"),
    ({"batch_size": None}, "option 'batch_size' is None; expected int"),
    ({"lr": True}, "option 'lr' is True; expected float"),
    ({"eval_fraction": 5}, "option 'eval_fraction': the value must be in [0, 1), got 5"),
    ({"steps": None, "epochs": None}, "give steps, epochs or minutes"),
    ("a list", "names no known recipe"),
    ({"recipe": "nope"}, "names no known recipe"),
])
def test_a_damaged_config_is_exit_2_naming_the_option(run_data, run, change, expected):
    config = json.loads((run / "config.json").read_text())
    config = [config] if change == "a list" else {**config, **change}
    (run / "config.json").write_text(json.dumps(config))
    evaluated = invoke("evaluate", run, "--device", "cpu")
    assert evaluated.exit_code == 2
    assert f"{run / 'config.json'}: " in evaluated.output and expected in evaluated.output
    assert_clean(evaluated.output)
    before = snapshot(run)
    resumed = contrastive(run_data, run, "--resume")
    assert resumed.exit_code == 2, resumed.output
    assert_clean(resumed.output)
    assert snapshot(run) == before


def test_a_reader_finds_the_checkpoint_written_while_it_read(run, monkeypatch):
    """The training saves step 8 and removes steps 4 and 6 just as the reader opens step 6."""
    real_load, calls = checkpoints.load, []
    newest = run / "checkpoints" / "step-00000006.pt"
    state = torch.load(newest, weights_only=True)

    def load(path, map_location="cpu"):
        calls.append(path.name)
        if len(calls) == 1:
            checkpoints.save(run / "checkpoints" / "step-00000008.pt", {**state, "step": 8})
            for name in ("step-00000006.pt", "step-00000004.pt"):
                checkpoints.remove(run / "checkpoints" / name)
        return real_load(path, map_location)

    monkeypatch.setattr(checkpoints, "load", load)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a vanished file is no damage: no warning
        loaded, path = RunDir(run).load_checkpoint()
    assert path.name == "step-00000008.pt" and loaded["step"] == 8
    assert calls == ["step-00000006.pt", "step-00000008.pt"]
