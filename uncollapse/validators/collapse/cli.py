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
from uncollapse.validators.collapse.thresholds import Thresholds

__all__ = ["COMMANDS", "diagnose_embeddings_command"]

_NPY = InputPath()
DEFAULTS = Thresholds()


def threshold(name: str, kind: click.ParamType, help: str):
    """The option ``--name`` of the ``Thresholds`` field ``name``, with its default."""
    return click.option(f"--{name.replace('_', '-')}", type=kind, default=getattr(DEFAULTS, name),
                        show_default=True, help=help)


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
@threshold("mean_vector_margin", finite(-2.0, 2.0),
           "MEAN_VECTOR_COLLAPSE when cos(pred, target) beats the mean vector's by less.")
@threshold("min_rank_fraction", SHARE,
           "DIMENSIONAL_COLLAPSE when effective rank / min(rows, dim) is below this.")
@threshold("min_rank_ratio", NON_NEGATIVE,
           "DIMENSIONAL_COLLAPSE when effective rank / targets' is below this.")
@threshold("unit_norm_tol", NON_NEGATIVE,
           "A row is unit-norm when | |x| - 1 | is at most this.")
@threshold("unit_norm_share", THRESHOLD_SHARE,
           "UNIT_NORM_OUTPUT when at least this share of outputs is unit-norm.")
@threshold("min_std_ratio", NON_NEGATIVE,
           "MOMENT_MISMATCH when the median std ratio (pred / targets) is below this.")
@threshold("max_std_ratio", POSITIVE,
           "MOMENT_MISMATCH when the median std ratio is above this.")
@threshold("max_mean_shift", NON_NEGATIVE,
           "MOMENT_MISMATCH when the median mean shift (in target stds) is above this.")
@threshold("min_relative_spread", NON_NEGATIVE,
           "POINT_COLLAPSE when total variance / mean squared norm is below this.")
@threshold("min_label_spread", NON_NEGATIVE,
           "POINT_COLLAPSE (labels, no targets) when spread around each label's mean / "
           "mean squared norm is below this.")
@threshold("min_label_spread_ratio", NON_NEGATIVE,
           "POINT_COLLAPSE (labels and targets) when the outputs' spread within labels "
           "is below this share of the targets'.")
@threshold("min_slot_spread", NON_NEGATIVE,
           "SLOTS_IDENTICAL when slots vary within a set less than this share of across.")
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
