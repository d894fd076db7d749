"""``diagnose_run``: from a run's artifacts and its data, the ranked causes of its collapse.

The evidence comes from three places: the run itself (a run directory of ``uncollapse train``,
or the logged metrics of a run of any framework), its data files (named in ``config.json``,
or given), and its outputs (the evaluation's held-out outputs, or a file of embeddings). Every
check the rest of the library has is run on whatever is there; ``rules.py`` weighs what they
found per cause; the report ranks the causes by confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uncollapse.errors import InputError, ToolError
from uncollapse.report import Finding, Report, text_console
from uncollapse.validators.doctor import probes
from uncollapse.validators.doctor.causes import CAUSES, HEALTHY, ROOT_FIRST, SYMPTOMS
from uncollapse.validators.doctor.evidence import FOUND, Curve, Evidence, Suspect
from uncollapse.validators.doctor.metrics_io import describe, parse_map, read_metrics, resolve
from uncollapse.validators.doctor.rules import RULES
from uncollapse.validators.doctor.run_dir import read_run

DEFAULT_BATCH_SIZE = 256
DEFAULT_EXCLUDE_WINDOW = 1
OUTPUT_KEYS = {"pred": ("pred", "outputs", "predictions", "embeddings"),
               "target": ("target", "targets"), "labels": ("labels", "groups")}
FLIP_KEYS = (("source_attributes", "target_attributes"), ("source", "target"))


@dataclass
class Diagnosis(Report):
    """The doctor's ``Report`` (kind ``doctor``): findings are the causes found, most
    confident first (or one ``HEALTHY`` info finding); ``stats["causes"]`` holds each with
    its evidence, the check that rules it out, the fix and the confidence, and
    ``stats["considered"]`` the suspects that stayed below the verdict. ``curves`` holds the
    logged curves the evidence names (drawn by the HTML page; not part of the JSON)."""

    curves: dict[str, Curve] = field(default_factory=dict, repr=False)

    def render_text(self, console=None, *, strict: bool = False) -> None:
        render_text(self, console)


def diagnose_run(run_dir: str | Path | None = None, *, metrics: str | Path | None = None,
                 mapping: dict[str, str] | str | None = None,
                 captions: str | Path | None = None, sequences: str | Path | None = None,
                 attributes: str | Path | None = None, scenes: str | Path | None = None,
                 embeddings: str | Path | None = None, flips: str | Path | None = None,
                 batch_size: int | None = None, world_size: int | None = None,
                 exclude_window: int | None = None) -> Diagnosis:
    """Diagnose a training run: the causes its evidence points at, ranked, or HEALTHY.

    Args:
        run_dir: a run directory of ``uncollapse train`` (config.json, preflight.json,
            metrics.jsonl, eval.json, projection.npz, checkpoints/); the data files its
            config names are checked when they are still there.
        metrics: logged metrics of a run of any framework: a JSONL or CSV file or a
            TensorBoard log directory (with ``run_dir``: read instead of its metrics.jsonl).
        mapping: the doctor's metric names to the run's columns, ``{"loss": "train/loss"}``
            or ``"loss=train/loss,val_loss=valid/loss"``.
        captions, sequences, attributes, scenes: the run's data files (override the ones
            its config names).
        embeddings: the model's outputs: ``.npy`` [N, D] (or slots [N, S, D]), or ``.npz``
            with ``pred`` and optional ``target``, ``labels``, and ``source_attributes`` /
            ``target_attributes`` of the samples (an epoch of the augmentation).
        flips: ``.npz`` with ``source_attributes`` and ``target_attributes`` [N, A] recorded
            from one epoch of an attribute-flip augmentation.
        batch_size, world_size: the run's batch size and number of ranks (default: from
            config.json or logged ``world_size``; 256 and 1).
        exclude_window: the hard-negative exclusion window (default: config or 1).

    Returns:
        A ``Diagnosis`` (a ``Report`` of kind ``doctor``): exit code 1 when a cause is found,
        0 when the run is healthy. A run that cannot be read raises ``ToolError``.

    Example:
        >>> report = diagnose_run("runs/contrastive_row_ids")
        >>> report.codes()
        ['NO_POSITIVES_IN_BATCH']
    """
    mapping = parse_map(mapping) if isinstance(mapping, str) else dict(mapping or {})
    given = {"captions": captions, "sequences": sequences, "attributes": attributes,
             "scenes": scenes}
    if run_dir is None and metrics is None and not any(given.values()) and \
            embeddings is None and flips is None:
        raise ToolError("nothing to diagnose: give a run directory, --metrics FILE, or data "
                        "files (--captions, --sequences, --attributes, --scenes, --embeddings, "
                        "--flips)")
    if run_dir is not None:
        evidence = read_run(run_dir)
    else:
        first = metrics or next((v for v in given.values() if v), None) or embeddings or flips
        evidence = Evidence(target=str(first))
    if metrics is not None:
        evidence.curves = read_metrics(metrics, step=mapping.get("step"))
        evidence.notes = [n for n in evidence.notes if not n.startswith("metrics.jsonl")]
    evidence.aliases = resolve(evidence.curves, mapping, str(metrics or run_dir or ""))
    if batch_size is not None:
        evidence.settings["batch_size"] = batch_size
    if world_size is not None:
        evidence.settings["world_size"] = world_size
    if exclude_window is not None:
        evidence.settings["exclude_window"] = exclude_window
    _check_data(evidence, {k: v for k, v in given.items() if v})
    _check_outputs(evidence, embeddings)
    if flips is not None:
        _check_flips(evidence, flips)
    if evidence.curves:
        evidence.checks.append("metrics")
    if evidence.evaluation is not None:
        evidence.checks.append("evaluation")
    if evidence.checkpoint is not None:
        evidence.checks.append("checkpoint")
    if evidence.preflight is not None:
        evidence.checks.append("preflight")
    if not evidence.checks:
        raise ToolError(f"{evidence.target}: nothing the doctor can judge was found (no "
                        "metrics, evaluation, checkpoint or data file)")
    return _report(evidence, [s for s in (rule(evidence) for rule in RULES) if s is not None])


# evidence from data files -------------------------------------------------------------------
def _check_data(ev: Evidence, given: dict[str, str | Path]) -> None:
    """Run every data check on the run's data files (given ones override config's)."""
    named = dict(ev.settings.get("data", {}))
    paths = {**{k: v for k, v in named.items() if k in ("captions", "sequences", "attributes",
                                                        "scenes")},
             **{k: str(v) for k, v in given.items()}}
    ev.settings["data"] = {**named, **paths}
    for family, path in paths.items():
        if family not in given and not Path(path).exists():
            ev.notes.append(f"the {family} file named in config.json is gone ({path}): its "
                            "checks were skipped")
            continue
        try:
            _check_family(ev, family, path)
        except ToolError as exc:
            if family in given:
                raise
            ev.notes.append(f"the {family} file named in config.json could not be checked: "
                            f"{exc}")
            continue
        ev.checks.append(family)
    for key in ("text_features", "embeddings"):
        path = named.get(key)
        if path and Path(path).exists() and ev.recipe in ("contrastive", "flow"):
            try:
                ev.measures["features"] = {"path": path, **probes.feature_rank(path)}
            except ToolError as exc:
                ev.notes.append(f"the input features {path} could not be measured: {exc}")


def _check_family(ev: Evidence, family: str, path: str) -> None:
    if family == "captions":
        batch = int(ev.settings.get("batch_size") or DEFAULT_BATCH_SIZE)
        rules, grouping = probes.check_captions(path, batch_size=batch)
        ev.data["captions"], ev.data["captions_grouping"] = rules, grouping
        histogram = grouping.stats.get("group_size_histogram", {})
        groups = int(sum(histogram.values()))
        if groups:
            ev.measures["captions"] = {
                "rows": int(grouping.stats["rows"]), "groups": groups,
                "singleton_share": histogram.get(1, 0) / groups,
                "share_batches_without_positive":
                    grouping.stats.get("share_batches_without_positive")}
    elif family == "sequences":
        window = ev.settings.get("exclude_window", ev.config.get("exclude_window"))
        window = DEFAULT_EXCLUDE_WINDOW if window is None else int(window)
        rules, measures = probes.check_sequences(path, exclude_window=window)
        ev.data["sequences"], ev.measures["sequences"] = rules, measures
    elif family == "attributes":
        ev.data["attributes"] = probes.validate_attributes(path)
    elif family == "scenes":
        ev.data["scenes"] = probes.validate_scenes(path)


# evidence from outputs ----------------------------------------------------------------------
def _check_outputs(ev: Evidence, embeddings: str | Path | None) -> None:
    """``diagnose embeddings`` on the held-out outputs (or the given file of them)."""
    arrays = ev.outputs
    if embeddings is not None:
        path = Path(embeddings)
        arrays = ({"pred": probes.load_vectors(path, "embeddings")} if path.suffix == ".npy"
                  else probes.load_arrays(path))
        ev.outputs, ev.outputs_source = arrays, path.name
        if not any(k in arrays for k in OUTPUT_KEYS["pred"]):
            flip_pair = _flip_pair(arrays)
            if flip_pair is None:
                raise InputError(path, f"holds {sorted(arrays)}; expected 'pred' (the model's "
                                 "outputs), optionally 'target' and 'labels'")
    if not arrays:
        return
    pred = _first(arrays, "pred")
    if pred is None:
        if _flip_pair(arrays) is not None:
            _check_flips(ev, None, arrays=arrays, name=ev.outputs_source or "embeddings")
        return
    target = None if ev.recipe in ("contrastive", "flow", "slots") else _first(arrays, "target")
    if ev.recipe == "slots" and pred.ndim == 2:
        slots = int(ev.config.get("slots") or 0)
        if slots >= 2 and len(pred) % slots == 0:
            pred = pred.reshape(-1, slots, pred.shape[1])
    where = ev.outputs_source or "outputs"
    if target is not None and target.shape != pred.shape:
        raise InputError(where, f"'target' has shape {target.shape} but 'pred' has "
                         f"{pred.shape}; they must be paired row for row")
    try:
        ev.data["outputs"] = probes.diagnose_outputs(pred, target, name=where)
    except ToolError as exc:
        raise InputError(where, str(exc)) from exc
    ev.checks.append("outputs")
    if _flip_pair(arrays) is not None:
        _check_flips(ev, None, arrays=arrays, name=where)


def _first(arrays: dict, kind: str) -> np.ndarray | None:
    for key in OUTPUT_KEYS[kind]:
        if key in arrays:
            return np.asarray(arrays[key])
    return None


def _flip_pair(arrays: dict) -> tuple[np.ndarray, np.ndarray] | None:
    for source, target in FLIP_KEYS:
        if source in arrays and target in arrays:
            return np.asarray(arrays[source]), np.asarray(arrays[target])
    return None


def _check_flips(ev: Evidence, path: str | Path | None, *, arrays: dict | None = None,
                 name: str | None = None) -> None:
    if path is not None:
        arrays, name = probes.load_arrays(path), Path(path).name
    pair = _flip_pair(arrays)
    if pair is None:
        raise InputError(name, f"holds {sorted(arrays)}; expected 'source_attributes' and "
                         "'target_attributes' [N, A] of one epoch of the augmentation")
    source, target = pair
    if source.shape != target.shape or source.ndim != 2 or len(source) == 0:
        raise InputError(name, f"source {source.shape} and target {target.shape} attributes "
                         "must both be [N, A] with N >= 1")
    ev.data["flips"] = probes.audit_recorded_flips(source, target, name=name)
    ev.checks.append("flips")


# the report ---------------------------------------------------------------------------------
def _report(ev: Evidence, suspects: list[Suspect]) -> Diagnosis:
    order = {cause.name: index for index, cause in enumerate(CAUSES)}
    root = any(s.cause.name not in SYMPTOMS and s.confidence >= ROOT_FIRST for s in suspects)
    ranked = sorted(suspects, key=lambda s: (root and s.cause.name in SYMPTOMS,
                                             -round(s.confidence, 6), order[s.cause.name]))
    found = [s for s in ranked if s.confidence >= FOUND]
    below = [s for s in ranked if s.confidence < FOUND]
    findings = [_finding(s) for s in found]
    if not found:
        findings = [HEALTHY.finding(
            f"no cause found in {', '.join(ev.checks)}"
            + (f" ({len(below)} suspect(s) below the verdict, see stats)" if below else ""),
            count=0)]
    stats: dict = {"source": "run directory" if ev.config else "metrics and data",
                   "recipe": ev.recipe, "checked": ev.checks,
                   "causes": [s.to_dict() for s in found],
                   "considered": [{"code": s.cause.name, "confidence": round(s.confidence, 3),
                                   "evidence": [x.says for x in s.counted]} for s in below]}
    if ev.curves:
        stats["metrics"] = describe(ev.curves)
    if ev.checkpoint:
        stats["checkpoint"] = ev.checkpoint
    if ev.notes:
        stats["notes"] = ev.notes
    return Diagnosis(ev.target, "doctor", findings, stats,
                     curves={name: ev.curves[name] for name in _curves_shown(ev, found)})


def _finding(suspect: Suspect) -> Finding:
    counted = suspect.counted
    best = counted[0].says
    return suspect.cause.code.finding(
        f"{suspect.cause.summary} (confidence {suspect.confidence:.2f}): {best}",
        count=len(counted), examples=[s.to_dict() for s in counted],
        hint=suspect.fix or suspect.cause.code.fix, severity="error")


def _curves_shown(ev: Evidence, found: list[Suspect]) -> list[str]:
    """The curves the HTML page draws: each cause's evidence curves, then the loss."""
    names: list[str] = []
    for suspect in found:
        names += [s.curve for s in suspect.counted if s.curve and s.curve not in names]
    loss = ev.aliases.get("loss")
    if loss and loss in ev.curves and loss not in names:
        names.append(loss)
    return [n for n in names if n in ev.curves]


