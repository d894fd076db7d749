"""``uncollapse doctor`` as a user runs it: on run directories of ``uncollapse train`` and on
another framework's metrics, in text, JSON and HTML, with exit codes 1, 0 and 2."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from uncollapse.cli import main


def invoke(*args):
    return CliRunner().invoke(main, ["doctor", *map(str, args)])


@pytest.fixture(scope="module")
def runs(zoo, workshop):
    """A healthy contrastive run and one forced past loop-counter image ids."""
    return {"healthy": zoo.contrastive(workshop, "cli_healthy")["run_dir"],
            "broken": zoo.contrastive(workshop, "cli_row_ids", captions=workshop.caption_variant(
                "cli_row_ids", zoo.row_ids), extra=zoo.FORCE)["run_dir"]}


def test_a_broken_run_exits_1_with_cause_evidence_rule_out_and_fix(runs):
    result = invoke(runs["broken"])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "1 cause found" in out and "1. NO_POSITIVES_IN_BATCH  confidence 0.9" in out
    assert "100.0% of the 600 groups (match_id) hold a single row" in out
    assert "the loss is exactly 0 at 100%" in out
    assert "rules it out: `uncollapse diagnose match-ids" in out
    assert "fix: Rebuild" in out and "uncollapse build captions SOURCE -o" in out


def test_a_healthy_run_exits_0(runs):
    result = invoke(runs["healthy"])
    assert result.exit_code == 0, result.output
    assert "HEALTHY" in result.output and "checked: captions, outputs, metrics" in result.output


def test_json_on_stdout_and_in_a_file_are_the_same_report(runs, tmp_path):
    result = invoke(runs["broken"], "--format", "json", "--json", tmp_path / "r.json")
    assert result.exit_code == 1
    printed, written = json.loads(result.stdout), json.loads((tmp_path / "r.json").read_text())
    assert printed == written
    assert printed["kind"] == "doctor" and printed["ok"] is False
    assert [f["code"] for f in printed["findings"]] == ["NO_POSITIVES_IN_BATCH"]
    cause = printed["stats"]["causes"][0]
    assert set(cause) == {"code", "confidence", "summary", "evidence", "rule_out", "fix"}
    assert cause["confidence"] >= 0.9
    assert {e["source"] for e in cause["evidence"]} >= {"metrics.jsonl"}


def test_the_html_page_shows_the_verdict_and_the_curves_that_prove_it(runs, tmp_path):
    page = tmp_path / "doctor.html"
    result = invoke(runs["broken"], "--html", page)
    assert result.exit_code == 1
    text = page.read_text()
    assert "NO_POSITIVES_IN_BATCH" in text and "Rules it out:" in text and "Fix:" in text
    assert text.count("data:image/png;base64,") == 1  # the loss curve that sits at 0
    assert [p.name for p in tmp_path.iterdir()] == ["doctor.html"]


def test_the_html_page_can_go_inside_the_run_directory(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["healthy"], run)
    result = invoke(run, "--html", run / "doctor.html")
    assert result.exit_code == 0, result.output
    assert "HEALTHY: no cause found" in (run / "doctor.html").read_text()


def test_a_moved_data_file_is_noted_and_the_run_still_diagnosed(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["broken"], run)
    config = json.loads((run / "config.json").read_text())
    config["captions"] = str(tmp_path / "gone.parquet")
    (run / "config.json").write_text(json.dumps(config))
    result = invoke(run, "--format", "json")
    report = json.loads(result.stdout)
    assert any("gone.parquet" in note for note in report["stats"]["notes"])
    # the pre-flight report and the loss still say it
    assert report["stats"]["causes"][0]["code"] == "NO_POSITIVES_IN_BATCH"


def test_another_frameworks_csv_with_its_own_names_needs_map(zoo, workshop):
    inputs = zoo.user_regression(workshop, "cli_overfit", train_rows=256, noise=0.3,
                                 frequency=1.0, lr=0.01, epochs=40, fmt="csv",
                                 names=("trn", "dev"))
    assert invoke("--metrics", inputs["metrics"]).exit_code == 0  # no val_loss known
    result = invoke("--metrics", inputs["metrics"], "--map", "loss=trn", "--map", "val_loss=dev")
    assert result.exit_code == 1 and "1. OVERFITTING" in result.output
    missing = invoke("--metrics", inputs["metrics"], "--map", "val_loss=valid")
    assert missing.exit_code == 2
    assert "no metric 'valid' was logged; the metrics are: dev, trn" in missing.output


def test_a_sequence_file_alone_is_diagnosed_from_the_data(workshop):
    path = workshop.sequence_variant("cli_nodoc", doc_ids=None, target_positions=None)
    result = invoke("--sequences", path)
    assert result.exit_code == 1 and "NO_DOC_IDS" in result.output
    assert "MISSING_DOC_IDS" in result.output


def test_a_folder_that_is_not_a_run_and_no_input_at_all_exit_2(tmp_path):
    result = invoke(tmp_path)
    assert result.exit_code == 2 and "holds no config.json" in result.output
    assert "--metrics FILE" in result.output
    nothing = invoke()
    assert nothing.exit_code == 2 and "give a run directory" in nothing.output


def test_embeddings_without_outputs_exit_2_naming_the_keys(tmp_path):
    import numpy as np

    np.savez(tmp_path / "e.npz", something=np.zeros((3, 2)))
    result = invoke("--embeddings", tmp_path / "e.npz")
    assert result.exit_code == 2 and "expected 'pred'" in result.output


def test_json_answer_of_a_run_that_could_not_happen(tmp_path):
    result = invoke(tmp_path, "--format", "json")
    assert result.exit_code == 2
    answer = json.loads(result.stdout)
    assert answer["ok"] is False and answer["exit_code"] == 2
    assert "config.json" in answer["error"]

