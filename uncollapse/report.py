"""Findings and reports: the one result shape every check returns (docs/reports.md)."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uncollapse import __version__

__all__ = [
    "Code", "EXIT_INVALID", "EXIT_TOOL_ERROR", "EXIT_VALID", "Finding", "MAX_EXAMPLES",
    "Report", "SEVERITIES", "UNWRAPPED_WIDTH", "github_annotation", "text_console",
    "to_jsonable",
]

SEVERITIES = ("error", "warning", "info")
MAX_EXAMPLES = 10

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_TOOL_ERROR = 2


@dataclass(frozen=True)
class Code:
    """A stable finding code: what it means and how to fix it. Listed in docs/finding-codes.md."""

    name: str
    severity: str
    meaning: str
    fix: str

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"code {self.name}: severity must be one of {SEVERITIES}")

    def finding(self, message: str, *, count: int = 1, examples: list | None = None,
                hint: str | None = None, severity: str | None = None,
                file: str | None = None, line: int | None = None) -> Finding:
        """A finding of this code; the hint defaults to the code's documented fix.

        ``file`` and ``line`` locate the (first) occurrence in a source file, when there is one.
        """
        return Finding(code=self.name, severity=severity or self.severity, message=message,
                       count=int(count), examples=list(examples or [])[:MAX_EXAMPLES],
                       hint=self.fix if hint is None else hint,
                       file=None if file is None else str(file),
                       line=None if line is None else int(line))


def to_jsonable(value: Any) -> Any:
    """Plain JSON values; a non-finite float becomes "inf", "-inf" or "nan", never null."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class Finding:
    """One problem (or observation) of a check, with how many times it occurs.

    ``file`` and ``line`` say where in a source file the (first) occurrence is, when the
    finding has such a place; they are left out of the JSON when not set.
    """

    code: str
    severity: str
    message: str
    count: int = 1
    examples: list = field(default_factory=list)
    hint: str = ""
    file: str | None = None
    line: int | None = None

    def to_dict(self) -> dict:
        data = {"code": self.code, "severity": self.severity, "message": self.message,
                "count": self.count, "examples": to_jsonable(self.examples), "hint": self.hint}
        if self.file is not None:
            data["file"] = self.file
        if self.line is not None:
            data["line"] = self.line
        return data


