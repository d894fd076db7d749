"""Off a terminal, ``train`` writes a progress line (step, loss, samples/s, ETA) to stderr every
``--progress-every`` seconds; the device a run actually used is named in config.json, in the
first record of metrics.jsonl and in the run summary (``--device auto`` says only what was
asked)."""

from __future__ import annotations

import json
import re

import torch
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.trainers import engine

LINE = re.compile(r"^train contrastive: step (\d+)/6 \((\d+)%\), loss (\S+), ([\d,]+|nan) "
                  r"samples/s, ETA (\S+)$")


def train(data, out, *extra):
    args = ["train", "contrastive", "--captions", data["table"], "--text-features",
            data["text"], "--steps", 6, "--batch-size", 20, "--out", out, "--device", "cpu",
            "--hidden", 32, "--warmup-steps", 2, "--log-every", 2, "--monitor-warmup", 1000,
            *extra]
    return CliRunner().invoke(main, [str(a) for a in args])


def progress_lines(result) -> list[re.Match]:
    return [m for m in map(LINE.match, result.stderr.splitlines()) if m]


def test_off_a_terminal_train_writes_a_progress_line_at_each_logged_step_past_the_interval(
        caption_data, tmp_path):
    data = caption_data(images=60)
    result = train(data, tmp_path / "run", "--progress-every", "1e-9")
    assert result.exit_code == 0, result.output
    lines = progress_lines(result)
    assert [(int(m[1]), int(m[2])) for m in lines] == [(2, 33), (4, 66), (6, 100)]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [float(m[3]) for m in lines] == [float(f"{r['loss']:.4g}") for r in metrics]
    assert lines[-1][5] == "0s"  # nothing left at the last step
    assert "train contrastive: step" not in result.stdout  # the summary owns stdout


def test_quiet_and_a_long_interval_write_no_progress_line(caption_data, tmp_path):
    data = caption_data(images=60)
    quiet = train(data, tmp_path / "quiet", "--progress-every", "1e-9", "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert progress_lines(quiet) == []
    long = train(data, tmp_path / "long", "--progress-every", "86400")
    assert long.exit_code == 0, long.output
    assert progress_lines(long) == []


def test_the_device_used_is_named_in_the_config_the_first_metrics_record_and_the_summary(
        caption_data, tmp_path):
    data = caption_data(images=60)
    result = train(data, tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert (config["device"], config["device_used"]) == ("cpu", "cpu")
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [r.get("device_used") for r in records] == ["cpu", None, None]
    assert json.loads(result.stdout)["device_used"] == "cpu"


def test_a_cuda_device_is_named_with_its_index_and_model(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name",
                        lambda index: f"NVIDIA H100 80GB HBM3 #{index}")
    assert engine.describe_device(torch.device("cuda")) == "cuda:1 NVIDIA H100 80GB HBM3 #1"
    assert engine.describe_device(torch.device("cuda", 0)) == "cuda:0 NVIDIA H100 80GB HBM3 #0"
    assert engine.describe_device(torch.device("cpu")) == "cpu"


def test_a_run_of_minutes_alone_says_its_step_without_a_total(capsys):
    lines = engine.ProgressLines("train lvm", engine.UNBOUNDED_STEPS, 0, 0.0, on=True)
    lines.at(120, 0.4321, 8512.0)
    assert capsys.readouterr().err == ("train lvm: step 120, loss 0.4321, 8,512 samples/s, "
                                       "ETA set by --minutes\n")
