"""Logged metrics of a run of any framework: JSON lines, CSV (or TSV), or a TensorBoard event
directory, read into one ``Curve`` per metric.

The doctor reads metrics by its own names (``loss``, ``val_loss``, ``positives_per_row``,
``world_size``, ``flip_rate``, ...; ``ALIASES`` lists each with the column names it is found
under). ``--map loss=train/loss,val_loss=valid/loss`` names the columns of a run that logs
them differently; ``step=...`` names its step column.

Formats:

- JSON lines (``.jsonl``, ``.ndjson``, ``.json``): one object per line, numbers or the strings
  ``"nan"``, ``"inf"``, ``"-inf"`` as values (what ``uncollapse train`` writes); other values
  (lists, text) are skipped.
- CSV (``.csv``; ``.tsv`` tab-separated): a header row, one row per logged step; empty cells
  are steps where that metric was not logged.
- TensorBoard: a directory holding ``events.out.tfevents.*`` files (in it or in
  subdirectories, whose path becomes a tag prefix: Keras's ``train/`` and ``validation/``).
  Scalars and scalar tensors (TF2 summaries) are read. Needs the ``tensorboard`` extra.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from uncollapse.errors import InputError, ToolError
from uncollapse.extras import require
from uncollapse.families import RECIPES
from uncollapse.validators.doctor.evidence import Curve

__all__ = [
    "ALIASES", "NON_NEGATIVE_TERMS", "SIGNED_HINTS", "STEP_KEYS", "describe", "is_loss_term",
    "parse_map", "read_metrics", "resolve"
]

STEP_KEYS = ("step", "global_step", "iteration", "iter", "epoch")
"""Columns that give a row's step, in order of preference (else the row number)."""

ALIASES: dict[str, tuple[str, ...]] = {
    "loss": ("loss", "train/loss", "train_loss", "loss/train", "training_loss",
             "train/epoch_loss", "epoch_loss", "train/loss_epoch"),
    "val_loss": ("val_loss", "val/loss", "valid_loss", "valid/loss", "validation_loss",
                 "validation/loss", "eval/loss", "eval_loss", "loss/val", "loss/validation",
                 "validation/epoch_loss", "val/epoch_loss", "test_loss", "test/loss"),
    "positives_per_row": ("positives_per_row", "monitor/positives_per_row",
                          "batch/positives_per_row", "train/positives_per_row"),
    "world_size": ("world_size", "train/world_size"),
    "flip_rate": ("flip_rate", "flip_share", "share_with_flip", "augment/flip_rate",
                  "train/flip_rate"),
    "effective_rank": ("monitor/effective_rank", "effective_rank", "train/effective_rank"),
    "mean_vector_margin": ("monitor/mean_vector_margin", "mean_vector_margin"),
    "relative_spread": ("monitor/relative_spread", "relative_spread"),
    "slot_cosine": ("slot_cosine", "monitor/slot_cosine", "train/slot_cosine"),
    "init_slot_cosine": ("init_slot_cosine", "monitor/init_slot_cosine"),
    "diversity": ("diversity", "loss/diversity", "train/diversity"),
    "similarity_gap": ("monitor/similarity_gap", "similarity_gap"),
    "lr": ("lr", "learning_rate", "train/lr", "lr-AdamW"),
}
"""The doctor's metric names and the columns each is found under, first match wins."""

NON_NEGATIVE_TERMS = frozenset({"loss", "val_loss"} | {
    term for entry in RECIPES for term, bound in entry.lower_bounds if bound >= 0.0})
"""Logged terms that can never go below 0 when computed right (each recipe declares them in
the recipes table, ``uncollapse.families.RECIPES``, for its loss guard). Any other column
whose name contains ``loss`` counts too."""

SIGNED_HINTS = ("uniformity", "gap", "margin", "cosine_to", "slot_cosine", "silhouette",
                "log_", "logit", "lr", "temperature")