@dataclass
class Report:
    """The result of one check run on one target.

    Args:
        target: what was checked (a path, or a description for in-memory data).
        kind: the kind of check (``captions``, ``batches``, ``sequences``, ...).
        findings: everything the check found.
        stats: numbers the check measured, healthy or not.
        strict: warnings fail the check too. ``ok``, the exit code, the text verdict and every
            machine format follow it, so they can never disagree.
    """

    target: str
    kind: str
    findings: list[Finding] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    strict: bool = False

    @property
    def ok(self) -> bool:
        """The verdict: no error, and no warning either when ``strict``."""
        return not (self.errors or (self.strict and self.warnings))

    def fails(self, finding: Finding) -> bool:
        """Whether ``finding`` makes the verdict INVALID (an error; a warning when ``strict``)."""
        return finding.severity == "error" or (self.strict and finding.severity == "warning")

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def exit_code(self, strict: bool = False) -> int:
        """0 when ``ok``, else 1; ``strict`` here fails warnings too (as ``self.strict`` does)."""
        if self.errors or ((strict or self.strict) and self.warnings):
            return EXIT_INVALID
        return EXIT_VALID

    def to_dict(self) -> dict:
        return {"tool": "uncollapse", "version": __version__, "target": self.target,
                "kind": self.kind, "ok": self.ok, "strict": self.strict,
                "findings": [f.to_dict() for f in self.findings],
                "stats": to_jsonable(self.stats)}

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        """The inverse of ``to_dict`` (for reports kept in cache manifests or JSON files).

        Dicts written before ``strict``, ``file`` and ``line`` existed read as not strict and
        without a location.
        """
        return cls(target=data["target"], kind=data["kind"],
                   findings=[Finding(**f) for f in data["findings"]], stats=data["stats"],
                   strict=bool(data.get("strict", False)))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_github(self) -> str:
        """GitHub Actions workflow commands: one annotation per finding.

        A finding that fails the verdict is an ``::error`` (a warning too when ``strict``),
        located at the finding's file and line when it has them, else at the target.
        """
        level = {"error": "error", "warning": "warning", "info": "notice"}
        lines = []
        for f in self.findings:
            text = f"{f.message} (count {f.count})" + (f" Fix: {f.hint}" if f.hint else "")
            lines.append(github_annotation("error" if self.fails(f) else level[f.severity],
                                           text, file=f.file or self.target, line=f.line,
                                           title=f.code))
        return "\n".join(lines)

    def render_text(self, console=None, *, strict: bool = False) -> None:
        """Print the report for a person (rich); under ``strict`` warnings make it INVALID."""
        from rich.markup import escape

        console = console or text_console()
        verdict = ("[green]OK[/green]" if self.exit_code(strict) == EXIT_VALID
                   else "[red]INVALID[/red]")
        console.print(f"[bold]{self.kind}[/bold] {self.target}: {verdict}")
        if self.stats:
            # plain aligned lines: a table would pad every line to its longest value
            width = max(len(str(key)) for key in self.stats)
            for key, value in self.stats.items():
                console.print(f"  {str(key).ljust(width)}  {escape(_format_stat(value))}",
                              highlight=False, soft_wrap=True)
        colour = {"error": "red", "warning": "yellow", "info": "cyan"}
        for f in self.findings:
            console.print(f"  [{colour[f.severity]}]{f.severity.upper()} {f.code}[/] "
                          f"({f.count}): {f.message}", highlight=False)
            for example in f.examples[:5]:
                console.print(f"      e.g. {json.dumps(to_jsonable(example), ensure_ascii=False)}",
                              highlight=False, soft_wrap=True)
            if f.hint:
                console.print(f"      fix: {f.hint}", highlight=False)
        if not self.findings:
            console.print("  no findings")


def github_annotation(level: str, message: str, *, file: str | None = None,
                      line: int | None = None, title: str | None = None) -> str:
    """One GitHub Actions workflow command (``::error file=...,line=...,title=...::message``).

    Escaped as the runner parses them: ``%``, CR and LF in the message; ``:`` and ``,`` as
    well in property values, where they would otherwise end the value.
    """
    properties = [f"{name}={_escape_property(value)}"
                  for name, value in (("file", file), ("line", line), ("title", title))
                  if value is not None and value != ""]
    head = f"::{level} {','.join(properties)}" if properties else f"::{level}"
    return f"{head}::{_escape_data(message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: Any) -> str:
    return _escape_data(str(value)).replace(":", "%3A").replace(",", "%2C")


UNWRAPPED_WIDTH = 100_000
"""Console width off a terminal: a line is as long as its text, never cut at 80 columns."""


def text_console(*, stderr: bool = False):
    """A rich Console for text meant for people, on stdout (or stderr).

    On a terminal: its width, colour unless ``NO_COLOR`` is set (then no escape codes at
    all). Anywhere else (a pipe, a file, a CI log): plain text, no escape codes, lines as long
    as their text. ``FORCE_COLOR`` makes rich treat the stream as a terminal.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    no_color = os.environ.get("NO_COLOR", "") != ""
    console = Console(file=stream, color_system=None if no_color else "auto")
    if not console.is_terminal:
        console = Console(file=stream, color_system=None, width=UNWRAPPED_WIDTH, soft_wrap=True)
    console.on_broken_pipe = _reader_left  # rich would exit 1 itself, whatever the verdict
    return console


def _reader_left() -> None:
    raise BrokenPipeError("the reader of the output went away")


def _format_stat(value: Any) -> str:
    value = to_jsonable(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format_stat(v)}" for k, v in value.items())
    return str(value)
