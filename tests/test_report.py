"""Findings and reports: JSON shape, non-finite values, GitHub annotations, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from uncollapse.report import MAX_EXAMPLES, Code, Report

DEMO_ERROR = Code("DEMO_ERROR", "error", "meaning", "the fix")
DEMO_WARNING = Code("DEMO_WARNING", "warning", "meaning", "another fix")


def test_json_has_the_design_shape_and_non_finite_values_as_strings():
    finding = DEMO_ERROR.finding("bad values", count=3,
                                 examples=[{"value": float("inf")}, {"value": np.float32("nan")},
                                           {"value": -np.inf, "at": np.int64(7)}])
    report = Report("data.npz", "sequences", [finding], {"norm": np.float64(1.5),
                                                         "worst": float("nan")})
    data = json.loads(report.to_json())
    assert data["tool"] == "uncollapse" and data["kind"] == "sequences"
    assert data["ok"] is False and data["target"] == "data.npz"
    assert data["findings"] == [{"code": "DEMO_ERROR", "severity": "error",
                                 "message": "bad values", "count": 3,
                                 "examples": [{"value": "inf"}, {"value": "nan"},
                                              {"value": "-inf", "at": 7}],
                                 "hint": "the fix"}]
    assert data["stats"] == {"norm": 1.5, "worst": "nan"}


def test_examples_are_capped():
    finding = DEMO_WARNING.finding("many", count=100, examples=list(range(100)))
    assert finding.examples == list(range(MAX_EXAMPLES))


def test_exit_codes_follow_severity_and_strict():
    assert Report("t", "k", []).exit_code() == 0
    warned = Report("t", "k", [DEMO_WARNING.finding("w")])
    assert warned.ok and warned.exit_code() == 0 and warned.exit_code(strict=True) == 1
    assert Report("t", "k", [DEMO_ERROR.finding("e")]).exit_code() == 1


def test_github_annotations_escape_newlines_and_name_the_code():
    report = Report("captions.parquet", "captions",
                    [DEMO_ERROR.finding("line one\nline two 100%"),
                     Code("DEMO_INFO", "info", "m", "").finding("fyi")])
    lines = report.to_github().splitlines()
    assert lines[0].startswith("::error file=captions.parquet,title=DEMO_ERROR::line one%0A")
    assert "100%25" in lines[0]
    assert lines[1].startswith("::notice file=captions.parquet,title=DEMO_INFO::fyi")


def test_round_trip_through_dict():
    report = Report("t", "k", [DEMO_ERROR.finding("e", examples=[{"a": 1}])], {"n": 2})
    assert Report.from_dict(report.to_dict()).to_dict() == report.to_dict()


def test_unknown_severity_is_rejected():
    with pytest.raises(ValueError, match="severity"):
        Code("X", "fatal", "m", "f")


def test_text_verdict_follows_strict():
    from io import StringIO

    from rich.console import Console

    report = Report("t.parquet", "captions", [DEMO_WARNING.finding("w")])
    relaxed, strict = StringIO(), StringIO()
    report.render_text(Console(file=relaxed, width=120))
    report.render_text(Console(file=strict, width=120), strict=True)
    assert relaxed.getvalue().splitlines()[0] == "captions t.parquet: OK"
    assert strict.getvalue().splitlines()[0] == "captions t.parquet: INVALID"
