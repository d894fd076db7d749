"""Findings and reports: JSON shape, non-finite values, GitHub annotations, exit codes."""

from __future__ import annotations

import io
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


def test_strict_is_part_of_the_verdict_in_every_format():
    report = Report("t.parquet", "captions", [DEMO_WARNING.finding("w")], strict=True)
    assert not report.ok and report.exit_code() == 1
    data = json.loads(report.to_json())
    assert data["ok"] is False and data["strict"] is True
    assert report.to_github().startswith("::error file=t.parquet,title=DEMO_WARNING::w")
    relaxed = Report("t.parquet", "captions", [DEMO_WARNING.finding("w")])
    assert relaxed.to_dict()["ok"] is True
    assert relaxed.to_github().startswith("::warning file=t.parquet,title=DEMO_WARNING::w")


def test_github_escapes_property_values_and_message_data():
    report = Report("data/a:b,c%.parquet", "captions",
                    [DEMO_ERROR.finding("50% bad\r\nnext: a, b")])
    line = report.to_github()
    assert line == ("::error file=data/a%3Ab%2Cc%25.parquet,title=DEMO_ERROR::"
                    "50%25 bad%0D%0Anext: a, b (count 1) Fix: the fix")
    assert "\n" not in line


def test_github_annotation_carries_the_findings_file_and_line():
    finding = DEMO_WARNING.finding("malformed", file="tokens,1.txt", line=17)
    line = Report("tokens.txt", "build captions", [finding]).to_github()
    assert line.startswith("::warning file=tokens%2C1.txt,line=17,title=DEMO_WARNING::malformed")


def test_location_is_in_json_only_when_set_and_old_dicts_still_load():
    located = DEMO_ERROR.finding("e", file="src.txt", line=np.int64(4))
    assert located.to_dict()["file"] == "src.txt" and located.to_dict()["line"] == 4
    assert "file" not in DEMO_ERROR.finding("e").to_dict()
    assert "line" not in DEMO_ERROR.finding("e").to_dict()
    report = Report("t", "k", [located], {"n": 1}, strict=True)
    assert Report.from_dict(report.to_dict()) == report
    old = {"target": "t", "kind": "k", "ok": True, "stats": {},
           "findings": [{"code": "DEMO_WARNING", "severity": "warning", "message": "w",
                         "count": 1, "examples": [], "hint": ""}]}
    loaded = Report.from_dict(old)
    assert loaded.strict is False and loaded.findings[0].line is None and loaded.ok


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _rendered(monkeypatch, stream) -> str:
    monkeypatch.setattr("sys.stdout", stream)
    Report("t.parquet", "captions", [DEMO_ERROR.finding("e")]).render_text()
    return stream.getvalue()


def test_text_off_a_terminal_is_plain_and_not_wrapped(monkeypatch):
    from io import StringIO

    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    long_target = "/data/" + "x" * 150 + ".parquet"
    stream = StringIO()
    monkeypatch.setattr("sys.stdout", stream)
    message = " ".join(["word"] * 60)
    Report(long_target, "captions", [DEMO_ERROR.finding(message)]).render_text()
    lines = stream.getvalue().splitlines()
    assert lines[0] == f"captions {long_target}: INVALID"
    assert lines[1] == f"  ERROR DEMO_ERROR (1): {message}"
    assert "\x1b[" not in stream.getvalue()


def test_no_color_turns_escape_codes_off_on_a_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    assert "\x1b[" in _rendered(monkeypatch, _Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    plain = _rendered(monkeypatch, _Terminal())
    assert "\x1b[" not in plain and plain.startswith("captions t.parquet: INVALID")


def test_text_stats_lines_carry_no_trailing_padding():
    import io

    from rich.console import Console

    from uncollapse.report import Report

    report = Report("t", "captions", stats={"rows": 5, "histogram": {str(i): i for i in range(60)}})
    buffer = io.StringIO()
    report.render_text(Console(file=buffer, width=10_000, soft_wrap=True, color_system=None))
    lines = buffer.getvalue().splitlines()
    rows = next(line for line in lines if line.strip().startswith("rows"))
    assert rows == rows.rstrip() and rows.split() == ["rows", "5"]
    assert all(line == line.rstrip() for line in lines)
