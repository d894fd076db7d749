"""Collapse metrics on a CUDA device: same values as on the CPU, no copy of the data to the host.

Run on a machine with a GPU: python benchmarks/device_check_collapse.py [--out DIR]

1. Every metric on the same data as CPU tensors and as CUDA tensors; the largest difference.
2. The bytes copied device-to-host while ``diagnose_embeddings`` judges 25,600 x 768 CUDA
   outputs against CUDA targets (from a torch.profiler trace): scalars and per-dimension
   summaries only, never the rows.
3. Timings on the device: RankMe of 25,600 x 768 (``effective_rank``, and
   ``torch.linalg.svdvals`` for comparison) and the whole ``diagnose_embeddings``.

Writes ``device_check.json`` and ``device_check.md`` to ``--out`` (default: the working directory).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from timing import median_time

from uncollapse.validators.collapse import diagnose_embeddings, metrics


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int = 5) -> float:
    return median_time(fn, repeats, warmup=True, synchronize=synchronize)[0]


def device_to_host_bytes(fn, trace_path: Path) -> tuple[int, int]:
    """``(bytes, copies)`` of device-to-host memcpys while ``fn`` runs (profiler trace)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        fn()
        synchronize()
    prof.export_chrome_trace(str(trace_path))
    events = json.loads(trace_path.read_text())["traceEvents"]
    copies = [e for e in events if e.get("cat") == "gpu_memcpy" and "DtoH" in e.get("name", "")]
    return sum(int(e.get("args", {}).get("bytes", 0)) for e in copies), len(copies)


def flatten(value) -> np.ndarray:
    if isinstance(value, dict):
        return np.array([v for v in value.values() if isinstance(v, (int, float))], dtype=float)
    return np.atleast_1d(np.asarray(value, dtype=float))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".")
    parser.add_argument("--device", default="cuda", help="cpu only to try the script out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    n, d = 4096, 256
    targets = (rng.normal(size=(n, d)) * np.geomspace(1, 1e-2, d)).astype(np.float32)
    pred = (targets + rng.normal(size=(n, d)) * 0.3).astype(np.float32)
    labels = rng.integers(0, 300, n)
    slots = rng.normal(size=(512, 6, 64)).astype(np.float32)
    true_masks = rng.integers(0, 7, (64, 32, 32))
    pred_masks = np.where(rng.random(true_masks.shape) < 0.7, true_masks,
                          rng.integers(0, 9, true_masks.shape))

    def on(dev):
        t = {name: torch.from_numpy(a).to(dev) for name, a in
             {"pred": pred, "targets": targets, "labels": labels, "slots": slots,
              "true": true_masks, "masks": pred_masks}.items()}
        return {
            "mean_vector_baseline": metrics.mean_vector_baseline(t["pred"], t["targets"]),
            "moment_comparison": {k: v for k, v in
                                  metrics.moment_comparison(t["pred"], t["targets"]).items()
                                  if isinstance(v, float)},
            "effective_rank": metrics.effective_rank(t["pred"]),
            "alignment": metrics.alignment(t["pred"], t["targets"]),
            "uniformity": metrics.uniformity(t["pred"]),
            "variance_floor": metrics.variance_floor(t["pred"], gamma=0.5),
            "relative_spread": metrics.relative_spread(t["pred"]),
            "label_spread": metrics.label_spread(t["pred"], t["labels"]),
            "within_set_cosine": metrics.within_set_cosine(t["slots"]),
            "silhouette": metrics.silhouette(t["pred"], t["labels"]),
            "knn_purity": metrics.knn_purity(t["pred"], t["labels"]),
            "cluster_purity": metrics.cluster_purity(t["labels"] % 50, t["labels"] % 7),
            "contrastive_accuracy": metrics.contrastive_accuracy(t["pred"], t["targets"]),
            "recall_at_k": metrics.recall_at_k(t["pred"], t["targets"], t["labels"]),
            "adjusted_rand_index": metrics.adjusted_rand_index(t["true"], t["masks"]),
            "foreground_ari": metrics.foreground_ari(t["true"], t["masks"]),
        }

    cpu, cuda = on("cpu"), on(device)
    agreement = {name: float(np.max(np.abs(flatten(cpu[name]) - flatten(cuda[name]))))
                 for name in cpu}

    big_targets = torch.from_numpy(
        (np.random.default_rng(1).normal(size=(25_600, 768)) * np.geomspace(1, 1e-3, 768))
        .astype(np.float32)).to(device)
    big_pred = big_targets + 0.5 * torch.randn(big_targets.shape, device=device,
                                               generator=torch.Generator(device=device).manual_seed(2))
    groups = torch.arange(25_600, device=device) // 5
    report = diagnose_embeddings(big_pred, big_targets, groups=groups)
    dtoh_bytes, dtoh_copies = device_to_host_bytes(
        lambda: diagnose_embeddings(big_pred, big_targets, groups=groups),
        out / "diagnose_trace.json")
    rank_device = metrics.effective_rank(big_targets)
    rank_cpu = metrics.effective_rank(big_targets.cpu())
    results = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "max_abs_difference_cpu_vs_cuda": agreement,
        "rankme_25600x768_seconds": timed(lambda: metrics.effective_rank(big_targets)),
        "svdvals_25600x768_seconds": timed(lambda: torch.linalg.svdvals(big_targets)),
        "rankme_cuda": rank_device, "rankme_cpu": rank_cpu,
        "diagnose_25600x768_seconds": timed(
            lambda: diagnose_embeddings(big_pred, big_targets, groups=groups), repeats=3),
        "diagnose_codes": report.codes(), "diagnose_device": report.stats["device"],
        "diagnose_dtoh_bytes": dtoh_bytes, "diagnose_dtoh_copies": dtoh_copies,
        "input_bytes": big_pred.numel() * 4 * 2,
    }
    (out / "diagnose_trace.json").unlink()
    (out / "device_check.json").write_text(json.dumps(results, indent=2))
    lines = [f"device: {results['device']}, torch {results['torch']}", "",
             "| metric | max abs difference CPU vs CUDA |", "|---|---:|"]
    lines += [f"| {name} | {value:.2e} |" for name, value in agreement.items()]
    lines += ["", "| task | seconds |", "|---|---:|"]
    lines += [f"| {task} | {results[key]:.4f} |" for task, key in
              (("RankMe 25,600 x 768 (effective_rank)", "rankme_25600x768_seconds"),
               ("torch.linalg.svdvals 25,600 x 768", "svdvals_25600x768_seconds"),
               ("diagnose_embeddings 25,600 x 768", "diagnose_25600x768_seconds"))]
    lines += ["", f"device-to-host copies during diagnose_embeddings: {dtoh_copies}, "
              f"{dtoh_bytes} bytes (inputs: {results['input_bytes']} bytes on the device)"]
    (out / "device_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    worst = max(agreement.values())
    print(f"largest CPU/CUDA difference {worst:.2e}; RankMe cpu {rank_cpu:.6f} cuda "
          f"{rank_device:.6f}")
    if not math.isfinite(worst) or worst > 1e-3:
        raise SystemExit("CPU and CUDA results differ")


if __name__ == "__main__":
    main()
