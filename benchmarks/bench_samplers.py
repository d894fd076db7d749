"""Sampler speed: planning grouped epochs, side by side with pytorch-metric-learning.

Run: .venv/bin/python benchmarks/bench_samplers.py [--peer-fraction 1.0] [--repeats 5]

1. Planning one epoch of 10 million rows (2 million groups of 5, k=5, batch 1,000).
2. 1 million rows / 200,000 classes of 5 (m=5, batch 250): GroupedBatchSampler against
   pytorch-metric-learning's MPerClassSampler (installed with pip if missing, then run in this
   process). MPerClassSampler reshuffles the whole label list for every batch, so an epoch
   takes about a minute here; by default it runs the whole epoch once. With
   ``--peer-fraction f < 1`` it is timed on that share of the epoch's batches and the batch
   time is scaled up linearly to the epoch (its cost per batch does not depend on the batch's
   position; building it is timed once and not scaled; the measured times are printed). Both
   outputs are checked against the same invariant with ``audit_batches``: every batch holds
   50 distinct classes with 5 distinct rows each.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import subprocess
import sys

import numpy as np
from timing import median_time

from uncollapse.samplers import GroupedBatchSampler
from uncollapse.validators.batches import audit_batches


def peer():
    """pytorch-metric-learning's MPerClassSampler, installing the package if it is missing."""
    try:
        module = importlib.import_module("pytorch_metric_learning.samplers")
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "pytorch-metric-learning"], check=True)
        module = importlib.import_module("pytorch_metric_learning.samplers")
    return module.MPerClassSampler




def check(batches, group_ids, per_group, what) -> dict:
    """The shared invariant: full batches of distinct groups, ``per_group`` distinct rows each."""
    report = audit_batches(batches, group_ids=group_ids, per_group=per_group,
                           target=what)
    errors = [f.code for f in report.errors]
    if errors:
        raise SystemExit(f"{what} breaks the invariant: {errors}")
    return report.stats


def plan_10m(repeats: int) -> None:
    n_groups, k, batch = 2_000_000, 5, 1_000
    rng = np.random.default_rng(0)
    group_ids = rng.permutation(np.repeat(np.arange(n_groups, dtype=np.int64), k))
    build, sampler = median_time(lambda: GroupedBatchSampler(group_ids, batch, k, seed=0), 1)
    plans = [median_time(lambda e=e: sampler.plan(e), 1) for e in range(repeats)]
    plan_s = statistics.median(t for t, _ in plans)
    stats = check(plans[0][1].rows.reshape(-1, batch), group_ids, k, "grouped plan, 10M rows")
    print("\n## 10M rows, 2M groups, k=5, batch 1,000")
    print("| step | seconds |\n|---|---|")
    print(f"| build the sampler (sort rows by group, once) | {build:.2f} |")
    print(f"| plan one epoch (median of {repeats} epochs) | {plan_s:.2f} |")
    # The same size with uneven groups (Poisson sizes around 5): rows within each group that
    # has more than k must also be shuffled every epoch, which the even case never needs.
    uneven = rng.integers(0, n_groups, size=n_groups * k)
    uneven_build, uneven_sampler = median_time(
        lambda: GroupedBatchSampler(uneven, batch, k, seed=0), 1)
    uneven_plans = [median_time(lambda e=e: uneven_sampler.plan(e), 1) for e in range(repeats)]
    check(uneven_plans[0][1].rows.reshape(-1, batch), uneven, k, "grouped plan, uneven")
    print(f"| uneven groups (Poisson sizes, mean 5): build the sampler | {uneven_build:.2f} |")
    print(f"| uneven groups: plan one epoch (median of {repeats} epochs) | "
          f"{statistics.median(t for t, _ in uneven_plans):.2f} |")
    print(f"\nbatches {len(plans[0][1])}, groups per batch {stats['groups_per_batch']}, "
          f"rows covered {stats['rows_covered_per_epoch']:,}; uneven: "
          f"{len(uneven_plans[0][1])} batches, "
          f"{uneven_sampler.stats['small_groups']:,} groups smaller than k left out")


def versus_peer(repeats: int, peer_fraction: float) -> None:
    n_classes, m, batch = 200_000, 5, 250
    n_rows = n_classes * m
    rng = np.random.default_rng(1)
    labels = rng.permutation(np.repeat(np.arange(n_classes, dtype=np.int64), m))
    n_batches = n_rows // batch

    def ours():
        sampler = GroupedBatchSampler(labels, batch, m, seed=0)
        return list(sampler)

    runs = [median_time(ours, 1) for _ in range(repeats)]
    ours_s = statistics.median(t for t, _ in runs)
    ours_stats = check(np.asarray(runs[0][1]), labels, m, "GroupedBatchSampler")

    MPerClassSampler = peer()
    peer_batches = max(1, round(n_batches * peer_fraction))

    # Building it (indexing the labels) is timed once and not scaled; only the batches are.
    build_s, sampler = median_time(lambda: MPerClassSampler(
        labels, m=m, batch_size=batch, length_before_new_iter=peer_batches * batch), 1)
    peer_s, flat = median_time(lambda: list(iter(sampler)), 1)
    peer_epoch_s = build_s + peer_s * n_batches / peer_batches
    peer_stats = check(np.asarray(flat).reshape(-1, batch), labels, m, "MPerClassSampler")

    print("\n## 1M rows, 200k classes, m=5, batch 250: build + one epoch of batches")
    print("| sampler | seconds per epoch | batches timed | invariant |\n|---|---|---|---|")
    print(f"| uncollapse GroupedBatchSampler (median of {repeats}) | {ours_s:.2f} | "
          f"{n_batches:,} of {n_batches:,} | holds |")
    how = ("measured, one epoch" if peer_batches == n_batches else
           f"build {build_s:.2f} s + {peer_s:.2f} s measured for the timed batches, scaled "
           f"to the epoch")
    print(f"| pytorch-metric-learning MPerClassSampler | {peer_epoch_s:.1f} ({how}) | "
          f"{peer_batches:,} of {n_batches:,} | holds |")
    print(f"\nspeed-up: {peer_epoch_s / ours_s:.0f}x; rows covered in the epoch: uncollapse "
          f"{ours_stats['rows_covered_per_epoch']:,} of {n_rows:,} (each row once), peer "
          f"{peer_stats['rows_covered_per_epoch']:,} distinct of {len(flat):,} drawn "
          f"(rows drawn more than once: {peer_stats['rows_repeated_within_epoch']:,})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer-fraction", type=float, default=1.0,
                        help="share of the epoch's batches to time the peer on")
    args = parser.parse_args()
    print(f"# samplers benchmark: {platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    plan_10m(args.repeats)
    versus_peer(args.repeats, args.peer_fraction)


if __name__ == "__main__":
    main()
