"""The doctor's verdict as one self-contained HTML page: each cause with its confidence,
evidence, the check that rules it out and the fix, and the logged curves that show the
evidence as inline PNG images (matplotlib, extra ``plots``; imported only when there is a curve
to draw).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from uncollapse.atomic import atomic_path
from uncollapse.extras import require
from uncollapse.report import to_jsonable
from uncollapse.validators.doctor.diagnose import Diagnosis
from uncollapse.validators.doctor.evidence import Curve

__all__ = ["STYLE", "render_html", "write_html"]

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.found { color: #b00020; } .healthy { color: #1b7f3b; }
.bar { display: inline-block; height: .7rem; background: #b00020; vertical-align: middle; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
td, th { border-bottom: 1px solid #ddd; padding: .3rem .5rem; text-align: left;
         vertical-align: top; }
code { background: #f3f3f3; padding: 0 .2rem; } .muted { color: #666; }
img { max-width: 100%; }
"""


def write_html(report: Diagnosis, path: str | Path) -> Path:
    """Write the page for ``report`` to ``path`` (atomically); returns the path."""
    page = render_html(report)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return Path(path)


def render_html(report: Diagnosis) -> str:
    """The page as a string."""
    e = html.escape
    causes = report.stats.get("causes", [])
    if causes:
        verdict = (f'<span class="found">{len(causes)} cause'
                   f'{"s" if len(causes) != 1 else ""} found</span>')
    else:
        verdict = '<span class="healthy">HEALTHY: no cause found</span>'
    recipe = report.stats.get("recipe")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>doctor: "
             f"{e(report.target)}</title><style>{STYLE}</style></head><body>",
             f"<h1>doctor: <code>{e(report.target)}</code>"
             f"{f' ({e(recipe)} run)' if recipe else ''}</h1>",
             f"<p>{verdict}. Checked: {e(', '.join(report.stats.get('checked', [])))}.</p>"]
    figures = _figures(report.curves)
    for rank, cause in enumerate(causes, 1):
        width = max(1, round(cause["confidence"] * 200))
        parts.append(f"<h2>{rank}. <code>{e(cause['code'])}</code>: {e(cause['summary'])}</h2>"
                     f"<p>confidence {cause['confidence']:.2f} "
                     f"<span class='bar' style='width:{width}px'></span></p>")
        parts.append("<table><tr><th>source</th><th>evidence</th><th>value</th>"
                     "<th>threshold</th><th>weight</th></tr>")
        for item in cause["evidence"]:
            parts.append(f"<tr><td><code>{e(str(item['source']))}</code></td>"
                         f"<td>{e(item['says'])}</td><td>{e(_value(item.get('value')))}</td>"
                         f"<td>{e(str(item.get('threshold', '')))}</td>"
                         f"<td>{item['weight']:.2f}</td></tr>")
        parts.append("</table>")
        for name in dict.fromkeys(i["curve"] for i in cause["evidence"] if i.get("curve")):
            if name in figures:
                parts.append(figures.pop(name))
        parts.append(f"<p><b>Rules it out:</b> {e(cause['rule_out'])}</p>"
                     f"<p><b>Fix:</b> {e(cause['fix'])}</p>")
    if figures:
        parts.append("<h2>Curves</h2>" + "".join(figures.values()))
    considered = report.stats.get("considered", [])
    if considered:
        parts.append("<h2>Considered, below the verdict</h2><ul>")
        parts += [f"<li><code>{e(s['code'])}</code> (confidence {s['confidence']:.2f}): "
                  f"{e('; '.join(s['evidence']))}</li>" for s in considered]
        parts.append("</ul>")
    for note in report.stats.get("notes", []):
        parts.append(f"<p class='muted'>note: {e(note)}</p>")
    parts.append("<details><summary>the report as JSON</summary><pre>"
                 f"{e(json.dumps(to_jsonable(report.to_dict()), indent=2))}</pre></details>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _figures(curves: dict[str, Curve]) -> dict[str, str]:
    """``{curve name: <figure> with an inline PNG}``."""
    if not curves:
        return {}
    require("matplotlib", "plots", "the doctor's HTML report (--html)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {}
    for name, curve in curves.items():
        figure, axes = plt.subplots(figsize=(6.4, 2.6), dpi=100)
        finite = curve.finite
        axes.plot(curve.steps[finite], curve.values[finite], lw=1.4, color="#1f5aa6")
        if (~finite).any():
            top = float(np.max(curve.values[finite])) if finite.any() else 0.0
            axes.scatter(curve.steps[~finite], np.full((~finite).sum(), top), marker="x",
                         color="#b00020", label="NaN or inf")
            axes.legend(loc="best", fontsize=8)
        values = curve.values[finite]
        if values.size and values.min() > 0 and values.max() / values.min() > 1e3:
            axes.set_yscale("log")
        axes.set_xlabel("step")
        axes.set_title(f"{name} ({curve.source})", fontsize=9)
        axes.grid(alpha=0.3)
        buffer = io.BytesIO()
        figure.tight_layout()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        figures[name] = (f"<figure><img alt='{html.escape(name)}' "
                         f"src='data:image/png;base64,{data}'></figure>")
    return figures
