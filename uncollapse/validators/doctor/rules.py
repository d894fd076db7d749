"""One judgement per cause: the facts of a run's evidence that point at it, each weighted.

A rule reads only ``Evidence`` (the run's artifacts and the reports of the checks on its data)
and returns a ``Suspect`` with its signals, or None when nothing points at the cause. Weights
say how strongly one fact implies the cause on its own: a direct observation of the cause
(a loss term below 0, a data file without document ids) weighs 0.7 to 0.9; a symptom that
other causes share, or the configuration that makes a cause possible, 0.2 to 0.5, so it needs
a second fact to reach the verdict (``FOUND``). docs/doctor.md lists every signal with its
weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from uncollapse.validators.doctor.causes import CAUSE_OF
from uncollapse.validators.doctor.evidence import Curve, Evidence, Suspect
from uncollapse.validators.doctor.metrics_io import is_loss_term

__all__ = [
    "EXPLODE", "EXPLODE_HARD", "FALLBACK_SHARE", "FLIP_SHARE", "LOW_RANK_FRACTION",
    "MEAN_VECTOR_MARGIN", "NO_POSITIVES", "OVERFIT_LATE", "OVERFIT_RISE", "POINT_SPREAD",
    "RANK_FALL", "RANK_FRACTION", "RANK_RATIO", "RULES", "SINGLETON_SHARE", "SLOT_COSINE",
    "SLOT_SPREAD", "TRANSFER_SHARE", "WEIGHT_HUGE", "WEIGHT_LARGE", "dimensional_collapse",
    "divergence", "mean_vector_collapse", "negative_loss_term", "no_doc_ids", "no_hard_negatives",
    "no_positives_in_batch", "normalised_decoder_input", "overfitting", "partial_augmentation",
    "positives_split_across_ranks", "prototypes_from_outputs", "slots_identical", "split_leakage",
    "world_size"
]

SINGLETON_SHARE = 0.9       # groups of one row: no positives (as diagnose match-ids)
NO_POSITIVES = 0.01         # logged positives per row at or below this: none
FALLBACK_SHARE = 0.5        # samples without a same-document negative outside the window
MEAN_VECTOR_MARGIN = 0.02   # cos(output, target) minus the mean-target baseline's
POINT_SPREAD = 0.005        # total variance / mean squared norm: outputs are one direction
RANK_FRACTION = 0.15        # effective rank / min(rows, dim)
LOW_RANK_FRACTION = 0.3     # ... a weaker sign below this
RANK_RATIO = 0.25           # outputs' effective rank / targets'
RANK_FALL = 0.5             # effective rank at the end / its highest early reading
SLOT_COSINE = 0.9           # mean cosine between an image's slots
SLOT_SPREAD = 0.1           # within-image slot spread / spread across the batch
FLIP_SHARE = 0.99           # share of samples flipped
TRANSFER_SHARE = 0.5        # flow transfer accuracy / steering baseline's
OVERFIT_RISE = 0.1          # validation loss above its minimum, relative
OVERFIT_LATE = 0.8          # the minimum before this share of the run
EXPLODE = 10.0              # loss above its first value, times
EXPLODE_HARD = 100.0
WEIGHT_LARGE = 100.0        # largest weight magnitude; trained models keep theirs far below
WEIGHT_HUGE = 1e3


def world_size(ev: Evidence) -> int:
    """Ranks the run trained on: the command line or config, else a logged ``world_size``."""
    given = ev.settings.get("world_size")
    if given:
        return int(given)
    curve = ev.curve("world_size")
    if curve is not None and curve.finite.any():
        return int(np.nanmax(curve.values[curve.finite]))
    return 1


def _path(ev: Evidence, key: str) -> str:
    return str(ev.settings.get("data", {}).get(key, key))


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.4g}"


def _step(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and value == int(value) else _fmt(value)


def _loss_like(ev: Evidence) -> list[Curve]:
    """The total loss and every logged term that must stay at or above 0."""
    return [c for name, c in sorted(ev.curves.items()) if is_loss_term(name) and len(c)]


def _grouping(ev: Evidence) -> dict | None:
    return ev.measures.get("captions")


def _finding(codes: dict[str, dict], code: str) -> dict | None:
    return codes.get(code)


# causes of the batches ----------------------------------------------------------------------
def no_positives_in_batch(ev: Evidence) -> Suspect | None:
    suspect = Suspect(CAUSE_OF["NO_POSITIVES_IN_BATCH"])
    ranks = world_size(ev)
    grouping = _grouping(ev)
    captions = _path(ev, "captions")
    if grouping is not None and grouping["singleton_share"] >= SINGLETON_SHARE:
        suspect.add(0.8, captions, f"{grouping['singleton_share']:.1%} of the "
                    f"{grouping['groups']} groups (match_id) hold a single row, so no caption "
                    "has a positive in any batch", value=grouping["singleton_share"],
                    threshold=f">= {SINGLETON_SHARE}", fact="groups")
    positional = _finding(ev.data_codes("captions"), "IMAGE_ID_POSITIONAL")
    if positional:
        suspect.add(0.4, captions, f"IMAGE_ID_POSITIONAL: {positional['message']}",
                    fact="positional")
    preflight = ev.preflight_codes()
    forced = " and the run was forced past it (force: true)" if ev.config.get("force") else ""
    if "GROUPS_ALL_UNIQUE" in preflight:
        suspect.add(0.7, "preflight.json", f"the pre-flight check found GROUPS_ALL_UNIQUE "
                    f"({preflight['GROUPS_ALL_UNIQUE']['message']}){forced}", fact="groups")
    if "IMAGE_ID_POSITIONAL" in preflight:
        suspect.add(0.4, "preflight.json", f"the pre-flight check found IMAGE_ID_POSITIONAL"
                    f"{forced}", fact="positional")
    loss = ev.curve("loss")
    if loss is not None and len(loss) >= 3 and ev.recipe in (None, "contrastive"):
        finite = loss.values[loss.finite]
        zero = float((np.abs(finite) < 1e-12).mean()) if finite.size else 0.0
        if zero >= 0.9:
            suspect.add(0.6 if ranks <= 1 else 0.25, loss.source,
                        f"the loss is exactly 0 at {zero:.0%} of {len(loss)} logged steps: no "
                        "anchor had a positive (a multi-positive InfoNCE averages over none)",
                        value=zero, threshold=">= 0.9", curve=loss.name, fact="loss")
        elif not np.isfinite(loss.values[0]) and (~loss.finite).mean() >= 0.9:
            suspect.add(0.35 if ranks <= 1 else 0.15, loss.source,
                        "the loss is NaN from the first logged step: a loss that divides by "
                        "the number of positives (SupCon) found none", curve=loss.name,
                        fact="loss")
    positives = ev.curve("positives_per_row")
    if positives is not None and positives.finite.any():
        median = float(np.median(positives.values[positives.finite]))
        if median <= NO_POSITIVES:
            suspect.add(0.7 if ranks <= 1 else 0.2, positives.source,
                        f"logged positives per row: median {_fmt(median)}",
                        value=median, threshold=f"<= {NO_POSITIVES}", curve=positives.name,
                        fact="positives")
    if not suspect.signals:
        return None
    if grouping is not None or "GROUPS_ALL_UNIQUE" in preflight:
        suspect.fix = (f"Rebuild {captions} from its source with `uncollapse build captions "
                       f"SOURCE -o {captions}` (image_id from the source's own identifiers), "
                       "check it with `uncollapse validate captions`, and train again without "
                       "--force.")
    return suspect


def positives_split_across_ranks(ev: Evidence) -> Suspect | None:
    ranks = world_size(ev)
    if ranks <= 1:
        return None
    grouping = _grouping(ev)
    if grouping is not None and grouping["singleton_share"] >= SINGLETON_SHARE:
        return None  # the table has no positives to split: NO_POSITIVES_IN_BATCH
    suspect = Suspect(CAUSE_OF["POSITIVES_SPLIT_ACROSS_RANKS"])
    positives = ev.curve("positives_per_row")
    if positives is not None and positives.finite.any():
        median = float(np.median(positives.values[positives.finite]))
        if median <= NO_POSITIVES:
            suspect.add(0.7, positives.source, f"each rank's batches held a median "
                        f"{_fmt(median)} positives per row on {ranks} ranks",
                        value=median, threshold=f"<= {NO_POSITIVES}", curve=positives.name)
    loss = ev.curve("loss")
    if loss is not None and len(loss) >= 3:
        finite = loss.values[loss.finite]
        zero = float((np.abs(finite) < 1e-12).mean()) if finite.size else 0.0
        if zero >= 0.9:
            suspect.add(0.55, loss.source, f"the loss is exactly 0 at {zero:.0%} of logged "
                        f"steps on {ranks} ranks: no rank's batch held a positive pair",
                        value=zero, curve=loss.name, fact="loss")
        elif not np.isfinite(loss.values[0]) and (~loss.finite).mean() >= 0.9:
            suspect.add(0.5, loss.source, "the loss is NaN from the first logged step on "
                        f"{ranks} ranks: the per-rank loss found no positive pair",
                        curve=loss.name, fact="loss")
    if not suspect.signals:
        return None
    if grouping is not None:
        suspect.add(0.3, _path(ev, "captions"), f"the table is grouped right ("
                    f"{grouping['groups']} groups, {grouping['rows'] / grouping['groups']:.1f} "
                    "rows each on average), so the positives were lost after the data")
    return suspect


# causes of the sequence file ----------------------------------------------------------------
def no_doc_ids(ev: Evidence) -> Suspect | None:
    sequences = ev.measures.get("sequences")
    if sequences is None:
        return None
    suspect = Suspect(CAUSE_OF["NO_DOC_IDS"])
    path = _path(ev, "sequences")
    missing = _finding(ev.data_codes("sequences"), "MISSING_DOC_IDS")
    if missing:
        suspect.add(0.9, path, f"MISSING_DOC_IDS: {missing['message']}")
    elif sequences.get("has_doc_ids"):
        samples, documents = sequences["samples"], sequences["documents"]
        if samples >= 4 and documents == samples:
            suspect.add(0.8, path, f"every sample is its own document ({documents} doc ids "
                        f"for {samples} samples): the ids are a row counter",
                        value=documents, threshold=f"< {samples}")
        elif samples >= 4 and documents == 1:
            suspect.add(0.75, path, f"one document id for all {samples} samples: a "
                        "placeholder", value=documents, threshold="> 1")
    if not suspect.signals:
        return None
    suspect.fix = (f"Rebuild {path} with `uncollapse build chunks SOURCE -o chunks.parquet` and "
                   f"`uncollapse build sequences chunks.parquet --vectors VECTORS -o {path}`, "
                   "which record each target's document.")
    return suspect


def no_hard_negatives(ev: Evidence) -> Suspect | None:
    sequences = ev.measures.get("sequences")
    if not sequences or "fallback_share" not in sequences:
        return None
    samples, documents = sequences["samples"], sequences["documents"]
    if documents in (1, samples):
        return None  # placeholder ids: NO_DOC_IDS
    share = sequences["fallback_share"]
    if share < FALLBACK_SHARE:
        return None
    suspect = Suspect(CAUSE_OF["NO_HARD_NEGATIVES"])
    window = sequences["exclude_window"]
    suspect.add(0.35 + 0.5 * share, _path(ev, "sequences"),
                f"{share:.0%} of samples have no other target of their document outside "
                f"+-{window} positions (documents hold a median "
                f"{sequences['samples_per_document']:g} samples): their hard negative falls "
                f"back to a neighbour or another document ({sequences.get('fallback')})",
                value=share, threshold=f">= {FALLBACK_SHARE}")
    suspect.fix = ("Chunk whole source documents into one document each (not paragraphs or "
                   "pages), or lower exclude_window (now "
                   f"{window}); rebuild with `uncollapse build chunks` and "
                   "`uncollapse build sequences`.")
    return suspect


# causes seen in the outputs -----------------------------------------------------------------
def _outputs(ev: Evidence) -> dict | None:
    report = ev.data.get("outputs")
    return None if report is None else report.stats


def mean_vector_collapse(ev: Evidence) -> Suspect | None:
    if ev.recipe == "slots":
        return None
    suspect = Suspect(CAUSE_OF["MEAN_VECTOR_COLLAPSE"])
    evaluation = ev.evaluation or {}
    model, baseline = evaluation.get("model"), evaluation.get("baseline_mean_target")
    if isinstance(model, dict) and isinstance(baseline, dict) and \
            "mean_cosine" in model and "mean_cosine" in baseline:
        margin = model["mean_cosine"] - baseline["mean_cosine"]
        if margin < MEAN_VECTOR_MARGIN:
            suspect.add(0.75, "eval.json", f"held-out cos(output, target) "
                        f"{model['mean_cosine']:.4f} against {baseline['mean_cosine']:.4f} for "
                        f"the training targets' mean vector (margin {margin:.4f})",
                        value=margin, threshold=f"< {MEAN_VECTOR_MARGIN}", fact="margin")
    stats = _outputs(ev)
    if stats is not None:
        if "mean_vector_margin" in stats and stats["mean_vector_margin"] < MEAN_VECTOR_MARGIN:
            suspect.add(0.7, ev.outputs_source or "outputs", f"cos(output, target) "
                        f"{stats['cos_pred_target']:.4f} against {stats['cos_mean_target']:.4f} "
                        f"for the targets' mean (margin {stats['mean_vector_margin']:.4f})",
                        value=stats["mean_vector_margin"],
                        threshold=f"< {MEAN_VECTOR_MARGIN}", fact="margin")
        if stats.get("relative_spread", 1.0) < POINT_SPREAD:
            suspect.add(0.75, ev.outputs_source or "outputs", f"the outputs are one direction: "
                        f"their total variance is {stats['relative_spread']:.3g} of their mean "
                        "squared norm", value=stats["relative_spread"],
                        threshold=f"< {POINT_SPREAD}", fact="spread")
    margin_curve = ev.curve("mean_vector_margin")
    if margin_curve is not None and margin_curve.finite.sum() >= 3:
        tail = margin_curve.tail()
        if (tail < MEAN_VECTOR_MARGIN).all():
            suspect.add(0.4, margin_curve.source, f"the monitor's mean-vector margin stayed "
                        f"below {MEAN_VECTOR_MARGIN} at its last {len(tail)} checks (last "
                        f"{tail[-1]:.4f})", value=float(tail[-1]), curve=margin_curve.name,
                        fact="monitor")
    spread_curve = ev.curve("relative_spread")
    if spread_curve is not None and spread_curve.finite.sum() >= 3 and \
            (spread_curve.tail() < POINT_SPREAD).all():
        suspect.add(0.4, spread_curve.source, "the monitor's relative spread stayed below "
                    f"{POINT_SPREAD} at its last checks", curve=spread_curve.name,
                    fact="monitor")
    if not suspect.signals:
        return None
    codes = {**ev.preflight_codes(), **ev.data_codes("sequences")}
    if "CONTEXT_MISALIGNED" in codes:
        suspect.add(0.25, "preflight.json" if ev.preflight else _path(ev, "sequences"),
                    "CONTEXT_MISALIGNED: the contexts are not the vectors before their "
                    "targets, so they carry nothing the model could predict from")
        suspect.fix = ("Rebuild the sequence file so that context i holds the C vectors before "
                       "target i (`uncollapse build sequences`) and train again without --force.")
    elif "DUPLICATE_TARGETS" in codes:
        suspect.add(0.25, _path(ev, "sequences"), "DUPLICATE_TARGETS: one target vector is a "
                    "large share of all targets")
    return suspect


def normalised_decoder_input(ev: Evidence) -> Suspect | None:
    if ev.recipe not in (None, "lvm"):
        return None
    suspect = Suspect(CAUSE_OF["NORMALISED_DECODER_INPUT"])
    stats = _outputs(ev)
    report = ev.data.get("outputs")
    if report is not None and "UNIT_NORM_OUTPUT" in report.codes():
        suspect.add(0.85, ev.outputs_source or "outputs", f"{stats['unit_norm_share']:.1%} of "
                    f"outputs have norm 1 while target norms average "
                    f"{stats['target_norm_mean']:.4g}", value=stats["unit_norm_share"],
                    threshold=">= 0.99 with targets not unit-norm", fact="outputs")
    codes = {**ev.preflight_codes(), **ev.data_codes("sequences")}
    if "UNIT_NORM_VECTORS" in codes:
        suspect.add(0.55, _path(ev, "sequences"), "UNIT_NORM_VECTORS: every vector of the "
                    "sequence file has norm 1, so the model learned to produce unit vectors; "
                    "a decoder trained on the encoder's raw outputs reads them off-distribution",
                    fact="data")
    round_trip = (ev.evaluation or {}).get("round_trip")
    if isinstance(round_trip, dict) and {"A_encoder_top1", "C_y_dec_top1", "y_cos_top1",
                                         "corpus_mean_norm"} <= set(round_trip):
        if abs(round_trip["corpus_mean_norm"] - 1.0) < 1e-2:
            suspect.add(0.55, "eval.json", f"the vectors decoded against have mean norm "
                        f"{round_trip['corpus_mean_norm']:.4f}: the training data is unit-norm",
                        value=round_trip["corpus_mean_norm"], fact="data")
        a, c, y = (round_trip[k] for k in ("A_encoder_top1", "C_y_dec_top1", "y_cos_top1"))
        if c < a - 0.2 and abs(c - y) < 0.05:
            suspect.add(0.3, "eval.json", f"round trip: the encoder's own vectors decode at "
                        f"top-1 {a:.3f}, the outputs at {c:.3f}, the same as their unit-norm "
                        f"copies ({y:.3f})", value=c)
    return suspect if suspect.signals else None


def dimensional_collapse(ev: Evidence) -> Suspect | None:
    if ev.recipe == "slots":
        return None
    suspect = Suspect(CAUSE_OF["DIMENSIONAL_COLLAPSE"])
    stats = _outputs(ev)
    one_point = stats is not None and stats.get("relative_spread", 1.0) < POINT_SPREAD
    if stats is not None and not one_point:
        fraction = stats["effective_rank_fraction"]
        if fraction < LOW_RANK_FRACTION:
            suspect.add(0.7 if fraction < RANK_FRACTION else 0.4, ev.outputs_source or "outputs",
                        f"the outputs' effective rank is {stats['effective_rank']:.2f} of at "
                        f"most {min(stats['rows'], stats['dim'])} ({fraction:.3f})",
                        value=fraction, threshold=f"< {RANK_FRACTION} (< {LOW_RANK_FRACTION}: "
                        "weaker)", fact="rank")
        if "target_effective_rank" in stats and stats["target_effective_rank"] > 0:
            ratio = stats["effective_rank"] / stats["target_effective_rank"]
            if ratio < RANK_RATIO:
                suspect.add(0.7, ev.outputs_source or "outputs", f"the outputs' effective rank "
                            f"{stats['effective_rank']:.2f} is {ratio:.2f} of the targets' "
                            f"{stats['target_effective_rank']:.2f}", value=ratio,
                            threshold=f"< {RANK_RATIO}", fact="rank")
    rank = ev.curve("effective_rank")
    if rank is not None and rank.finite.sum() >= 4 and not one_point:
        values = rank.values[rank.finite]
        early, late = float(values[: max(1, len(values) // 4)].max()), float(rank.tail().mean())
        if early > 0 and late / early < RANK_FALL:
            suspect.add(0.45, rank.source, f"the monitored effective rank fell from {early:.2f} "
                        f"to {late:.2f} ({late / early:.2f} of its early high)",
                        value=late / early, threshold=f"< {RANK_FALL}", curve=rank.name,
                        fact="falls")
    if not suspect.signals:
        return None
    inputs = ev.measures.get("features")
    if inputs and inputs["fraction"] < RANK_FRACTION:
        suspect.add(0.35, inputs["path"], f"the input features themselves span few directions: "
                    f"effective rank {inputs['effective_rank']:.2f} of {inputs['dim']} "
                    "dimensions", value=inputs["fraction"], threshold=f"< {RANK_FRACTION}")
        suspect.fix = (f"Re-encode the inputs ({inputs['path']} has effective rank "
                       f"{inputs['effective_rank']:.1f}): features taken from the wrong layer, "
                       "pooled over padding or truncated carry a few directions only; check "
                       f"with `uncollapse diagnose embeddings {inputs['path']}`.")
    return suspect


# causes of the loss -------------------------------------------------------------------------
def negative_loss_term(ev: Evidence) -> Suspect | None:
    suspect = Suspect(CAUSE_OF["NEGATIVE_LOSS_TERM"])
    for curve in _loss_like(ev):
        finite = curve.finite
        if not finite.any():
            continue
        values = curve.values[finite]
        if values.min() < -1e-6:
            at = int(np.argmin(values))
            suspect.add(0.9, curve.source, f"{curve.name} reached {_fmt(values[at])} at step "
                        f"{_step(curve.steps[finite][at])}, below its floor 0",
                        value=float(values[at]), threshold="< 0", curve=curve.name,
                        fact="negative")
    config = ev.config
    if ev.recipe == "slots" and config.get("diversity") == "unclamped" and \
            (config.get("diversity_weight") or 0) > 0:
        suspect.add(0.5, "config.json", f"diversity 'unclamped' (the plain mean cosine between "
                    f"slots, whose floor is -1/(K-1), not 0) with weight "
                    f"{config['diversity_weight']:g}", fact="config")
        diversity = ev.curve("diversity")
        if diversity is not None and diversity.finite.sum() >= 3:
            values = diversity.values[diversity.finite]
            if values.max() > 0 and values[-1] < 0.25 * values.max():
                suspect.add(0.3, diversity.source, f"the diversity term fell from "
                            f"{_fmt(values.max())} to {_fmt(values[-1])} at the last logged "
                            "step, heading for its unclamped floor below 0",
                            value=float(values[-1]), curve=diversity.name, fact="falling")
        stopped = _stopped(ev)
        if stopped:
            suspect.add(0.3, "metrics.jsonl", stopped, fact="stopped")
    if not suspect.signals:
        return None
    if ev.recipe == "slots":
        suspect.fix = ("Train with `--diversity clamped` (the mean of max(0, cos) between "
                       "slots, in [0, 1]): the loss guard then has nothing to stop.")
    return suspect


def _stopped(ev: Evidence) -> str | None:
    """Why the run looks stopped before its end (no evaluation, fewer steps than configured)."""
    if ev.finished is not False:
        return None
    steps = ev.config.get("steps")
    last = max((float(c.steps[-1]) for c in ev.curves.values() if len(c)), default=0.0)
    if steps and last >= steps:
        return None
    of = f" of {steps}" if steps else ""
    return (f"the run stopped at step {_step(last)}{of} without writing eval.json: a guard "
            "(or a crash) ended it")


def divergence(ev: Evidence) -> Suspect | None:
    suspect = Suspect(CAUSE_OF["DIVERGENCE"])
    degenerate = world_size(ev) > 1 or (
        (_grouping(ev) or {}).get("singleton_share", 0.0) >= SINGLETON_SHARE)
    for curve in _loss_like(ev):
        finite = curve.finite
        if not finite.all():
            bad = int(np.argmin(finite))
            if finite[:bad].any():
                last = int(np.flatnonzero(finite[:bad])[-1])
                suspect.add(0.9, curve.source, f"{curve.name} became "
                            f"{_fmt(curve.values[bad])} at step {_step(curve.steps[bad])} "
                            f"(last finite value {_fmt(curve.values[last])} at step "
                            f"{_step(curve.steps[last])})", curve=curve.name, fact="nonfinite")
            elif not degenerate:
                suspect.add(0.4, curve.source, f"{curve.name} is "
                            f"{_fmt(curve.values[0])} from the first logged step",
                            curve=curve.name, fact="nonfinite")
    loss = ev.curve("loss")
    if loss is not None and loss.finite.sum() >= 3:
        values = loss.values[loss.finite]
        first = values[0]
        if first > 0:
            ratio = float(values.max() / first)
            if ratio >= EXPLODE:
                weight = 0.8 if ratio >= EXPLODE_HARD else 0.5
                at = int(np.argmax(values))
                suspect.add(weight, loss.source, f"the loss grew from {_fmt(first)} to "
                            f"{_fmt(values[at])} at step {_step(loss.steps[loss.finite][at])} "
                            f"({ratio:.3g}x)", value=ratio, threshold=f">= {EXPLODE:g}x",
                            curve=loss.name, fact="explode")
    checkpoint = ev.checkpoint
    if checkpoint is not None:
        if checkpoint["non_finite"]:
            suspect.add(0.9, f"checkpoints/{checkpoint['path']}", f"{checkpoint['non_finite']} "
                        f"of {checkpoint['parameters']} weights are NaN or infinite",
                        value=checkpoint["non_finite"], fact="weights")
        elif checkpoint["max_abs"] >= WEIGHT_LARGE:
            suspect.add(0.6 if checkpoint["max_abs"] >= WEIGHT_HUGE else 0.5,
                        f"checkpoints/{checkpoint['path']}", f"the largest weight has "
                        f"magnitude {checkpoint['max_abs']:.3g}", value=checkpoint["max_abs"],
                        threshold=f">= {WEIGHT_LARGE:g}", fact="weights")
    report = ev.data.get("outputs")
    if report is not None and "NON_FINITE_OUTPUT" in report.codes():
        suspect.add(0.8, ev.outputs_source or "outputs", "the outputs hold NaN or inf: "
                    + report.findings[0].message, fact="outputs")
    if suspect.signals:
        stopped = _stopped(ev)
        if stopped:
            suspect.add(0.3, "metrics.jsonl", stopped, fact="stopped")
    return suspect if suspect.signals else None


# causes of the flow -------------------------------------------------------------------------
def partial_augmentation(ev: Evidence) -> Suspect | None:
    suspect = Suspect(CAUSE_OF["PARTIAL_AUGMENTATION"])
    flips = ev.data.get("flips")
    if flips is not None and "share_with_flip" in flips.stats:
        share = flips.stats["share_with_flip"]
        if share < FLIP_SHARE:
            suspect.add(0.9, flips.target, f"{share:.1%} of {flips.stats['samples']} samples "
                        "have a target that differs from their source; the rest keep their "
                        "attributes", value=share, threshold=f"< {FLIP_SHARE}", fact="share")
    rate = ev.curve("flip_rate")
    if rate is not None and rate.finite.any():
        median = float(np.median(rate.values[rate.finite]))
        if median < FLIP_SHARE:
            suspect.add(0.75, rate.source, f"the logged flip rate has median {median:.3f}",
                        value=median, threshold=f"< {FLIP_SHARE}", curve=rate.name,
                        fact="share")
    return suspect if suspect.signals else None


def prototypes_from_outputs(ev: Evidence) -> Suspect | None:
    suspect = Suspect(CAUSE_OF["PROTOTYPES_FROM_OUTPUTS"])
    if ev.config.get("prototypes") == "batch":
        suspect.add(0.6, "config.json", "prototypes 'batch': the prototypes are the means of "
                    "the flowed batch, with gradient")
    evaluation = ev.evaluation or {}
    flow, steering = (evaluation.get(f"{m}/transfer_accuracy") for m in ("flow", "steering"))
    if isinstance(flow, (int, float)) and isinstance(steering, (int, float)) and \
            steering >= 0.5 and flow < TRANSFER_SHARE * steering:
        suspect.add(0.3, "eval.json", f"the flow's transfer accuracy {flow:.3f} is under half "
                    f"the steering baseline's {steering:.3f}: its outputs do not carry their "
                    "target attributes", value=flow, threshold=f"< {TRANSFER_SHARE} x steering")
    return suspect if suspect.signals else None


# causes of the splits -----------------------------------------------------------------------
def split_leakage(ev: Evidence) -> Suspect | None:
    suspect = Suspect(CAUSE_OF["SPLIT_LEAKAGE"])
    leak = _finding(ev.data_codes("captions"), "SPLIT_LEAKAGE")
    if leak:
        suspect.add(0.8, _path(ev, "captions"), f"SPLIT_LEAKAGE: {leak['message']} "
                    f"({leak['count']} images)", value=leak["count"], fact="captions")
    pre = ev.preflight_codes().get("SPLIT_LEAKAGE")
    if pre:
        suspect.add(0.75, "preflight.json", f"the pre-flight check found SPLIT_LEAKAGE "
                    f"({pre['message']}) and the run was forced past it", fact="captions")
    identity = _finding(ev.data_codes("attributes"), "IDENTITY_LEAKAGE")
    if identity:
        suspect.add(0.8, _path(ev, "attributes"), f"IDENTITY_LEAKAGE: {identity['message']}",
                    value=identity["count"], fact="attributes")
    if not suspect.signals:
        return None
    suspect.fix = ("Assign splits by image (captions) or by identity (attributes), never by "
                   "row: " + ("rebuild the caption table with `uncollapse build captions` from "
                          "a source whose split lists name each image once"
                          if leak or pre else "take the split from the source's own "
                          "partition (CelebA's list_eval_partition.txt)") + ".")
    return suspect


# causes of the curves -----------------------------------------------------------------------
def overfitting(ev: Evidence) -> Suspect | None:
    train, val = ev.curve("loss"), ev.curve("val_loss")
    if train is None or val is None or val.finite.sum() < 5 or train.finite.sum() < 5:
        return None
    v_steps, v = val.steps[val.finite], val.values[val.finite]
    best = int(np.argmin(v))
    if best >= OVERFIT_LATE * (len(v) - 1):
        return None
    rise = float((v[-1] - v[best]) / max(abs(v[best]), 1e-12))
    if rise < OVERFIT_RISE:
        return None
    t_steps, t = train.steps[train.finite], train.values[train.finite]
    before = t[t_steps <= v_steps[best]]
    at_best = before[-1] if before.size else t[0]
    if t[-1] >= at_best:
        return None  # both rose: not the signature of memorising
    suspect = Suspect(CAUSE_OF["OVERFITTING"])
    suspect.add(0.5 + min(0.4, rise), val.source, f"validation loss reached its minimum "
                f"{_fmt(v[best])} at step {_step(v_steps[best])} and rose {rise:.0%} to "
                f"{_fmt(v[-1])} by step {_step(v_steps[-1])}", value=rise,
                threshold=f">= {OVERFIT_RISE}", curve=val.name)
    suspect.add(0.3, train.source, f"training loss kept falling, from {_fmt(at_best)} to "
                f"{_fmt(t[-1])} over the same steps", value=float(t[-1]), curve=train.name)
    suspect.fix = (f"Keep the checkpoint of step {_step(v_steps[best])} (the validation "
                   "minimum), then add data or augmentation, raise weight decay or dropout, "
                   "or train fewer steps.")
    return suspect


# slots ---------------------------------------------------------------------------------------
def slots_identical(ev: Evidence) -> Suspect | None:
    suspect = Suspect(CAUSE_OF["SLOTS_IDENTICAL"])
    evaluation = ev.evaluation or {}
    if ev.recipe == "slots" and isinstance(evaluation.get("slot_cosine"), (int, float)):
        cosine = evaluation["slot_cosine"]
        if cosine > SLOT_COSINE:
            suspect.add(0.75, "eval.json", f"held-out mean cosine between an image's slots "
                        f"{cosine:.4f}", value=cosine, threshold=f"> {SLOT_COSINE}",
                        fact="final")
    stats = _outputs(ev)
    if stats is not None and "slot_spread_ratio" in stats and \
            stats["slot_spread_ratio"] < SLOT_SPREAD:
        suspect.add(0.7, ev.outputs_source or "outputs", f"the slots of an image vary "
                    f"{stats['slot_spread_ratio']:.3g} as much as slots across images",
                    value=stats["slot_spread_ratio"], threshold=f"< {SLOT_SPREAD}",
                    fact="final")
    curve = ev.curve("slot_cosine")
    if curve is not None and curve.finite.sum() >= 3:
        tail = curve.tail()
        if tail.mean() > SLOT_COSINE:
            suspect.add(0.45, curve.source, f"the logged slot cosine stayed at "
                        f"{tail.mean():.4f} over the last {len(tail)} logged steps",
                        value=float(tail.mean()), threshold=f"> {SLOT_COSINE}",
                        curve=curve.name, fact="curve")
    if not suspect.signals:
        return None
    init = ev.config.get("init")
    near = [f for f in evaluation.get("findings", []) if isinstance(f, dict) and
            f.get("code") == "SLOT_INIT_NEAR_IDENTICAL"]
    if near:
        suspect.add(0.3, "eval.json", f"SLOT_INIT_NEAR_IDENTICAL: {near[0].get('message')}",
                    fact="init")
        suspect.fix = (f"Start from distinct slots: `--init learned` instead of '{init}' (its "
                       "initial slots are near-identical), or check the encoder features the "
                       "spectral or k-means start clusters.")
    elif ev.recipe == "slots" and not ev.config.get("diversity_weight"):
        suspect.add(0.2, "config.json", "diversity_weight 0: nothing pushes the slots apart "
                    "while they are still alike")
        suspect.fix = ("Add the clamped diversity term (`--diversity clamped --diversity-weight "
                       "1` or more) and train longer; check the attention's softmax runs over "
                       "slots.")
    return suspect


RULES: tuple[Callable[[Evidence], Suspect | None], ...] = (
    no_positives_in_batch, positives_split_across_ranks, no_doc_ids, no_hard_negatives,
    mean_vector_collapse, normalised_decoder_input, dimensional_collapse, negative_loss_term,
    slots_identical, partial_augmentation, prototypes_from_outputs, split_leakage,
    overfitting, divergence)
"""Every rule, in the order of ``causes.CAUSES``."""
