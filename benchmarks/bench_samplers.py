"""Sampler speed and memory: planning epochs up to 100M rows, and GroupedBatchSampler against
pytorch-metric-learning.

Run: .venv/bin/python benchmarks/bench_samplers.py [--rows 10M,100M] [--repeats 3]
     [--peer-fraction 1.0] [--skip-peer]

1. Planning one epoch at each size in ``--rows`` (default 10M; ``--rows 10M,100M`` adds 100
   million rows), every case in its own process so that its peak memory is its own:
   - grouped: ``n / 5`` groups of 5 rows, k=5, batch 1,000 (200 groups of 5 per batch);
   - grouped, uneven: ``n`` rows with group ids drawn at random from ``n / 5`` (Poisson sizes
     around 5), the same request;
   - diverse: documents of geometric sizes (mean 50 rows), batch 1,000, at most 4 rows of a
     document per batch (``DiverseBatchSampler``);
   - beside them, one ``numpy.random.Generator.permutation(n)``: the cost of shuffling ``n``
     rows once.
   Times: building the sampler once, then the median of ``--repeats`` epochs of
   ``sampler.plan(epoch)``. Memory: the process's peak resident set (``getrusage``, with the
   high-water mark reset through ``/proc/self/clear_refs`` once the ids are in memory) minus
   its resident set with the ids alone, i.e. what building the sampler and planning take on
   top of the caller's data; and the peak of numpy memory during one plan (``tracemalloc``).
   Every plan is checked: no row twice, every batch holds 200 distinct groups of 5 rows
   (grouped) or at most 4 rows of one document (diverse).
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
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from timing import median_time

CASES = ("grouped", "grouped-uneven", "diverse", "permutation")
BATCH, K, MAX_PER_DOC = 1_000, 5, 4


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
    from uncollapse.validators.batches import audit_batches

    report = audit_batches(batches, group_ids=group_ids, per_group=per_group,
                           target=what)
    errors = [f.code for f in report.errors]
    if errors:
        raise SystemExit(f"{what} breaks the invariant: {errors}")
    return report.stats


def case_ids(case: str, n_rows: int) -> np.ndarray:
    """The ids of one case, made with as few temporaries as possible (they set the baseline)."""
    rng = np.random.default_rng(0)
    if case == "grouped-uneven":
        return rng.integers(0, n_rows // K, size=n_rows)
    if case == "diverse":
        sizes = rng.geometric(1 / 50, size=n_rows // 25)
        ends = np.cumsum(sizes)
        sizes = sizes[:np.searchsorted(ends, n_rows) + 1]
        sizes[-1] -= int(sizes.sum()) - n_rows
        ids = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    else:
        ids = np.repeat(np.arange(n_rows // K, dtype=np.int64), K)
    rng.shuffle(ids)
    return ids


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def reset_peak() -> bool:
    """Start the peak resident set afresh (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def layout_bytes(value) -> int:
    """Bytes of every array a sampler keeps between epochs (its layout)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(layout_bytes(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(layout_bytes(getattr(value, name)) for name in value.__dataclass_fields__)
    return 0


def check_plan(plan, ids: np.ndarray, case: str) -> None:
    """Invariants of a plan, vectorised so that they run at 100M rows."""
    seen = np.zeros(len(ids), dtype=bool)
    seen[plan.rows] = True
    if int(seen.sum()) != len(plan.rows):
        raise SystemExit(f"{case}: a row appears twice in one epoch")
    if case == "diverse":
        docs = np.sort(ids[plan.rows].reshape(-1, BATCH), axis=1)
        if not (docs[:, MAX_PER_DOC:] != docs[:, :-MAX_PER_DOC]).all():
            raise SystemExit(f"{case}: a batch holds more than {MAX_PER_DOC} rows of a document")
        return
    groups = ids[plan.rows].reshape(-1, BATCH // K, K)
    if not (groups == groups[:, :, :1]).all():
        raise SystemExit(f"{case}: a slot mixes groups")
    firsts = np.sort(groups[:, :, 0], axis=1)
    if not (firsts[:, 1:] != firsts[:, :-1]).all():
        raise SystemExit(f"{case}: a group appears twice in one batch")


def run_case(case: str, n_rows: int, repeats: int) -> dict:
    """One case in this process: build, plan ``repeats`` epochs, measure, check."""
    from uncollapse.samplers import DiverseBatchSampler, GroupedBatchSampler  # torch: before

    ids = case_ids(case, n_rows)
    baseline = resident_bytes()
    exact_peak = reset_peak()
    if case == "permutation":
        rng = np.random.default_rng(0)
        plan_s, _ = median_time(lambda: rng.permutation(n_rows), repeats)
        return {"case": case, "rows": n_rows, "plan_s": plan_s,
                "peak_mb": (peak_bytes() - baseline) / 1e6, "exact_peak": exact_peak}
    start = time.perf_counter()
    sampler = (DiverseBatchSampler(ids, BATCH, MAX_PER_DOC) if case == "diverse"
               else GroupedBatchSampler(ids, BATCH, K))
    build_s = time.perf_counter() - start
    layout_mb = layout_bytes(sampler._layout) / 1e6
    times = []
    for epoch in range(repeats):
        start = time.perf_counter()
        plan = sampler.plan(epoch)
        times.append(time.perf_counter() - start)
        del plan
    peak_mb = (peak_bytes() - baseline) / 1e6
    tracemalloc.start()
    plan = sampler.plan(repeats)
    plan_peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    check_plan(plan, ids, case)
    return {"case": case, "rows": n_rows, "build_s": build_s, "plan_s": statistics.median(times),
            "epochs_s": times, "peak_mb": peak_mb, "plan_peak_mb": plan_peak_mb,
            "layout_mb": layout_mb, "plan_mb": plan.rows.nbytes / 1e6, "batches": len(plan),
            "rows_dtype": str(plan.rows.dtype), "exact_peak": exact_peak,
            "unplaced": sampler.stats["rows"] - len(plan.rows)}


def in_subprocess(case: str, n_rows: int, repeats: int) -> dict:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--case", case,
                           "--rows", str(n_rows), "--repeats", str(repeats)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{case} at {n_rows:,} rows failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def planning(sizes: list[int], repeats: int) -> None:
    print(f"\n## Planning one epoch (batch {BATCH:,}; median of {repeats} epochs; memory on top "
          f"of the ids)")
    print("| rows | sampler | build s | plan s | plan / permutation | peak MB (build + plan) "
          "| numpy peak MB in one plan | kept MB (layout) | plan MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for n_rows in sizes:
        results = {case: in_subprocess(case, n_rows, repeats) for case in CASES}
        shuffle = results["permutation"]
        for case in CASES[:-1]:
            r = results[case]
            print(f"| {n_rows:,} | {case} | {r['build_s']:.2f} | {r['plan_s']:.2f} | "
                  f"{r['plan_s'] / shuffle['plan_s']:.2f}x | {r['peak_mb']:,.0f} | "
                  f"{r['plan_peak_mb']:,.0f} | {r['layout_mb']:,.0f} | {r['plan_mb']:,.0f} |")
        print(f"| {n_rows:,} | `rng.permutation({n_rows:,})` | | {shuffle['plan_s']:.2f} | 1x | "
              f"{shuffle['peak_mb']:,.0f} | | | |")
        grouped, uneven, diverse = (results[c] for c in CASES[:-1])
        epochs = "; ".join(f"{c} " + ", ".join(f"{t:.2f}" for t in results[c]["epochs_s"])
                           for c in CASES[:-1])
        print(f"\n{n_rows:,} rows: diverse / grouped plan time "
              f"{diverse['plan_s'] / grouped['plan_s']:.2f}x; epochs (s): {epochs}; batches "
              f"{grouped['batches']:,} grouped, {uneven['batches']:,} uneven, "
              f"{diverse['batches']:,} diverse ({diverse['unplaced']:,} rows not placed under "
              f"the cap); rows {grouped['rows_dtype']}; peak reset exactly: "
              f"{all(r['exact_peak'] for r in results.values())}\n")


def versus_peer(repeats: int, peer_fraction: float) -> None:
    from uncollapse.samplers import GroupedBatchSampler

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


def row_count(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="10M",
                        help="comma-separated sizes to plan, e.g. 10M,100M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-fraction", type=float, default=1.0,
                        help="share of the epoch's batches to time the peer on")
    parser.add_argument("--skip-peer", action="store_true",
                        help="only the planning table")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # one child process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, row_count(args.rows), args.repeats)))
        return
    print(f"# samplers benchmark: {platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}, load average {os.getloadavg()[0]:.1f} at the start")
    planning([row_count(size) for size in args.rows.split(",")], args.repeats)
    if not args.skip_peer:
        versus_peer(5, args.peer_fraction)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
