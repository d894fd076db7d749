"""The demo's last page: each broken-versus-fixed pair side by side, in one HTML file.

    python demo/page.py DEMO_OUT

reads what the demo sections left in DEMO_OUT (the JSON reports under `reports/`, the run
directories under `runs/` with the PNGs `uncollapse report` drew, the doctor's verdicts under
`doctor/`, the tables and arrays the checks read), draws the few pictures no command draws
(group sizes, positives per batch, a PCA of healthy and collapsed predictions, the README's
tour figure) into DEMO_OUT/page/, and writes DEMO_OUT/index.html. Images are linked
relatively, so the folder can be shared as it is. Whatever a section did not produce is shown
as "not run", never invented.
"""

from __future__ import annotations

import html
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PAGE_DIR = "page"
PER_BATCH = 50  # the batch size of the demo's sampler audits (demo/20-samplers.sh)
PER_GROUP = 5


@dataclass(frozen=True)
class Side:
    """One variant of a pair: its label, the JSON report with its verdict (a path in the demo
    folder), its pictures, the doctor's verdict file (by run name) and a few numbers worth
    reading."""

    label: str
    report: str | None = None
    images: tuple[str, ...] = ()
    doctor: str | None = None
    facts: Callable[[Path], list[str]] | None = None


@dataclass(frozen=True)
class Pair:
    title: str
    why: str
    broken: Side
    fixed: Side
    notes: list[str] = field(default_factory=list)


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _eval_facts(run: str, keys: dict[str, str], file: str = "eval.json"):
    def facts(out: Path) -> list[str]:
        evaluation = _json(out / "runs" / run / file)
        if evaluation is None:
            return []
        return [f"{label}: {evaluation[key]:.3f}" for key, label in keys.items()
                if isinstance(evaluation.get(key), (int, float))]
    return facts


def _stopped_facts(run: str):
    def facts(out: Path) -> list[str]:
        folder = out / "runs" / run
        if not (folder / "metrics.jsonl").exists():
            return []
        records = [line for line in (folder / "metrics.jsonl").read_text().splitlines()
                   if line.strip()]
        config = _json(folder / "config.json") or {}
        lines = [f"{len(records)} steps logged of the {config.get('steps', '?')} asked for"]
        if not (folder / "eval.json").exists():
            lines.append("stopped by the loss guard: no evaluation written")
        return lines
    return facts


def _report_stat(name: str, keys: dict[str, str]):
    def facts(out: Path) -> list[str]:
        report = _json(out / "reports" / name)
        stats = (report or {}).get("stats", {})
        lines = []
        for key, label in keys.items():
            value = stats.get(key)
            if isinstance(value, dict) and "mean" in value:
                lines.append(f"{label}: min {value['min']}, mean {value['mean']:.2f}, "
                             f"max {value['max']}")
            elif isinstance(value, float):
                lines.append(f"{label}: {value:.3f}")
            elif value is not None:
                lines.append(f"{label}: {value}")
        return lines
    return facts