def render_text(report: Report, console=None) -> None:
    """The diagnosis for a person: each cause, its confidence, evidence, rule-out and fix."""
    from rich.markup import escape

    console = console or text_console()
    causes = report.stats.get("causes", [])
    verdict = (f"[red]{len(causes)} cause{'s' if len(causes) != 1 else ''} found[/red]"
               if causes else "[green]HEALTHY[/green]")
    recipe = report.stats.get("recipe")
    console.print(f"[bold]doctor[/bold] {escape(report.target)}"
                  f"{f' ({recipe} run)' if recipe else ''}: {verdict}", highlight=False)
    console.print(f"  checked: {', '.join(report.stats.get('checked', []))}", highlight=False)
    for rank, cause in enumerate(causes, 1):
        console.print(f"  [red]{rank}. {cause['code']}[/red]  confidence "
                      f"{cause['confidence']:.2f}: {escape(cause['summary'])}", highlight=False)
        for item in cause["evidence"]:
            console.print(f"       - {escape(item['source'])}: {escape(item['says'])}",
                          highlight=False, soft_wrap=True)
        console.print(f"     rules it out: {escape(cause['rule_out'])}", highlight=False,
                      soft_wrap=True)
        console.print(f"     fix: {escape(cause['fix'])}", highlight=False, soft_wrap=True)
    if not causes:
        for finding in report.findings:
            console.print(f"  [cyan]{finding.code}[/cyan]: {escape(finding.message)}",
                          highlight=False)
    for suspect in report.stats.get("considered", []):
        console.print(f"  considered {suspect['code']} (confidence "
                      f"{suspect['confidence']:.2f}): "
                      f"{escape('; '.join(suspect['evidence']))}", highlight=False,
                      soft_wrap=True)
    for note in report.stats.get("notes", []):
        console.print(f"  note: {escape(note)}", highlight=False, soft_wrap=True)


def summary_line(report: Report) -> str:
    """One line: the top cause and its confidence, or HEALTHY (for tables and the demo)."""
    causes = report.stats.get("causes", [])
    if not causes:
        return "HEALTHY"
    return f"{causes[0]['code']} ({causes[0]['confidence']:.2f})"


__all__ = ["Diagnosis", "diagnose_run", "render_text", "summary_line"]
