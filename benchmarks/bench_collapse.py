"""Collapse-metric speed and agreement, side by side with numpy and scikit-learn.

Run: .venv/bin/python benchmarks/bench_collapse.py [--repeats 5] [--device cpu]

1. RankMe of 25,600 x 768 float32 embeddings (a spectrum falling off as in trained
   encoders): ``effective_rank`` (eigenvalues of the 768 x 768 Gram matrix in float64) against
   ``torch.linalg.svdvals`` on the data itself and ``numpy.linalg.svd`` in float64, with the
   values each gives.
2. Silhouette (cosine) of 4,096 rows in 512 labels, 768 dims: ``silhouette`` against
   ``sklearn.metrics.silhouette_score(metric="cosine")``.
3. ARI and FG-ARI of 256 masks of 64 x 64 with 7 objects: ``adjusted_rand_index`` against a
   loop of ``sklearn.metrics.adjusted_rand_score`` over images.
4. The whole ``diagnose_embeddings`` of 25,600 x 768 outputs against targets with groups.

Timings are medians of ``--repeats`` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
from timing import median_time

from uncollapse.validators.collapse import diagnose_embeddings, metrics


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds after one warm-up call; waits for the GPU when there is one."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else None
    return median_time(fn, repeats, warmup=True, synchronize=sync)


def rankme_from(sigma: np.ndarray) -> float:
    p = sigma / sigma.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


def embeddings(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return (rng.normal(size=(n, d)) * np.geomspace(1, 1e-3, d)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    rng = np.random.default_rng(0)
    device = torch.device(args.device)
    print(f"{platform.machine()} {platform.python_version()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")
    rows = []

    x = embeddings(rng, 25_600, 768)
    x_device = torch.from_numpy(x).to(device)
    ours, value = timed(lambda: metrics.effective_rank(x_device), args.repeats)
    svd_time, sigma = timed(lambda: torch.linalg.svdvals(x_device), args.repeats)
    rows.append(("RankMe 25,600 x 768", "effective_rank (Gram, float64)", ours, f"{value:.4f}"))
    rows.append(("", "torch.linalg.svdvals (float32)", svd_time,
                 f"{rankme_from(sigma.double().cpu().numpy()):.4f}"))
    if device.type == "cpu":
        numpy_time, sigma = timed(lambda: np.linalg.svd(x.astype(np.float64),
                                                               compute_uv=False),
                                        max(1, args.repeats // 2))
        rows.append(("", "numpy.linalg.svd (float64)", numpy_time, f"{rankme_from(sigma):.4f}"))

    labels = rng.integers(0, 512, 4096)
    clustered = (rng.normal(size=(512, 768))[labels] + rng.normal(size=(4096, 768)) * 2)
    clustered = clustered.astype(np.float32)
    clustered_device = torch.from_numpy(clustered).to(device)
    ours, value = timed(lambda: metrics.silhouette(clustered_device, labels), args.repeats)
    peer, expected = timed(lambda: silhouette_score(clustered, labels, metric="cosine"),
                                 args.repeats)
    rows.append(("silhouette 4,096 x 768, 512 labels", "silhouette", ours, f"{value:.6f}"))
    rows.append(("", "sklearn silhouette_score", peer, f"{expected:.6f}"))

    true = rng.integers(0, 8, (256, 64, 64))
    pred = np.where(rng.random(true.shape) < 0.7, true, rng.integers(0, 11, true.shape))
    true_device, pred_device = torch.from_numpy(true).to(device), torch.from_numpy(pred).to(device)
    ours, value = timed(lambda: metrics.adjusted_rand_index(true_device, pred_device),
                              args.repeats)
    peer, expected = timed(lambda: np.mean([adjusted_rand_score(t.ravel(), p.ravel())
                                                  for t, p in zip(true, pred, strict=True)]),
                                 args.repeats)
    rows.append(("ARI 256 masks of 64 x 64", "adjusted_rand_index", ours, f"{value:.6f}"))
    rows.append(("", "sklearn adjusted_rand_score loop", peer, f"{expected:.6f}"))
    ours, value = timed(lambda: metrics.foreground_ari(true_device, pred_device),
                              args.repeats)
    rows.append(("FG-ARI, same masks", "foreground_ari", ours, f"{value:.6f}"))

    targets = torch.from_numpy(x).to(device)
    outputs = targets + 0.5 * torch.randn(targets.shape, generator=torch.Generator().manual_seed(1)
                                          ).to(device)
    groups = np.repeat(np.arange(25_600 // 5), 5)
    ours, report = timed(lambda: diagnose_embeddings(outputs, targets, groups=groups),
                               max(1, args.repeats // 2))
    rows.append(("diagnose_embeddings 25,600 x 768 with targets", "all metrics", ours,
                 ", ".join(report.codes()) or "no findings"))

    print("\n| task | implementation | median time (s) | value |\n|---|---|---:|---|")
    for task, implementation, seconds, value in rows:
        print(f"| {task} | {implementation} | {seconds:.3f} | {value} |")


if __name__ == "__main__":
    main()
