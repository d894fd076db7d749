"""What the doctor knows about one run, and what each cause's judgement rests on.

``Evidence`` holds a run's artifacts as read (config, pre-flight report, metric curves,
evaluation, held-out outputs, the newest checkpoint's weights) and the reports of the checks
run on its data files. A rule turns it into a ``Suspect``: a cause with the ``Signal``s that
point at it. Each signal has a weight (how strongly that one fact implies the cause on its
own); the suspect's confidence is their noisy-or, ``1 - prod(1 - weight)``, so independent
facts that agree raise it and no single weak fact can reach the verdict alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from uncollapse.report import Report
from uncollapse.validators.doctor.causes import Cause

__all__ = ["Curve", "Evidence", "FOUND", "Signal", "Suspect"]

FOUND = 0.5
"""A suspect with at least this confidence is reported as a cause (exit code 1)."""


@dataclass
class Curve:
    """One logged metric: its steps and values (NaN and inf kept, as the run logged them)."""

    name: str
    steps: np.ndarray
    values: np.ndarray
    source: str

    def __post_init__(self):
        self.steps = np.asarray(self.steps, dtype=np.float64)
        self.values = np.asarray(self.values, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def finite(self) -> np.ndarray:
        return np.isfinite(self.values)

    def tail(self, share: float = 0.2, minimum: int = 3) -> np.ndarray:
        """The finite values of the last ``share`` of the logged points (at least ``minimum``)."""
        values = self.values[self.finite]
        count = max(minimum, math.ceil(share * len(values)))
        return values[-count:]


@dataclass(frozen=True)
class Signal:
    """One fact that points at a cause.

    Args:
        weight: how strongly this fact alone implies the cause, in [0, 1).
        source: where it was read (``metrics.jsonl``, ``eval.json``, a data file, ...).
        says: the fact in words, with its numbers.
        value: the number measured, when there is one.
        threshold: what the number is compared with (``"< 0.02"``).
        curve: the logged metric that shows it, drawn in the HTML report.
        fact: facts with one key are the same fact read twice (a pre-flight finding and the
            data check that found it): only the strongest counts.
    """

    weight: float
    source: str
    says: str
    value: float | None = None
    threshold: str | None = None
    curve: str | None = None
    fact: str | None = None

    def to_dict(self) -> dict:
        data = {"source": self.source, "says": self.says, "weight": round(self.weight, 3)}
        if self.value is not None:
            data["value"] = self.value
        if self.threshold is not None:
            data["threshold"] = self.threshold
        if self.curve is not None:
            data["curve"] = self.curve
        return data


@dataclass
class Suspect:
    """A cause and the signals that point at it; ``fix`` is the run's own fix, if known."""

    cause: Cause
    signals: list[Signal] = field(default_factory=list)
    fix: str | None = None

    def add(self, weight: float, source: str, says: str, **details) -> None:
        self.signals.append(Signal(weight, source, says, **details))

    @property
    def counted(self) -> list[Signal]:
        """The signals that count: the strongest of each fact, strongest first."""
        best: dict[str, Signal] = {}
        for index, signal in enumerate(self.signals):
            key = signal.fact or f"#{index}"
            if key not in best or signal.weight > best[key].weight:
                best[key] = signal
        return sorted(best.values(), key=lambda s: -s.weight)

    @property
    def confidence(self) -> float:
        doubt = 1.0
        for signal in self.counted:
            doubt *= 1.0 - min(max(signal.weight, 0.0), 0.99)
        return 1.0 - doubt

    def to_dict(self) -> dict:
        return {"code": self.cause.name, "confidence": round(self.confidence, 3),
                "summary": self.cause.summary,
                "evidence": [s.to_dict() for s in self.counted],
                "rule_out": self.cause.rule_out, "fix": self.fix or self.cause.code.fix}


@dataclass
class Evidence:
    """Everything read about one run.

    Args:
        target: the run directory or metrics file (what the report names).
        recipe: the included recipe that trained it (``contrastive``, ``lvm``, ``flow``,
            ``slots``), or None for a run of another framework.
        config: the run's ``config.json`` (empty for other runs).
        preflight: the pre-flight report of its inputs, if written.
        evaluation: its ``eval.json``, if written (absent when a guard stopped the run).
        curves: logged metrics by name; ``aliases`` maps the doctor's names to them.
        outputs: held-out outputs (``pred``, optional ``target``, ``groups``, ``labels``).
        checkpoint: the newest checkpoint's ``step`` and weight statistics.
        data: the reports of the checks run on the data files, by family.
        measures: numbers computed from the data (group sizes, documents, feature rank...).
        settings: ``batch_size`` and ``world_size`` (from the config or the command line).
        notes: what could not be read, said in the report.
    """

    target: str
    recipe: str | None = None
    config: dict = field(default_factory=dict)
    preflight: Report | None = None
    evaluation: dict | None = None
    curves: dict[str, Curve] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] | None = None
    outputs_source: str | None = None
    checkpoint: dict | None = None
    data: dict[str, Report] = field(default_factory=dict)
    measures: dict[str, dict] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def curve(self, name: str) -> Curve | None:
        """The curve the doctor calls ``name`` (through ``aliases``), if it was logged."""
        key = self.aliases.get(name, name)
        curve = self.curves.get(key)
        return curve if curve is not None and len(curve) else None

    def preflight_codes(self) -> dict[str, dict]:
        """``{code: finding}`` of the pre-flight report."""
        if self.preflight is None:
            return {}
        return {f.code: f.to_dict() for f in self.preflight.findings}

    def data_codes(self, family: str) -> dict[str, dict]:
        """``{code: finding}`` of the checks run on one family's data file."""
        report = self.data.get(family)
        return {} if report is None else {f.code: f.to_dict() for f in report.findings}

    @property
    def finished(self) -> bool | None:
        """Whether the run reached its evaluation (None when that cannot be known)."""
        if not self.config:
            return None
        return self.evaluation is not None
