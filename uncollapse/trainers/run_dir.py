"""The run directory: ``config.json``, ``metrics.jsonl``, ``checkpoints/``, ``eval.json``.

Checkpoints are written atomically (temporary file, then rename) as ``step-00001234.pt``; the
newest two are kept. Loading takes the newest one that reads back, so a checkpoint cut short by
a crash (or corrupted later) falls back to the one before it, and says so.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from uncollapse.atomic import atomic_path
from uncollapse.errors import InputError
from uncollapse.report import to_jsonable

KEEP_CHECKPOINTS = 2


class RunDir:
    """Paths and files of one training run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.eval = self.path / "eval.json"

    def holds_a_run(self) -> bool:
        """Whether a run has written here (its config or a checkpoint)."""
        return self.config.exists() or any(self.checkpoints.glob("step-*.pt"))

    def create(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    # metrics ----------------------------------------------------------------------------
    def append_metrics(self, record: dict) -> None:
        """One JSON line per logged step (non-finite floats as "nan"/"inf")."""
        with open(self.metrics, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(to_jsonable(record), allow_nan=False) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        records = []
        for number, line in enumerate(self.metrics.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(self.metrics, f"not a JSON line ({exc})", line=number) from exc
        return records

    def truncate_metrics(self, step: int) -> None:
        """Drop lines of steps after ``step`` (a resumed run writes them again)."""
        if self.metrics.exists():
            kept = [r for r in self.read_metrics() if r.get("step", -1) <= step]
            with atomic_path(self.metrics) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def write_json(self, path: Path, values: dict) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(to_jsonable(values), indent=2, allow_nan=False) + "\n")

    # checkpoints ------------------------------------------------------------------------
    def checkpoint_paths(self) -> list[Path]:
        """Checkpoints, newest first."""
        return sorted(self.checkpoints.glob("step-*.pt"), reverse=True)

    def save_checkpoint(self, step: int, state: dict) -> Path:
        path = self.checkpoints / f"step-{step:08d}.pt"
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        for old in self.checkpoint_paths()[KEEP_CHECKPOINTS:]:
            old.unlink(missing_ok=True)
        return path

    def load_checkpoint(self, map_location="cpu") -> tuple[dict, Path]:
        """The newest checkpoint that reads back; a broken newer one is skipped with a warning.

        Raises:
            InputError: there is no readable checkpoint.
        """
        broken = []
        for path in self.checkpoint_paths():
            try:
                state = torch.load(path, map_location=map_location, weights_only=True)
            except Exception as exc:  # truncated zip, bad pickle opcode, ...
                broken.append(f"{path.name} ({type(exc).__name__}: {exc})")
                continue
            if broken:
                warnings.warn(f"skipped unreadable checkpoint(s) {'; '.join(broken)}; resuming "
                              f"from {path.name}", RuntimeWarning, stacklevel=2)
            return state, path
        detail = f"; unreadable: {'; '.join(broken)}" if broken else ""
        raise InputError(self.checkpoints, f"no readable checkpoint{detail}; is this a run "
                         "directory written by `uncollapse train`?")
