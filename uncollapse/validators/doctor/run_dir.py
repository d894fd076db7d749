"""A run directory of ``uncollapse train``, read as evidence: ``config.json``,
``preflight.json``, ``metrics.jsonl``, ``eval.json``, ``projection.npz`` (the held-out outputs
of the evaluation) and the newest readable checkpoint's weights.

Only ``config.json`` is required: a run a guard stopped has no ``eval.json`` and no
``projection.npz``, and that absence is itself evidence. A file that exists but cannot be read
is a tool error (exit 2) naming the file, except a damaged checkpoint, which is skipped for the
one before it (and said so in the report), as the trainers' own resume does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from uncollapse.data.npz import NPZ_READ_FAILURES
from uncollapse.errors import InputError
from uncollapse.report import Report
from uncollapse.validators.doctor.evidence import Evidence
from uncollapse.validators.doctor.metrics_io import read_metrics
from uncollapse.validators.doctor.probes import load_arrays

__all__ = ["DATA_KEYS", "array_summary", "read_checkpoint", "read_json", "read_run"]

DATA_KEYS = {"captions": "captions", "sequences": "sequences", "attributes": "attributes",
             "scenes": "scenes", "text_features": "features", "embeddings": "features",
             "image_features": "image_features"}
"""Config keys that name a data file, and the kind of file each is."""


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg})", line=exc.lineno) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read ({exc})") from exc
    if not isinstance(value, dict):
        raise InputError(path, f"holds a JSON {type(value).__name__}, expected an object")
    return value


def read_run(run_dir: str | Path) -> Evidence:
    """The evidence of a run directory written by ``uncollapse train``.

    Raises:
        InputError: no ``config.json`` (not a run directory), or a file of the run that
            exists and cannot be read.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(run, "is not a directory; give the run directory of `uncollapse "
                         "train` (or --metrics FILE for a run of another framework)")
    config_path = run / "config.json"
    if not config_path.exists():
        raise InputError(run, "holds no config.json, so it is not a run directory of "
                         "`uncollapse train`; for a run of another framework use --metrics "
                         "FILE (and --captions/--sequences/... for its data)")
    config = read_json(config_path)
    evidence = Evidence(target=str(run), recipe=config.get("recipe") or None, config=config)
    evidence.settings["batch_size"] = config.get("batch_size")
    evidence.settings["world_size"] = config.get("world_size", 1)
    if (run / "preflight.json").exists():
        data = read_json(run / "preflight.json")
        try:
            evidence.preflight = Report.from_dict(data)
        except (KeyError, TypeError) as exc:
            raise InputError(run / "preflight.json", f"is not a report written by "
                             f"`uncollapse train` (missing {exc})") from exc
    metrics = run / "metrics.jsonl"
    if metrics.exists() and metrics.stat().st_size:
        evidence.curves = read_metrics(metrics)
    else:
        evidence.notes.append("metrics.jsonl is missing or empty: no curve to judge")
    if (run / "eval.json").exists():
        evidence.evaluation = read_json(run / "eval.json")
    projection = run / "projection.npz"
    if projection.exists():
        evidence.outputs = load_arrays(projection)
        evidence.outputs_source = "projection.npz"
    evidence.checkpoint = read_checkpoint(run / "checkpoints", evidence.notes)
    for key in DATA_KEYS:
        value = config.get(key)
        if value:
            evidence.settings.setdefault("data", {})[key] = value
    evidence.settings["data_kinds"] = DATA_KEYS
    return evidence


def read_checkpoint(folder: Path, notes: list[str]) -> dict | None:
    """The newest readable checkpoint's step and weight statistics: the count of non-finite
    values and the largest magnitude over the model's floating-point tensors."""
    import torch  # the doctor's collapse checks need torch already; the weights are torch's

    paths = sorted(folder.glob("step-*.pt"), reverse=True) if folder.is_dir() else []
    for path in paths:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (*NPZ_READ_FAILURES, RuntimeError, ValueError, EOFError) as exc:
            notes.append(f"skipped unreadable checkpoint {path.name} ({type(exc).__name__})")
            continue
        model = state.get("model", {}) if isinstance(state, dict) else {}
        # weights only: batch-norm statistics follow the inputs' scale, not the optimiser
        tensors = [t for name, t in model.items()
                   if isinstance(t, torch.Tensor) and t.is_floating_point()
                   and not name.endswith(("running_mean", "running_var"))]
        non_finite = sum(int((~torch.isfinite(t)).sum()) for t in tensors)
        finite_max = [float(t[torch.isfinite(t)].abs().max()) for t in tensors
                      if t.numel() and bool(torch.isfinite(t).any())]
        return {"path": path.name, "step": int(state.get("step", -1)),
                "parameters": int(sum(t.numel() for t in tensors)),
                "non_finite": non_finite, "max_abs": max(finite_max, default=0.0)}
    return None


def array_summary(arrays: dict[str, np.ndarray]) -> dict:
    """Shapes of the arrays read, for the report's stats."""
    return {key: list(value.shape) for key, value in arrays.items()}
