"""``uncollapse train``, ``evaluate``, ``report`` and ``serve`` as a user runs them: through the
command line, and the server as a real process called with a real HTTP client."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.trainers.serve import load_model

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--device", "cpu", "--quiet", "--hidden", "32", "--warmup-steps", "2", "--log-every",
        "2", "--monitor-warmup", "1000"]


@pytest.fixture(scope="module")
def data(caption_data, drift_sequences):
    return {**caption_data(images=60), "sequences": drift_sequences}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def contrastive(data, out, *extra):
    return invoke("train", "contrastive", "--captions", data["table"], "--text-features",
                  data["text"], "--steps", 6, "--batch-size", 20, "--out", out, *FAST, *extra)


def test_train_contrastive_prints_the_evaluation_and_fills_the_run_directory(data, tmp_path):
    result = contrastive(data, tmp_path / "run", "--image-features", data["images"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["recipe"] == "contrastive" and evaluation["step"] == 6
    assert "text_to_image/recall@10" in evaluation
    run = tmp_path / "run"
    assert json.loads((run / "eval.json").read_text()) == evaluation
    config = json.loads((run / "config.json").read_text())
    assert config["batch_size"] == 20 and config["image_features"] == str(data["images"])
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert [p.name for p in (run / "checkpoints").glob("*.pt")] == ["step-00000006.pt"]


def test_train_refuses_loop_counter_ids_with_exit_1_unless_forced(data, tmp_path):
    result = invoke("train", "contrastive", "--captions", data["broken"], "--text-features",
                    data["text"], "--steps", 4, "--batch-size", 20, "--out", tmp_path / "a",
                    *FAST)
    assert result.exit_code == 1
    assert "GROUPS_ALL_UNIQUE" in result.output and "--force" in result.output
    forced = invoke("train", "contrastive", "--captions", data["broken"], "--text-features",
                    data["text"], "--steps", 4, "--batch-size", 20, "--out", tmp_path / "b",
                    "--force", *FAST)
    assert forced.exit_code == 0, forced.output


@pytest.mark.parametrize("args, message", [
    (["--precision", "fp16"], "fp16"),
    (["--steps", "0"], "steps must be at least 1"),
    (["--text-features", "missing.npy"], "missing.npy"),
])
def test_bad_options_exit_2_with_the_reason(data, tmp_path, args, message):
    result = invoke("train", "contrastive", "--captions", data["table"], "--text-features",
                    data["text"], "--steps", 4, "--out", tmp_path / "run", *FAST, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_evaluate_reruns_on_other_data_and_report_writes_a_self_contained_page(data, tmp_path):
    assert contrastive(data, tmp_path / "run").exit_code == 0
    result = invoke("evaluate", tmp_path / "run", "--captions", data["table"], "--eval-split",
                    "all", "--device", "cpu", "--json", tmp_path / "eval_all.json")
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["eval_rows"] == json.loads((tmp_path / "eval_all.json").read_text())[
        "eval_rows"]
    assert evaluation["data"]["eval_split"] == "all"
    rows = __import__("pyarrow.parquet", fromlist=["x"]).read_metadata(data["table"]).num_rows
    assert evaluation["eval_rows"] == rows

    page = invoke("report", tmp_path / "run")
    assert page.exit_code == 0, page.output
    html = (tmp_path / "run" / "report" / "index.html").read_text()
    pngs = sorted(p.name for p in (tmp_path / "run" / "report").glob("*.png"))
    assert "curve-loss.png" in pngs and "projection.png" in pngs
    assert html.count("data:image/png;base64,") == len(pngs)
    first = html.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_predictions_and_rejects_bad_input_with_4xx(data, tmp_path):
    run = tmp_path / "lvm"
    trained = invoke("train", "lvm", "--sequences", data["sequences"], "--steps", 4,
                     "--batch-size", 16, "--layers", "1", "--out", run, *FAST)
    assert trained.exit_code == 0, trained.output
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "uncollapse", "serve", str(run), "--port",
                               str(port), "--device", "cpu"], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                health = httpx.get(f"{base}/health", timeout=1).json()
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read().decode()
                time.sleep(0.2)
        assert health["dim"] == 8 and health["context_length"] == 3
        model, _ = load_model(str(run), "cpu")
        context = [[float(i + j) for j in range(8)] for i in range(3)]
        with torch.no_grad():
            expected = model(torch.tensor([context]))[0]
        decoded = httpx.post(f"{base}/predict", json={"context": context}).json()
        assert decoded["shape"] == [8] and decoded["output"] == "decoder"
        assert torch.allclose(torch.tensor(decoded["vectors"]), expected, atol=1e-4)
        cosine = httpx.post(f"{base}/predict", json={"context": [context, context],
                                                     "output": "cosine"}).json()
        assert cosine["shape"] == [2, 8]
        assert abs(torch.tensor(cosine["vectors"][0]).norm().item() - 1) < 1e-5

        bad = {"wrong dimension": {"context": [[1.0, 2.0]] * 3},
               "too long": {"context": [context[0]] * 9},
               "ragged": {"context": [[1.0] * 8, [1.0] * 7]},
               "unknown output": {"context": context, "output": "raw"},
               "not numbers": {"context": [["a"] * 8]}}
        for name, body in bad.items():
            response = httpx.post(f"{base}/predict", json=body)
            assert response.status_code == 422, (name, response.text)
        non_finite = httpx.post(f"{base}/predict", headers={"content-type": "application/json"},
                                content='{"context": [[NaN, 1, 1, 1, 1, 1, 1, 1]]}')
        assert non_finite.status_code == 422 and "non-finite" in non_finite.text
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_directory_that_holds_a_run_is_refused_without_resume(data, tmp_path):
    assert contrastive(data, tmp_path / "run").exit_code == 0
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    again = contrastive(data, tmp_path / "run", "--hidden", "16")
    assert again.exit_code == 2
    assert "already holds a run" in again.output and "--resume" in again.output
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before


@pytest.mark.parametrize("args, message", [
    (["--eval-fraction", "1"], "--eval-fraction must be in [0, 1)"),
    (["--epochs", "2"], "give --steps or --epochs, not both"),
    (["--batch-size", "7"], "--batch-size"),
])
def test_refused_options_leave_no_run_directory(data, tmp_path, args, message):
    result = contrastive(data, tmp_path / "run", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_non_finite_features_are_refused_naming_the_row(data, tmp_path):
    import numpy as np

    text = np.load(data["text"])
    text[5, 3] = np.nan
    np.save(tmp_path / "nan.npy", text)
    result = invoke("train", "contrastive", "--captions", data["table"], "--text-features",
                    tmp_path / "nan.npy", "--steps", 4, "--batch-size", 20, "--out",
                    tmp_path / "run", *FAST)
    assert result.exit_code == 2
    assert "row 5 holds a NaN" in result.output


def test_lvm_without_doc_ids_is_refused_even_with_force(data, tmp_path):
    import numpy as np

    from uncollapse.data.npz import open_npz, write_npz

    arrays = {k: np.asarray(v) for k, v in open_npz(data["sequences"]).items()}
    dense = {"context_sequences": np.stack([arrays["vectors"][i - 3:i] for i in range(3, 40)]),
             "target_vectors": arrays["vectors"][3:40]}
    write_npz(tmp_path / "no_docs.npz", dense)
    result = invoke("train", "lvm", "--sequences", tmp_path / "no_docs.npz", "--steps", 2,
                    "--force", "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 1
    assert "MISSING_DOC_IDS" in result.output and "cannot train on it" in result.output


def test_report_and_serve_refuse_what_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    assert invoke("report", tmp_path / "empty").exit_code == 2
    assert not (tmp_path / "empty" / "report").exists()


def test_tensorboard_writes_event_files(data, tmp_path):
    result = contrastive(data, tmp_path / "run", "--tensorboard")
    assert result.exit_code == 0, result.output
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
