"""One verdict in every output, reports on stdout only, plain unwrapped text off a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from uncollapse.cli import main

ROOT = Path(__file__).resolve().parents[1]
COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"
EMBEDDINGS = ROOT / "data" / "coco" / "embeddings"


@pytest.fixture(scope="module")
def warned_captions(tmp_path_factory) -> Path:
    """Bundled COCO captions: 5 to 7 per image, so ``--group-size 5`` gives warnings only."""
    from uncollapse.pipeline.captions import read_captions

    table, _ = read_captions(COCO)
    path = tmp_path_factory.mktemp("captions") / ("c" * 120) / "captions.parquet"
    path.parent.mkdir()
    table.write_parquet(path)
    return path


@pytest.fixture(scope="module")
def shrunk_predictions(tmp_path_factory) -> tuple[Path, Path]:
    """Predictions whose spread is 0.3x the targets': MOMENT_MISMATCH, a warning only."""
    root = tmp_path_factory.mktemp("embeddings")
    targets = np.load(EMBEDDINGS / "minilm_l6_v2.npy")[:300].astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 0.02, targets.shape).astype(np.float32)
    np.save(root / "targets.npy", targets)
    np.save(root / "pred.npy", 0.3 * (targets + noise))
    return root / "pred.npy", root / "targets.npy"


def warned_commands(captions: Path, embeddings: tuple[Path, Path]) -> dict[str, list[str]]:
    pred, targets = embeddings
    return {"validate captions": ["validate", "captions", str(captions), "--group-size", "5"],
            "diagnose embeddings": ["diagnose", "embeddings", str(pred), "--targets",
                                    str(targets)]}


@pytest.mark.parametrize("command", ["validate captions", "diagnose embeddings"])
@pytest.mark.parametrize("strict", [False, True])
def test_exit_code_text_json_and_github_give_one_verdict(command, strict, warned_captions,
                                                         shrunk_predictions, tmp_path):
    args = warned_commands(warned_captions, shrunk_predictions)[command]
    args += ["--strict"] if strict else []
    runner = CliRunner()
    report_path = tmp_path / "report.json"

    as_json = runner.invoke(main, [*args, "--format", "json", "--json", str(report_path)])
    as_text = runner.invoke(main, args)
    as_github = runner.invoke(main, [*args, "--format", "github"])

    expected_exit = 1 if strict else 0
    assert [as_json.exit_code, as_text.exit_code, as_github.exit_code] == [expected_exit] * 3
    printed, written = json.loads(as_json.stdout), json.loads(report_path.read_text())
    assert printed["findings"] and {f["severity"] for f in printed["findings"]} == {"warning"}
    assert printed["ok"] is written["ok"] is (not strict)
    assert printed["strict"] is strict
    assert as_text.stdout.splitlines()[0].endswith("INVALID" if strict else "OK")
    levels = {line.split(" ", 1)[0] for line in as_github.stdout.splitlines()}
    assert levels == ({"::error"} if strict else {"::warning"})


def uncollapse(*args) -> subprocess.CompletedProcess:
    """The real command line with stdout and stderr piped (not a terminal)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR")}
    env.update({"COLUMNS": "40", "TERM": "xterm-256color"})
    command = [sys.executable, "-c", "from uncollapse.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_piped_text_report_is_plain_unwrapped_and_alone_on_stdout(warned_captions, tmp_path):
    report_path = tmp_path / "report.json"
    result = uncollapse("validate", "captions", str(warned_captions), "--group-size", "5",
                        "--json", str(report_path))
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"captions {warned_captions}: OK"  # longer than 40 columns, one line
    report = json.loads(report_path.read_text())
    for finding in report["findings"]:
        expected = (f"  WARNING {finding['code']} ({finding['count']}): "
                    f"{finding['message']}")
        assert expected in lines
    assert result.stderr == ""


def test_piped_json_report_is_the_whole_of_stdout(shrunk_predictions):
    pred, targets = shrunk_predictions
    result = uncollapse("diagnose", "embeddings", str(pred), "--targets", str(targets),
                        "--format", "json", "--strict")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["kind"] == "embeddings"


def test_quiet_hides_progress_but_not_the_report(shrunk_predictions, tmp_path):
    pred, targets = shrunk_predictions
    runner = CliRunner()
    result = runner.invoke(main, ["diagnose", "embeddings", str(pred), "--targets",
                                  str(targets), "--quiet"])
    assert result.exit_code == 0 and "MOMENT_MISMATCH" in result.stdout
    verified = runner.invoke(main, ["cache", "verify", "--cache-dir", str(tmp_path / "c"),
                                    "--quiet", "--format", "json"])
    assert verified.exit_code == 0 and json.loads(verified.stdout)["kind"] == "cache"


def test_quiet_has_one_meaning_in_the_commands_that_share_it():
    from uncollapse.cache.cli import verify_cmd
    from uncollapse.validators.collapse.cli import diagnose_embeddings_command

    helps = {next(p.help for p in command.params if p.name == "quiet")
             for command in (verify_cmd, diagnose_embeddings_command)}
    assert helps == {"No progress bars or spinners; the report and errors still print."}


def test_progress_draws_nothing_off_a_terminal(capsys):
    from uncollapse.progress import progress, status

    with status("working"):
        assert list(progress(range(5), total=5, desc="counting")) == [0, 1, 2, 3, 4]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_a_reader_that_leaves_early_does_not_change_the_verdict(tmp_path):
    import subprocess
    import sys

    from click.testing import CliRunner

    from uncollapse.cli import main

    table = tmp_path / "coco.parquet"
    coco = Path(__file__).resolve().parents[1] / "data" / "coco" / "captions_val2017_1000.json"
    assert CliRunner().invoke(main, ["build", "captions", str(coco), "-o", str(table),
                                     "--cache-dir", str(tmp_path / "cache")]).exit_code == 0
    process = subprocess.Popen([sys.executable, "-m", "uncollapse", "validate", "captions",
                                str(table)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # like `| head -c 0`: the reader is gone before the report is written
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr
