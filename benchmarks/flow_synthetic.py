"""The flow recipe on synthetic attribute-structured embeddings, beside the steering baseline.

``uncollapse.data.attributes.synthetic`` draws embeddings on the sphere from identity and
attribute directions plus noise, so the right answer is known: a transferred embedding should
carry its target attributes (read by linear probes trained on real embeddings), keep the
attributes that were not flipped, and stay nearest to its own identity. Two runs on the same
data: ``--prototypes bank`` (means of the real embeddings, no gradient: the recipe's loss) and
``--prototypes batch`` (means of the flowed batch with gradient: the broken variant). Each run's
``eval.json`` holds the flow's and the mean-difference steering baseline's metrics on the
held-out identities.

    python benchmarks/flow_synthetic.py --rows 100000 --dim 512 --attributes 5 \\
        --json benchmarks/results/flow_synthetic_h200.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from uncollapse.data.attributes.synthetic import (
    synthetic_attribute_embeddings,
    write_attribute_table,
)
from uncollapse.trainers.engine import resolve_device, train
from uncollapse.trainers.flow.config import FlowConfig
from uncollapse.trainers.recipe import recipe_class
from uncollapse.trainers.run_dir import RunDir

KEYS = ("transfer_accuracy", "transfer_all_accuracy", "preservation", "identity_recall@1",
        "movement", "step_distance", "silhouette", "cluster_purity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--attributes", type=int, default=5)
    parser.add_argument("--identities", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    result: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                    "rows": args.rows, "dim": args.dim, "attributes": args.attributes,
                    "identities": args.identities, "steps": args.steps,
                    "batch_size": args.batch_size, "hidden": args.hidden, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        embeddings, table = synthetic_attribute_embeddings(
            args.rows, args.dim, attributes=args.attributes, identities=args.identities)
        np.save(folder / "embeddings.npy", embeddings)
        write_attribute_table(table, folder / "attributes.parquet")
        for prototypes in ("bank", "batch"):
            config = FlowConfig(embeddings=str(folder / "embeddings.npy"),
                                attributes=str(folder / "attributes.parquet"),
                                prototypes=prototypes, out=str(folder / prototypes),
                                device=args.device, steps=args.steps,
                                batch_size=args.batch_size, hidden=args.hidden, quiet=True,
                                log_every=100, monitor_every=500, monitor_warmup=500)
            started = time.time()
            train(recipe_class("flow"), config)
            seconds = time.time() - started
            run = RunDir(config.out)
            evaluation = json.loads(run.eval.read_text())
            rates = [r["samples_per_s"] for r in run.read_metrics()[1:] if "samples_per_s" in r]
            result["runs"][prototypes] = {
                "train_seconds": round(seconds, 1),
                "samples_per_s": round(float(np.median(rates)), 1) if rates else None,
                "eval_rows": evaluation["eval_rows"],
                "probe_accuracy_real": evaluation["probe_accuracy_real"],
                **{f"{method}/{key}": evaluation.get(f"{method}/{key}")
                   for method in ("flow", "steering") for key in KEYS}}
            print(json.dumps({prototypes: result["runs"][prototypes]}), flush=True)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
