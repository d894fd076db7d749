"""``uncollapse report RUN_DIR``: PNG training curves of every loss term and monitor, a 2-D PCA
projection of predictions against targets, the recipe's own figure where it has one, and one
self-contained HTML page with all of them (images embedded as base64). Needs the ``plots``
extra (matplotlib).

A recipe's own figure comes from ``uncollapse.trainers.<recipe>.plots`` (flow: trajectories
from source to target; slots: images, reconstructions and per-slot masks), which gives its
section ``TITLE``, the ``FIGURE`` name of its PNG, ``check_arrays(arrays)`` and
``figure(arrays, project, seed=...)``. The recipe is the one ``config.json`` names.

``projection.npz`` is read and checked before anything is drawn, so a file that does not fit
its recipe's layout stops the report with the file named and nothing written.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from types import ModuleType

import matplotlib
import numpy as np

from uncollapse.atomic import atomic_path
from uncollapse.data.npz import NPZ_READ_FAILURES, why
from uncollapse.errors import InputError
from uncollapse.trainers.config import read_run_config
from uncollapse.trainers.recipe import recipe_module
from uncollapse.trainers.run_dir import RunDir

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["DPI", "curves", "pca_2d", "read_projection", "recipe_plots", "write_report"]

SKIP = {"step", "epoch"}


def curves(records: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{metric: (steps, values)}`` for every numeric metric of ``metrics.jsonl``."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in record.items():
            if key in SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            series.setdefault(key, []).append((record["step"], float(value)))
    return {k: (np.array([s for s, _ in v]), np.array([x for _, x in v]))
            for k, v in sorted(series.items())}


def pca_2d(*arrays: np.ndarray) -> list[np.ndarray]:
    """Project arrays [N_i, D] onto the first two principal axes of all of them together."""
    stacked = np.concatenate([a.astype(np.float64) for a in arrays])
    mean = stacked.mean(axis=0)
    _, _, vt = np.linalg.svd(stacked - mean, full_matrices=False)
    return [(a - mean) @ vt[:2].T for a in arrays]


DPI = 110
REWRITE = ("the training run writes it at its end: train again, or move it away to report the "
           "curves alone")


def _save(figure, path: Path, *, tight: bool = True) -> Path:
    """Write ``figure`` as PNG; ``tight=False`` keeps its size exactly (inches x ``DPI``)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI,
                       **({"bbox_inches": "tight"} if tight else {}))
    plt.close(figure)
    return path


def recipe_plots(run_dir: str | Path) -> ModuleType | None:
    """The ``plots`` module of the recipe that wrote ``run_dir``, or None where it has none
    (or ``config.json`` names no recipe of ``uncollapse.families.RECIPES``)."""
    try:
        return recipe_module(read_run_config(run_dir).get("recipe") or "", "plots")
    except ValueError:  # a run of a recipe this version does not know: curves only
        return None


def read_projection(path: Path, plots: ModuleType | None = None) -> dict[str, np.ndarray]:
    """The arrays of ``projection.npz``, checked against the layout of the recipe that wrote
    them (``plots``: that recipe's plots module, whose ``check_arrays`` knows it).

    Raises:
        InputError: unreadable, or arrays that do not fit together.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except NPZ_READ_FAILURES as exc:
        raise InputError(path, f"not a readable NPZ of plain arrays ({why(exc)}); {REWRITE}"
                         ) from exc
    if "pred" not in arrays or arrays["pred"].ndim != 2 or not len(arrays["pred"]):
        shape = list(arrays["pred"].shape) if "pred" in arrays else None
        raise InputError(path, f"expected a 'pred' array [rows >= 1, dim], found {shape}; "
                         f"{REWRITE}")
    if "target" in arrays and arrays["target"].shape != arrays["pred"].shape:
        raise InputError(path, f"target has shape {list(arrays['target'].shape)}; expected "
                         f"{list(arrays['pred'].shape)} like pred; {REWRITE}")
    for key in ("pred", "target"):
        if key in arrays and not np.isfinite(arrays[key]).all():
            raise InputError(path, f"{key} holds non-finite values (NaN or inf): the run's "
                             f"evaluation diverged, so there is nothing to project; {REWRITE}")
    try:
        if plots is not None:
            plots.check_arrays(arrays)
    except ValueError as exc:
        raise InputError(path, f"{exc}; {REWRITE}") from exc
    return arrays


def write_report(run_dir: str | Path, *, max_points: int = 2000, seed: int = 0) -> Path:
    """Write ``RUN_DIR/report/*.png`` and ``RUN_DIR/report/index.html``; return the page."""
    run = RunDir(run_dir)
    out = run.path / "report"
    projection = run.path / "projection.npz"
    plots = recipe_plots(run_dir)
    arrays = read_projection(projection, plots) if projection.exists() else None
    records = run.read_metrics()
    evaluation = json.loads(run.eval.read_text()) if run.eval.exists() else {}
    out.mkdir(exist_ok=True)
    sections: list[tuple[str, list[tuple[str, Path]]]] = []
    wide: set[str] = set()
    if arrays is not None and plots is not None:
        figure = plots.figure(arrays, pca_2d, seed=seed)
        sections.append((plots.TITLE, [
            (plots.FIGURE, _save(figure, out / f"{plots.FIGURE}.png", tight=False))]))
        wide.add(plots.FIGURE)
    images: list[tuple[str, Path]] = []
    for name, (steps, values) in curves(records).items():
        figure, axis = plt.subplots(figsize=(5, 3))
        axis.plot(steps, values)
        axis.set_xlabel("step")
        axis.set_title(name)
        axis.grid(alpha=0.3)
        images.append((name, _save(figure, out / f"curve-{name.replace('/', '_')}.png")))
    if arrays is not None:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.permutation(len(arrays["pred"]))[:max_points])
        parts = [arrays["pred"][pick]] + ([arrays["target"][pick]] if "target" in arrays else [])
        projected = pca_2d(*parts)
        figure, axis = plt.subplots(figsize=(5, 5))
        if len(projected) == 2:
            axis.scatter(*projected[1].T, s=6, alpha=0.5, label="targets")
        axis.scatter(*projected[0].T, s=6, alpha=0.5, label="predictions")
        axis.legend()
        axis.set_title("PCA of predictions and targets")
        images.append(("projection", _save(figure, out / "projection.png")))
    sections.append(("Training curves and projection", images))
    page = out / "index.html"
    with atomic_path(page) as tmp:
        tmp.write_text(_html(run.path.name, sections, evaluation, wide), encoding="utf-8")
    return page


def _html(title: str, sections: list[tuple[str, list[tuple[str, Path]]]],
          evaluation: dict, wide: set[str]) -> str:
    body = "".join(f"<h2>{html.escape(heading)}</h2>{_figures(images, wide)}\n"
                   for heading, images in sections)
    return ("<!doctype html><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;"
            "margin:.5em}img{max-width:480px}img.wide{max-width:100%}"
            "pre{background:#f4f4f4;padding:1em}</style>"
            f"<h1>Run {html.escape(title)}</h1><h2>Evaluation</h2>"
            f"<pre>{html.escape(json.dumps(evaluation, indent=2))}</pre>\n{body}")


def _figures(images: list[tuple[str, Path]], wide: set[str]) -> str:
    """Each PNG as an embedded ``<figure>``; the recipe's figure (not curves) at full width."""
    return "\n".join(
        f'<figure><img alt="{html.escape(name)}"'
        f'{" class=wide" if name in wide else ""} src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}"><figcaption>{html.escape(name)}'
        "</figcaption></figure>" for name, path in images)