"""Parts of names of columns that may legitimately go negative (never judged as loss terms)."""


def parse_map(values: str | list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """``"loss=train/loss,val_loss=valid/loss"`` (or several such strings) -> a dict.

    Raises:
        ToolError: an entry is not ``name=column`` or names one metric twice.
    """
    if not values:
        return {}
    if isinstance(values, str):
        values = [values]
    mapping: dict[str, str] = {}
    for text in values:
        for entry in filter(None, (part.strip() for part in text.split(","))):
            name, sep, column = entry.partition("=")
            if not sep or not name.strip() or not column.strip():
                raise ToolError(f"--map entry {entry!r} is not NAME=COLUMN (e.g. "
                                "loss=train/loss)")
            name = name.strip()
            if name in mapping:
                raise ToolError(f"--map names {name!r} twice")
            mapping[name] = column.strip()
    return mapping


def read_metrics(path: str | Path, *, step: str | None = None) -> dict[str, Curve]:
    """Every numeric metric logged in ``path`` (a JSONL or CSV file, or a TensorBoard
    directory) as ``{name: Curve}``; ``step`` names the step column (default: ``STEP_KEYS``).

    Raises:
        InputError: the file is missing, empty, unreadable, or holds no numeric metric.
    """
    path = Path(path)
    if path.is_dir():
        curves = _read_tensorboard(path)
    elif not path.exists():
        raise InputError(path, "no such file or directory; give a JSONL or CSV file of logged "
                         "metrics, or a TensorBoard log directory")
    elif path.suffix.lower() in (".csv", ".tsv"):
        curves = _read_csv(path, step, separator="\t" if path.suffix.lower() == ".tsv" else ",")
    else:
        curves = _read_json_lines(path, step)
    if not curves:
        raise InputError(path, "holds no numeric metric; log at least the loss (a number per "
                         "step)")
    return curves


def resolve(curves: dict[str, Curve], mapping: dict[str, str], where: str) -> dict[str, str]:
    """``{doctor's name: column}``: ``mapping`` first (each column must exist), then
    ``ALIASES``; names mapped to a column outside ``ALIASES`` are kept as given."""
    resolved: dict[str, str] = {}
    for name, column in mapping.items():
        if name == "step":
            continue
        if column not in curves:
            shown = ", ".join(sorted(curves)[:30])
            raise InputError(where, f"--map {name}={column}: no metric {column!r} was logged; "
                             f"the metrics are: {shown}")
        resolved[name] = column
    for name, candidates in ALIASES.items():
        if name not in resolved:
            found = next((c for c in candidates if c in curves), None)
            if found is not None:
                resolved[name] = found
    return resolved


def is_loss_term(name: str) -> bool:
    """Whether a logged column is a loss term that must stay at or above 0."""
    lowered = name.lower()
    leaf = lowered.rsplit("/", 1)[-1]
    if any(hint in leaf for hint in SIGNED_HINTS):
        return False
    return leaf in NON_NEGATIVE_TERMS or lowered in NON_NEGATIVE_TERMS or "loss" in leaf


# readers ------------------------------------------------------------------------------------
def _number(value) -> float | None:
    """A logged value as a float: numbers, and "nan"/"inf"/"-inf" strings; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "+inf",
                                                           "infinity", "-infinity"):
        return float(value.strip().lower().replace("infinity", "inf"))
    return None


def _read_json_lines(path: Path, step_key: str | None) -> dict[str, Curve]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start}); give "
                         "a JSONL or CSV metrics file") from exc
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror})") from exc
    series: dict[str, tuple[list[float], list[float]]] = {}
    row = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"not a JSON object per line ({exc.msg}); write one "
                             "object of metric values per line", line=number) from exc
        if not isinstance(record, dict):
            raise InputError(path, f"a JSON {type(record).__name__}, not an object of metric "
                             "values", line=number)
        keys = (step_key,) if step_key else STEP_KEYS
        step = next((_number(record[k]) for k in keys if k in record), None)
        if step_key and step is None:
            raise InputError(path, f"no numeric {step_key!r} (the --map step column)",
                             line=number)
        step = float(row) if step is None else step
        for key, value in record.items():
            if key in keys:
                continue
            number_value = _number(value)
            if number_value is not None:
                steps, values = series.setdefault(key, ([], []))
                steps.append(step)
                values.append(number_value)
        row += 1
    return {key: Curve(key, np.array(steps), np.array(values), path.name)
            for key, (steps, values) in series.items()}


def _read_csv(path: Path, step_key: str | None, *, separator: str) -> dict[str, Curve]:
    import polars as pl  # absent on GPU hosts; only CSV metrics need it

    try:
        frame = pl.read_csv(path, separator=separator, infer_schema_length=0)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable CSV with a header row ({exc})") from exc
    if frame.height == 0:
        return {}
    columns = [c.strip() for c in frame.columns]
    frame.columns = columns
    numeric = frame.select(pl.all().str.strip_chars().str.to_lowercase()
                           .str.replace("infinity", "inf")
                           .cast(pl.Float64, strict=False))
    keys = (step_key,) if step_key else STEP_KEYS
    step_column = next((k for k in keys if k in columns), None)
    if step_key and step_column is None:
        raise InputError(path, f"no column {step_key!r} (the --map step column); the columns "
                         f"are {', '.join(columns)}")
    steps = (numeric.get_column(step_column).to_numpy() if step_column
             else np.arange(frame.height, dtype=np.float64))
    curves = {}
    for name in columns:
        if name == step_column:
            continue
        column = numeric.get_column(name)
        logged = ~column.is_null().to_numpy()  # empty cells and text are not logged values
        if logged.any():
            curves[name] = Curve(name, steps[logged], column.to_numpy()[logged], path.name)
    return curves


def _read_tensorboard(directory: Path) -> dict[str, Curve]:
    files = sorted(directory.rglob("events.out.tfevents.*"))
    if not files:
        raise InputError(directory, "is a directory without TensorBoard event files "
                         "(events.out.tfevents.*); give the log directory of the run, or a "
                         "JSONL/CSV metrics file")
    require("tensorboard", "tensorboard", "reading TensorBoard event files")
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    curves: dict[str, Curve] = {}
    for folder in sorted({f.parent for f in files}):
        prefix = folder.relative_to(directory).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        accumulator = event_accumulator.EventAccumulator(
            str(folder), size_guidance={event_accumulator.SCALARS: 0,
                                        event_accumulator.TENSORS: 0})
        try:
            accumulator.Reload()
        except Exception as exc:  # a damaged record: name the folder, say what to do
            raise InputError(folder, f"TensorBoard event files cannot be read "
                             f"({type(exc).__name__}: {exc})") from exc
        tags = accumulator.Tags()
        for tag in tags.get("scalars", []):
            events = accumulator.Scalars(tag)
            curves[prefix + tag] = Curve(prefix + tag, np.array([e.step for e in events]),
                                         np.array([e.value for e in events]), folder.name)
        for tag in tags.get("tensors", []):
            events = accumulator.Tensors(tag)
            values = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
            if not values or any(np.size(v) != 1 or not np.issubdtype(np.asarray(v).dtype,
                                                                       np.number)
                                 for v in values):
                continue  # histograms, images, text: not a scalar curve
            curves[prefix + tag] = Curve(prefix + tag, np.array([e.step for e in events]),
                                         np.array([float(np.asarray(v).reshape(()))
                                                   for v in values]), folder.name)
    return curves


def describe(curves: dict[str, Curve]) -> dict:
    """How many metrics and logged points were read (for the report's stats)."""
    points = max((len(c) for c in curves.values()), default=0)
    last = max((float(c.steps[-1]) for c in curves.values() if len(c)), default=math.nan)
    return {"metrics": len(curves), "logged_points": points, "last_step": last}
