"""``uncollapse report RUN_DIR``: PNG training curves of every loss term and monitor, a 2-D PCA
projection of predictions against targets, and one self-contained HTML page with all of them
(images embedded as base64). Needs the ``plots`` extra (matplotlib)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib
import numpy as np

from uncollapse.atomic import atomic_path
from uncollapse.trainers.run_dir import RunDir

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402

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


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def write_report(run_dir: str | Path, *, max_points: int = 2000, seed: int = 0) -> Path:
    """Write ``RUN_DIR/report/*.png`` and ``RUN_DIR/report/index.html``; return the page."""
    run = RunDir(run_dir)
    out = run.path / "report"
    out.mkdir(exist_ok=True)
    images: list[tuple[str, Path]] = []
    for name, (steps, values) in curves(run.read_metrics()).items():
        figure, axis = plt.subplots(figsize=(5, 3))
        axis.plot(steps, values)
        axis.set_xlabel("step")
        axis.set_title(name)
        axis.grid(alpha=0.3)
        images.append((name, _save(figure, out / f"curve-{name.replace('/', '_')}.png")))
    projection = run.path / "projection.npz"
    if projection.exists():
        with np.load(projection, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
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
    evaluation = json.loads(run.eval.read_text()) if run.eval.exists() else {}
    page = out / "index.html"
    with atomic_path(page) as tmp:
        tmp.write_text(_html(run.path.name, images, evaluation), encoding="utf-8")
    return page


def _html(title: str, images: list[tuple[str, Path]], evaluation: dict) -> str:
    figures = "\n".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}"><figcaption>{html.escape(name)}'
        "</figcaption></figure>" for name, path in images)
    return ("<!doctype html><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;"
            "margin:.5em}img{max-width:480px}pre{background:#f4f4f4;padding:1em}</style>"
            f"<h1>Run {html.escape(title)}</h1><h2>Evaluation</h2>"
            f"<pre>{html.escape(json.dumps(evaluation, indent=2))}</pre>"
            f"<h2>Training curves and projection</h2>{figures}\n")
