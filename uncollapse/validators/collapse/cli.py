"""``uncollapse diagnose embeddings``."""

from __future__ import annotations

import click
import numpy as np

from uncollapse.cli_paths import InputPath
from uncollapse.cli_ranges import (
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    SHARE,
    THRESHOLD_SHARE,
    check_order,
    count,
    finite,
)
from uncollapse.cli_report import quiet_option, report_options
from uncollapse.data.npy import load_npy
from uncollapse.errors import InputError, ToolError

__all__ = ["COMMANDS", "diagnose_embeddings_command"]

_NPY = InputPath()


@click.command("embeddings")
@click.argument("pred", type=_NPY)
@click.option("--targets", type=_NPY, help="Targets paired row for row with PRED (.npy).")
@click.option("--labels", type=_NPY,
              help="Label of each row (.npy, [N]): silhouette, k-NN purity, per-label collapse.")
@click.option("--groups", type=_NPY,
              help="Positive group of each row (.npy, [N], e.g. match_id); needs --targets.")
@click.option("--device", default="cpu", show_default=True,
              help="Torch device to compute on (cpu, cuda, cuda:1, ...).")
@click.option("--max-samples", type=count(2), default=4096, show_default=True,
              help="Row cap of the all-pairs metrics (a seeded subset above it).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--mean-vector-margin", type=finite(-2.0, 2.0), default=0.02, show_default=True,
              help="MEAN_VECTOR_COLLAPSE when cos(pred, target) beats the mean vector's by less.")
@click.option("--min-rank-fraction", type=SHARE, default=0.05, show_default=True,
              help="DIMENSIONAL_COLLAPSE when effective rank / min(rows, dim) is below this.")
@click.option("--min-rank-ratio", type=NON_NEGATIVE, default=0.25, show_default=True,
              help="DIMENSIONAL_COLLAPSE when effective rank / targets' is below this.")
@click.option("--unit-norm-tol", type=NON_NEGATIVE, default=0.01, show_default=True,
              help="A row is unit-norm when | |x| - 1 | is at most this.")
@click.option("--unit-norm-share", type=THRESHOLD_SHARE, default=0.99, show_default=True,
              help="UNIT_NORM_OUTPUT when at least this share of outputs is unit-norm.")
@click.option("--min-std-ratio", type=NON_NEGATIVE, default=0.5, show_default=True,
              help="MOMENT_MISMATCH when the median std ratio (pred / targets) is below this.")
@click.option("--max-std-ratio", type=POSITIVE, default=2.0, show_default=True,
              help="MOMENT_MISMATCH when the median std ratio is above this.")
@click.option("--max-mean-shift", type=NON_NEGATIVE, default=0.5, show_default=True,
              help="MOMENT_MISMATCH when the median mean shift (in target stds) is above this.")
@click.option("--min-relative-spread", type=NON_NEGATIVE, default=1e-3, show_default=True,
              help="POINT_COLLAPSE when total variance / mean squared norm is below this.")
@click.option("--min-label-spread", type=NON_NEGATIVE, default=1e-3, show_default=True,
              help="POINT_COLLAPSE (labels, no targets) when spread around each label's mean / "
                   "mean squared norm is below this.")
@click.option("--min-label-spread-ratio", type=NON_NEGATIVE, default=0.01, show_default=True,
              help="POINT_COLLAPSE (labels and targets) when the outputs' spread within labels "
                   "is below this share of the targets'.")
@click.option("--min-slot-spread", type=NON_NEGATIVE, default=0.1, show_default=True,
              help="SLOTS_IDENTICAL when slots vary within a set less than this share of across.")
@quiet_option
@report_options
def diagnose_embeddings_command(pred, targets, labels, groups, device, max_samples, seed, quiet,
                                **thresholds):
    """Measure collapse of embeddings or model outputs (PRED.npy, [N, D] or slots [N, S, D]).

    Reports effective rank (RankMe), uniformity, spread and, with --targets, the mean-vector
    baseline, per-dimension moments, norms, contrastive accuracy and recall@k; with --labels,
    silhouette and k-NN purity. Exits 1 on MEAN_VECTOR_COLLAPSE, DIMENSIONAL_COLLAPSE,
    UNIT_NORM_OUTPUT, POINT_COLLAPSE or SLOTS_IDENTICAL (and on MOMENT_MISMATCH with --strict).

    Example:

    \b
        uncollapse diagnose embeddings outputs.npy --targets targets.npy --groups match_ids.npy
        uncollapse diagnose embeddings slots.npy --format json --json slots-report.json
    """
    import torch

    from uncollapse.progress import status
    from uncollapse.validators.collapse.diagnose import Thresholds
    from uncollapse.validators.collapse.diagnose import diagnose_embeddings as run

    check_order("--min-std-ratio", thresholds["min_std_ratio"], "--max-std-ratio",
                thresholds["max_std_ratio"])
    try:
        torch_device = torch.device(device)
        torch.empty(0, device=torch_device)
    except (RuntimeError, AssertionError) as exc:
        raise click.BadParameter(f"{device!r} is not usable here: {exc}",
                                 param_hint="--device") from exc
    paths = {"pred": pred, "targets": targets, "labels": labels, "groups": groups}
    arrays = {name: _load_npy(path) for name, path in paths.items() if path is not None}
    for name in ("pred", "targets"):
        if name in arrays and arrays[name].dtype.kind not in "biuf":
            raise InputError(paths[name], f"expected numeric embeddings, got dtype "
                                          f"{arrays[name].dtype}")
    tensors = {name: torch.from_numpy(arrays[name]).to(torch_device)
               for name in ("pred", "targets") if name in arrays}
    try:
        with status(f"diagnosing {pred}", quiet=quiet):
            return run(tensors["pred"], tensors.get("targets"), arrays.get("labels"),
                       arrays.get("groups"), thresholds=Thresholds(**thresholds),
                       max_samples=max_samples, seed=seed, target=str(pred))
    except ToolError as exc:
        files = ", ".join(f"{name} = {path}" for name, path in paths.items() if path)
        raise ToolError(f"{exc} ({files})") from exc


def _load_npy(path: str) -> np.ndarray:
    """A .npy array, never unpickled; unreadable files become an InputError naming the file."""
    return np.ascontiguousarray(load_npy(path))


COMMANDS = {"diagnose": [diagnose_embeddings_command]}
