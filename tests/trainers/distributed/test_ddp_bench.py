"""benchmarks/bench_multi_gpu.py on the CPU (gloo), tiny: one process and two, the same global
batch and steps, samples/s, the scaling efficiency and both runs' evaluation in its JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ddp_data import ROOT, env


def test_bench_multi_gpu_measures_one_and_two_processes_on_the_cpu(tmp_path):
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_multi_gpu.py"),
                           "--device", "cpu", "--nproc", "2", "--size", "smoke",
                           "--recipes", "contrastive", "--steps", "4", "--keep",
                           str(tmp_path / "runs"), "--json", str(out)],
                          env=env(), capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["nproc"] == 2
    bench = result["recipes"]["contrastive"]
    one, two = bench["runs"]["1"], bench["runs"]["2"]
    assert bench["global_batch"] == 32 and bench["steps"] == 4
    assert (one["batch_size_per_process"], two["batch_size_per_process"]) == (32, 16)
    assert one["samples_per_s"] > 0 and two["samples_per_s"] > 0
    assert bench["scaling_efficiency"] == pytest.approx(
        two["samples_per_s"] / (2 * one["samples_per_s"]))
    assert two["command"].startswith("torchrun --standalone --nproc_per_node=2 -m uncollapse")
    for processes, run in (("1", one), ("2", two)):
        evaluation = json.loads((tmp_path / "runs" / "contrastive" / f"run{processes}" /
                                 "eval.json").read_text())
        assert run["metric"] == evaluation["text_to_image/recall@1"]
        config = json.loads((tmp_path / "runs" / "contrastive" / f"run{processes}" /
                             "config.json").read_text())
        assert config["world_size"] == int(processes) and config["steps"] == 4
    assert "efficiency" in done.stdout and "contrastive" in done.stdout