PAIRS = [
    Pair("Caption grouping: group sizes",
         "Rows with the same match_id are positives of each other. With image_id taken from "
         "the row number every group holds one caption, so no batch can hold a positive pair.",
         Side("image_id = row number (a loop counter)", "reports/captions-row-ids.json",
              (f"{PAGE_DIR}/group-sizes-row-ids.png",)),
         Side("true image ids from the COCO JSON", "reports/captions.json",
              (f"{PAGE_DIR}/group-sizes.png",))),
    Pair("Positives per batch",
         f"What each batch of {PER_BATCH} holds: a shuffled loader (RandomSampler) rarely puts "
         "two captions of one image together; GroupedBatchSampler puts 5 of each, on every "
         "rank and in every epoch.",
         Side("shuffled loader (RandomSampler)", "reports/batches-random.json",
              (f"{PAGE_DIR}/positives-random.png",),
              facts=_report_stat("batches-random.json",
                                 {"batches_without_positives": "batches without a positive",
                                  "positives_per_row": "positives per row"})),
         Side("GroupedBatchSampler, 10 images x 5 captions", "reports/batches-grouped.json",
              (f"{PAGE_DIR}/positives-grouped.png",),
              facts=_report_stat("batches-grouped.json",
                                 {"batches_without_positives": "batches without a positive",
                                  "positives_per_row": "positives per row"}))),
    Pair("Sequence files: document ids",
         "Without doc_ids a sequence file cannot say which document a sample came from: no "
         "same-document hard negatives, no per-document batch cap.",
         Side("context_sequences and target_vectors only", "reports/sequences-no-doc-ids.json",
              doctor="lvm_no_doc_ids"),
         Side("built by uncollapse, with doc_ids", "reports/sequences.json")),
    Pair("Attribute flips",
         "An augmentation that flips an attribute half the time teaches the flow the identity "
         "map on the other half; AttributeFlipDataset flips 1-2 attributes of every sample.",
         Side("flips with probability 1/2", "reports/flips-half.json",
              facts=_report_stat("flips-half.json", {"share_with_flip": "share flipped"})),
         Side("AttributeFlipDataset in grouped batches", "reports/flips.json",
              facts=_report_stat("flips.json", {"share_with_flip": "share flipped"}))),
    Pair("Collapse in predictions",
         "Real sentence embeddings of the bundled COCO captions as targets: predicting each by "
         "another caption of its image, and by the targets' mean vector.",
         Side("the mean vector plus noise", "reports/embeddings-collapsed.json",
              (f"{PAGE_DIR}/pca-collapsed.png",)),
         Side("another caption of the same image", "reports/embeddings-healthy.json",
              (f"{PAGE_DIR}/pca-healthy.png",))),
    Pair("Contrastive training",
         "The pre-flight check refuses the row-number table (GROUPS_ALL_UNIQUE); forced, it "
         "trains without positives. Both runs are judged on the true grouping of the same "
         "held-out images.",
         Side("row-number ids, --force", "runs/contrastive_row_ids/preflight.json",
              ("runs/contrastive_row_ids/report/curve-loss.png",
               "runs/contrastive_row_ids/report/projection.png"),
              doctor="contrastive_row_ids",
              facts=_eval_facts("contrastive_row_ids",
                                {"caption_to_caption/recall@1": "recall@1",
                                 "similarity_gap": "similarity gap"}, "eval_correct.json")),
         Side("true ids", "runs/contrastive/preflight.json",
              ("runs/contrastive/report/curve-loss.png",
               "runs/contrastive/report/projection.png"),
              doctor="contrastive",
              facts=_eval_facts("contrastive", {"caption_to_caption/recall@1": "recall@1",
                                                "similarity_gap": "similarity gap"},
                                "eval_correct.json"))),
    Pair("Next-vector training",
         "The trainer refuses the sequence file without doc_ids before the first step; on the "
         "file with them it trains beside its baselines.",
         Side("no doc_ids: refused before training", "reports/sequences-no-doc-ids.json",
              doctor="lvm_no_doc_ids"),
         Side("with doc_ids", "runs/lvm/preflight.json",
              ("runs/lvm/report/curve-loss.png", "runs/lvm/report/projection.png"),
              doctor="lvm")),
    Pair("Attribute flow",
         "Prototypes taken from the flowed batch move with it: the loss falls while the outputs "
         "lose their target attributes. A bank of real prototypes keeps the targets fixed.",
         Side("prototypes of the flowed batch", "runs/flow_batch/preflight.json",
              ("runs/flow_batch/report/flow-trajectories.png",), doctor="flow_batch",
              facts=_eval_facts("flow_batch", {"flow/transfer_accuracy": "transfer accuracy",
                                               "flow/preservation": "unflipped preserved"})),
         Side("a bank of real prototypes", "runs/flow_bank/preflight.json",
              ("runs/flow_bank/report/flow-trajectories.png",), doctor="flow_bank",
              facts=_eval_facts("flow_bank", {"flow/transfer_accuracy": "transfer accuracy",
                                              "flow/preservation": "unflipped preserved"}))),
    Pair("Slot attention",
         "The plain mean cosine between slots rewards pushing them apart below 0: the loss "
         "guard stops that run. Clamped at 0 the diversity term stays in [0, 1].",
         Side("unclamped diversity term", "runs/slots_unclamped/preflight.json",
              ("runs/slots_unclamped/report/curve-diversity.png",), doctor="slots_unclamped",
              facts=_stopped_facts("slots_unclamped")),
         Side("clamped diversity term", "runs/slots_clamped/preflight.json",
              ("runs/slots_clamped/report/slots-grid.png",
               "runs/slots_clamped/report/curve-diversity.png"), doctor="slots_clamped",
              facts=_eval_facts("slots_clamped", {"fg_ari": "foreground ARI",
                                                  "slot_cosine": "slot cosine"}))),
]


# Pictures no command draws -----------------------------------------------------------------

def _figure(width: float = 5.0, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    return figure, figure.add_subplot()


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp)
    tmp.replace(path)


