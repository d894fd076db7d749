"""``uncollapse diagnose embeddings`` through the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from uncollapse.cli import main


@pytest.fixture(scope="module")
def arrays(tmp_path_factory, coco_embeddings):
    """Real caption embeddings as targets, a healthy and a collapsed prediction of them."""
    root = tmp_path_factory.mktemp("collapse")
    targets, groups = (array[:600] for array in coco_embeddings)
    rng = np.random.default_rng(0)
    healthy = (targets + rng.normal(0, 0.02, targets.shape)).astype(np.float32)
    mean = np.tile(targets.astype(np.float32).mean(axis=0), (600, 1))
    collapsed = (mean + rng.normal(0, 1e-3, mean.shape)).astype(np.float32)
    paths = {}
    for name, array in {"targets": targets, "groups": groups, "healthy": healthy,
                        "collapsed": collapsed, "shrunk": 0.3 * healthy, "short": healthy[:10],
                        "objects": np.array([{"a": 1}] * 3, dtype=object)}.items():
        paths[name] = root / f"{name}.npy"
        np.save(paths[name], array, allow_pickle=True)
    return {name: str(path) for name, path in paths.items()}


def run(*args):
    return CliRunner().invoke(main, ["diagnose", "embeddings", *args])


def test_healthy_predictions_exit_0(arrays):
    result = run(arrays["healthy"], "--targets", arrays["targets"], "--groups", arrays["groups"],
                 "--labels", arrays["groups"])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "effective_rank" in result.output


def test_collapsed_predictions_exit_1_with_json(arrays, tmp_path):
    report_path = tmp_path / "report.json"
    result = run(arrays["collapsed"], "--targets", arrays["targets"], "--format", "json",
                 "--json", str(report_path))
    assert result.exit_code == 1
    report = json.loads(result.output)
    codes = {f["code"] for f in report["findings"]}
    assert {"MEAN_VECTOR_COLLAPSE", "DIMENSIONAL_COLLAPSE"} <= codes and not report["ok"]
    assert json.loads(report_path.read_text()) == report


def test_github_format_annotates_each_finding(arrays):
    result = run(arrays["collapsed"], "--targets", arrays["targets"], "--format", "github")
    assert result.exit_code == 1
    assert "::error file=" in result.output and "title=MEAN_VECTOR_COLLAPSE" in result.output


def test_a_warning_fails_only_under_strict(arrays):
    args = [arrays["shrunk"], "--targets", arrays["targets"]]
    assert run(*args).exit_code == 0
    result = run(*args, "--strict")
    assert result.exit_code == 1 and "MOMENT_MISMATCH" in result.output


def test_strict_json_and_report_file_say_not_ok(arrays, tmp_path):
    report_path = tmp_path / "report.json"
    result = run(arrays["shrunk"], "--targets", arrays["targets"], "--strict", "--format",
                 "json", "--json", str(report_path))
    assert result.exit_code == 1
    printed = json.loads(result.stdout)
    assert printed["ok"] is False and printed["strict"] is True
    assert [f["severity"] for f in printed["findings"]] == ["warning"]
    assert json.loads(report_path.read_text()) == printed


def test_threshold_options_change_the_verdict(arrays):
    args = [arrays["healthy"], "--targets", arrays["targets"]]
    result = run(*args, "--mean-vector-margin", "0.9", "--format", "json")
    assert result.exit_code == 1
    assert [f["code"] for f in json.loads(result.output)["findings"]] == ["MEAN_VECTOR_COLLAPSE"]


def test_a_pickled_array_is_refused_with_exit_2(arrays):
    result = run(arrays["objects"])
    assert result.exit_code == 2
    assert "objects.npy" in result.output and "pickle" in result.output


@pytest.mark.parametrize(("other", "message"), [("groups", "expected shape [N, D]"),
                                                ("short", "paired row for row")])
def test_mismatched_shapes_exit_2_naming_the_files(arrays, other, message):
    result = run(arrays["healthy"], "--targets", arrays[other])
    assert result.exit_code == 2
    assert message in result.output and f"targets = {arrays[other]}" in result.output


def test_an_unusable_device_exits_2(arrays):
    result = run(arrays["healthy"], "--device", "no-such-device")
    assert result.exit_code == 2 and "--device" in result.output


def test_the_command_module_does_not_import_torch():
    code = "import sys; import uncollapse.validators.collapse.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_every_threshold_is_an_option_with_the_documented_default():
    from uncollapse.validators.collapse import Thresholds
    from uncollapse.validators.collapse.cli import diagnose_embeddings_command

    options = {p.name: p.default for p in diagnose_embeddings_command.params}
    for name in Thresholds.names():
        assert options[name] == getattr(Thresholds(), name)


def test_every_threshold_is_an_option_with_the_dataclass_default():
    from dataclasses import fields

    from uncollapse.validators.collapse.cli import diagnose_embeddings_command
    from uncollapse.validators.collapse.thresholds import Thresholds

    options = {p.name: p for p in diagnose_embeddings_command.params}
    for field in fields(Thresholds):
        assert options[field.name].default == field.default, field.name
        assert options[field.name].opts == [f"--{field.name.replace('_', '-')}"]
