"""The flow recipe on synthetic attribute-structured embeddings, beside the steering baseline,
on linear attributes and on attributes that are not linear.

``uncollapse.data.attributes.synthetic`` draws embeddings on the sphere from identity and
attribute directions plus noise, so the right answer is known: a transferred embedding should
carry its target attributes, keep the attributes that were not flipped, and stay nearest to its
own identity. Two structures of the same sizes:

- ``linear``: one direction per attribute, the same for every identity; the mean difference of
  the steering baseline is the exact transfer there.
- ``nonlinear``: each attribute's direction turns with the identity (``curvature``) and each
  identity has its own strength of each attribute (``gain_spread``), as a smile changes each
  face its own way; one mean difference cannot be right for every image.

Each run's ``eval.json`` holds the flow's and the mean-difference steering baseline's metrics on
the held-out identities, read by linear probes trained on real embeddings. Since a linear probe
reads a non-linear attribute only in part (``probe_accuracy_real`` says how well), the outputs
are also read by their nearest real neighbours: ``knn_target_accuracy`` is the share of outputs
whose ``KNN`` nearest training embeddings (cosine) carry, by majority per attribute, exactly the
target combination. ``--prototypes batch`` adds the broken variant (means of the flowed batch,
with gradient).

    python benchmarks/flow_synthetic.py --device cpu --rows 8000 --dim 64 --identities 200 \\
        --attributes 4 --steps 250 --batch-size 128 --hidden 128 \\
        --json benchmarks/results/flow_synthetic_cpu.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from uncollapse.data.attributes.contract import decode_combination_ids
from uncollapse.data.attributes.synthetic import (
    synthetic_attribute_embeddings,
    write_attribute_table,
)
from uncollapse.trainers.engine import resolve_device, train
from uncollapse.trainers.flow.config import FlowConfig
from uncollapse.trainers.recipe import recipe_class
from uncollapse.trainers.run_dir import RunDir

KEYS = ("transfer_accuracy", "transfer_all_accuracy", "preservation", "identity_recall@1",
        "movement", "silhouette", "cluster_purity")
STRUCTURES = {"linear": {"curvature": 0.0, "gain_spread": 0.0},
              "nonlinear": {"curvature": 1.0, "gain_spread": 1.0}}
KNN = 10


def knn_target_accuracy(points: np.ndarray, targets: np.ndarray, reference: np.ndarray,
                        attributes: np.ndarray, k: int = KNN) -> float:
    """Share of ``points`` whose ``k`` nearest ``reference`` rows (cosine) carry, by majority
    per attribute, exactly the ``targets`` [n, A] attributes."""
    right = []
    for start in range(0, len(points), 2048):  # blocks of [2048, reference] similarities
        similarity = points[start:start + 2048] @ reference.T
        nearest = np.argpartition(-similarity, k, axis=1)[:, :k]
        read = attributes[nearest].mean(axis=1) > 0.5
        right.append((read == targets[start:start + 2048].astype(bool)).all(axis=1))
    return float(np.concatenate(right).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--attributes", type=int, default=5)
    parser.add_argument("--identities", type=int, default=500)
    parser.add_argument("--structures", default="linear,nonlinear")
    parser.add_argument("--prototypes", default="bank", help="bank, or bank,batch")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--identity-weight", type=float, default=1.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    result: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                    "rows": args.rows, "dim": args.dim, "attributes": args.attributes,
                    "identities": args.identities, "steps": args.steps,
                    "batch_size": args.batch_size, "hidden": args.hidden,
                    "identity_weight": args.identity_weight, "knn": KNN, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for structure in args.structures.split(","):
            knobs = STRUCTURES[structure]
            embeddings, table = synthetic_attribute_embeddings(
                args.rows, args.dim, attributes=args.attributes, identities=args.identities,
                **knobs)
            np.save(folder / f"{structure}.npy", embeddings)
            write_attribute_table(table, folder / f"{structure}.parquet")
            names = [f"attr{j}" for j in range(args.attributes)]
            train_rows = table["split"] == "train"
            reference = embeddings[train_rows]
            reference_attributes = np.stack([table[n] for n in names], axis=1)[train_rows]
            for prototypes in args.prototypes.split(","):
                name = f"{structure}/{prototypes}"
                config = FlowConfig(embeddings=str(folder / f"{structure}.npy"),
                                    attributes=str(folder / f"{structure}.parquet"),
                                    prototypes=prototypes, out=str(folder / name),
                                    device=args.device, steps=args.steps,
                                    batch_size=args.batch_size, hidden=args.hidden,
                                    identity_weight=args.identity_weight, quiet=True,
                                    log_every=100, monitor_every=500, monitor_warmup=500)
                started = time.time()
                train(recipe_class("flow"), config)
                seconds = time.time() - started
                run = RunDir(config.out)
                evaluation = json.loads(run.eval.read_text())
                arrays = np.load(run.path / "projection.npz", allow_pickle=False)
                targets = decode_combination_ids(arrays["groups"], args.attributes)
                rates = [r["samples_per_s"] for r in run.read_metrics()[1:]
                         if "samples_per_s" in r]
                result["runs"][name] = {
                    **knobs, "train_seconds": round(seconds, 1),
                    "samples_per_s": round(float(np.median(rates)), 1) if rates else None,
                    "eval_rows": evaluation["eval_rows"],
                    "probe_accuracy_real": evaluation["probe_accuracy_real"],
                    **{f"{method}/{key}": evaluation.get(f"{method}/{key}")
                       for method in ("flow", "steering") for key in KEYS},
                    **{f"{method}/knn_target_accuracy": knn_target_accuracy(
                        arrays[key], targets, reference, reference_attributes)
                       for method, key in (("flow", "pred"), ("steering", "steering"))},
                    "input/knn_target_accuracy": knn_target_accuracy(
                        arrays["trajectory"][0], targets, reference, reference_attributes)}
                print(json.dumps({name: result["runs"][name]}), flush=True)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