def _group_sizes(table: Path) -> np.ndarray:
    import polars as pl

    match_id = pl.read_parquet(table, columns=["match_id"])["match_id"].to_numpy()
    return np.unique(match_id, return_counts=True)[1]


def _draw_group_sizes(axis, sizes: np.ndarray, title: str) -> None:
    values, counts = np.unique(sizes, return_counts=True)
    axis.bar(values.astype(str), counts, color="#4c72b0")
    axis.set_xlabel("captions in the group (match_id)")
    axis.set_ylabel("groups")
    axis.set_title(title)


def _positives_per_batch(table: Path, sampler: str) -> np.ndarray:
    """Rows with another row of their group in the batch, for each batch of the epoch the
    demo's audit replayed (the same samplers, seed 0)."""
    import polars as pl

    from uncollapse.validators.batches.table import table_samplers

    match_id = pl.read_parquet(table, columns=["match_id"])["match_id"].to_numpy()
    per_group = PER_GROUP if sampler == "grouped" else None
    (batches,) = table_samplers(len(match_id), sampler, PER_BATCH, group_ids=match_id,
                                per_group=per_group, seed=0)
    counts = []
    for batch in batches:
        groups = match_id[np.asarray(batch)]
        _, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
        counts.append(int((sizes[inverse] > 1).sum()))
    return np.asarray(counts)


def _draw_positives(axis, counts: np.ndarray, title: str) -> None:
    axis.hist(counts, bins=np.arange(0, PER_BATCH + 2) - 0.5, color="#55a868")
    axis.set_xlim(-1, PER_BATCH + 1)
    axis.set_xlabel(f"rows of the batch of {PER_BATCH} that have a positive")
    axis.set_ylabel("batches")
    axis.set_title(title)


def _draw_pca(axis, predictions: np.ndarray, targets: np.ndarray, title: str) -> None:
    rows = np.random.default_rng(0).permutation(len(targets))[:1000]
    stacked = np.concatenate([targets[rows], predictions[rows]]).astype(np.float64)
    centred = stacked - stacked[: len(rows)].mean(axis=0)
    _, _, vt = np.linalg.svd(centred[: len(rows)], full_matrices=False)
    points = centred @ vt[:2].T
    axis.scatter(*points[: len(rows)].T, s=5, alpha=0.4, label="targets")
    axis.scatter(*points[len(rows):].T, s=5, alpha=0.4, label="predictions")
    axis.legend(loc="upper right")
    axis.set_title(title)


def draw_pictures(out: Path) -> list[str]:
    """Draw the page's own pictures from what the demo left; returns what could not be drawn."""
    page = out / PAGE_DIR
    page.mkdir(exist_ok=True)
    skipped = []
    tables = {"row-ids": out / "captions_positional.parquet", "": out / "captions.parquet"}
    sizes = {key: _group_sizes(path) for key, path in tables.items() if path.exists()}
    for key, title in (("row-ids", "image_id = row number"), ("", "true image ids")):
        if key in sizes:
            figure, axis = _figure()
            _draw_group_sizes(axis, sizes[key], title)
            _save(figure, page / f"group-sizes{'-' + key if key else ''}.png")
        else:
            skipped.append(f"group sizes ({title})")
    positives = {}
    if tables[""].exists():
        for sampler in ("random", "grouped"):
            positives[sampler] = _positives_per_batch(tables[""], sampler)
            figure, axis = _figure()
            _draw_positives(axis, positives[sampler], f"{sampler} sampler")
            _save(figure, page / f"positives-{sampler}.png")
    else:
        skipped.append("positives per batch")
    collapse = out / "collapse"
    if (collapse / "targets.npy").exists():
        targets = np.load(collapse / "targets.npy", allow_pickle=False)
        for name in ("healthy", "collapsed"):
            if (collapse / f"{name}.npy").exists():
                figure, axis = _figure(4.2, 4.2)
                _draw_pca(axis, np.load(collapse / f"{name}.npy", allow_pickle=False), targets,
                          f"PCA: {name} predictions")
                _save(figure, page / f"pca-{name}.png")
            else:
                skipped.append(f"PCA ({name})")
    else:
        skipped.append("PCA of predictions")
    if len(sizes) == 2 and positives:
        draw_tour(page / "tour.png", sizes, positives)
    return skipped


