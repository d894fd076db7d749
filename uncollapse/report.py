"""Findings and reports: the one result shape every check returns (DESIGN.md)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uncollapse import __version__

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
                hint: str | None = None, severity: str | None = None) -> Finding:
        """A finding of this code; the hint defaults to the code's documented fix."""
        return Finding(code=self.name, severity=severity or self.severity, message=message,
                       count=int(count), examples=list(examples or [])[:MAX_EXAMPLES],
                       hint=self.fix if hint is None else hint)


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
    code: str
    severity: str
    message: str
    count: int = 1
    examples: list = field(default_factory=list)
    hint: str = ""

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "count": self.count, "examples": to_jsonable(self.examples), "hint": self.hint}


@dataclass
class Report:
    """The result of one check run on one target.

    Args:
        target: what was checked (a path, or a description for in-memory data).
        kind: the kind of check (``captions``, ``batches``, ``sequences``, ...).
        findings: everything the check found.
        stats: numbers the check measured, healthy or not.
    """

    target: str
    kind: str
    findings: list[Finding] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def exit_code(self, strict: bool = False) -> int:
        if self.errors or (strict and self.warnings):
            return EXIT_INVALID
        return EXIT_VALID

    def to_dict(self) -> dict:
        return {"tool": "uncollapse", "version": __version__, "target": self.target,
                "kind": self.kind, "ok": self.ok,
                "findings": [f.to_dict() for f in self.findings],
                "stats": to_jsonable(self.stats)}

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        """The inverse of ``to_dict`` (for reports kept in cache manifests or JSON files)."""
        return cls(target=data["target"], kind=data["kind"],
                   findings=[Finding(**f) for f in data["findings"]], stats=data["stats"])

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_github(self) -> str:
        """GitHub Actions workflow commands: one annotation per finding."""
        level = {"error": "error", "warning": "warning", "info": "notice"}
        lines = []
        for f in self.findings:
            text = f"{f.message} (count {f.count})" + (f" Fix: {f.hint}" if f.hint else "")
            text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            lines.append(f"::{level[f.severity]} file={self.target},title={f.code}::{text}")
        return "\n".join(lines)

    def render_text(self, console=None, *, strict: bool = False) -> None:
        """Print the report for a person (rich); under ``strict`` warnings make it INVALID."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        verdict = ("[green]OK[/green]" if self.exit_code(strict) == EXIT_VALID
                   else "[red]INVALID[/red]")
        console.print(f"[bold]{self.kind}[/bold] {self.target}: {verdict}")
        if self.stats:
            table = Table(show_header=False, box=None, pad_edge=False)
            for key, value in self.stats.items():
                table.add_row(f"  {key}", _format_stat(value))
            console.print(table)
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


def _format_stat(value: Any) -> str:
    value = to_jsonable(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format_stat(v)}" for k, v in value.items())
    return str(value)