def draw_tour(path: Path, sizes: dict, positives: dict) -> None:
    """The README's figure: group sizes and positives per batch, broken left, fixed right."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 6), dpi=100)
    axes = figure.subplots(2, 2)
    _draw_group_sizes(axes[0, 0], sizes["row-ids"], "broken: image_id = row number")
    _draw_group_sizes(axes[0, 1], sizes[""], "fixed: true image ids")
    _draw_positives(axes[1, 0], positives["random"], "broken: shuffled loader")
    _draw_positives(axes[1, 1], positives["grouped"], "fixed: GroupedBatchSampler")
    _save(figure, path)


# The page ----------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2rem; } .lead { color: #555; margin-top: 0; }
section { border-top: 1px solid #ddd; padding: 1rem 0; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5rem; }
.side h3 { margin: 0.3rem 0; font-size: 1rem; }
.broken h3::before { content: "broken: "; color: #c0392b; }
.fixed h3::before { content: "fixed: "; color: #1e8449; }
.side img { max-width: 100%; height: auto; display: block; margin: 0.4rem 0;
            border: 1px solid #eee; }
.verdict { font-weight: bold; } .ok { color: #1e8449; } .invalid { color: #c0392b; }
.notrun { color: #888; font-style: italic; }
ul { margin: 0.3rem 0; padding-left: 1.2rem; } li { margin: 0.15rem 0; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def _verdict(out: Path, name: str | None) -> str:
    if name is None:
        return ""
    report = _json(out / name)
    if report is None:
        return f'<p class="notrun">check: not run (no {html.escape(name)})</p>'
    ok = bool(report.get("ok"))
    exit_code = report.get("exit_code", 0 if ok else 1)
    label = "OK" if ok else ("COULD NOT RUN" if exit_code == 2 else "INVALID")
    kind = html.escape(str(report.get("kind", "")))
    lines = [f'<p class="verdict {"ok" if ok else "invalid"}">{kind} check: {label} '
             f"(exit {exit_code})</p>"]
    findings = [f for f in report.get("findings", []) if f.get("severity") != "info"]
    if findings:
        lines.append("<ul>" + "".join(
            f"<li><code>{html.escape(f['code'])}</code> {html.escape(f['message'][:200])}</li>"
            for f in findings[:4]) + "</ul>")
    return "\n".join(lines)


def _doctor(out: Path, run: str | None) -> str:
    if run is None:
        return ""
    report = _json(out / "doctor" / f"{run}.json")
    if report is None:
        return '<p class="notrun">doctor: not run</p>'
    causes = report.get("stats", {}).get("causes", [])
    if not causes:
        return '<p class="verdict ok">doctor: HEALTHY</p>'
    top = causes[0]
    confidence = top.get("confidence")
    shown = f" ({confidence:.2f})" if isinstance(confidence, (int, float)) else ""
    return (f'<p class="verdict invalid">doctor: <code>{html.escape(str(top.get("code")))}</code>'
            f"{shown}</p><p>{html.escape(str(top.get('fix', ''))[:300])}</p>")


def _side(out: Path, side: Side, kind: str) -> str:
    parts = [f'<div class="side {kind}"><h3>{html.escape(side.label)}</h3>']
    for image in side.images:
        if (out / image).exists():
            parts.append(f'<img src="{html.escape(image)}" alt="{html.escape(image)}">')
        else:
            parts.append(f'<p class="notrun">not run: {html.escape(image)}</p>')
    parts.append(_verdict(out, side.report))
    facts = side.facts(out) if side.facts else []
    if facts:
        parts.append("<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in facts) + "</ul>")
    parts.append(_doctor(out, side.doctor))
    parts.append("</div>")
    return "\n".join(p for p in parts if p)


def page_html(out: Path) -> str:
    sections = []
    for pair in PAIRS:
        sections.append(
            f"<section><h2>{html.escape(pair.title)}</h2><p>{html.escape(pair.why)}</p>"
            f'<div class="pair">{_side(out, pair.broken, "broken")}'
            f'{_side(out, pair.fixed, "fixed")}</div></section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>uncollapse demo: broken next to fixed</title>"
            f"<style>{CSS}</style></head><body>"
            "<h1>uncollapse demo: broken next to fixed</h1>"
            '<p class="lead">Each pair of <code>make demo</code>, the broken variant on the left '
            "and the fixed one on the right, with the verdicts of its checks.</p>"
            + "\n".join(sections) + "</body></html>\n")


def write_page(out: str | Path) -> Path:
    """Draw the page's pictures and write ``out/index.html``; returns the page."""
    out = Path(out)
    draw_pictures(out)
    page = out / "index.html"
    tmp = out / ".index.html.tmp"
    tmp.write_text(page_html(out), encoding="utf-8")
    tmp.replace(page)
    return page


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python demo/page.py DEMO_OUT  (the folder make demo wrote)")
    print(f"wrote {write_page(sys.argv[1])}")
