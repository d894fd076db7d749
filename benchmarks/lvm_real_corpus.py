"""Train the LVM recipe on a real sequence file with several architectures and compare each to
the three baselines the recipe evaluates beside it (mean target, copy-last, context mean).

    python benchmarks/lvm_real_corpus.py --sequences pydocs.npz --archs gru,transformer,ssm,lstm \\
        --steps 1500 --json lvm_pydocs.json

The sequence file is built with the pipeline (see ``python_docs_corpus.py``). Held-out documents
(``--eval-fraction``, seeded) are never trained on; every figure is measured on them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from uncollapse.trainers.engine import train
from uncollapse.trainers.lvm.config import LVMConfig
from uncollapse.trainers.lvm.recipe import LVMRecipe

BASELINES = ("baseline_mean_target", "baseline_last_context", "baseline_context_mean")


def summarise(evaluation: dict) -> dict:
    model = evaluation["model"]
    best_cosine = max(evaluation[b]["mean_cosine"] for b in BASELINES)
    copy_last = evaluation["baseline_last_context"]
    return {
        "mean_cosine": {name: evaluation[name]["mean_cosine"] for name in ("model", *BASELINES)},
        "recall@1": {name: evaluation[name]["recall@1"] for name in ("model", *BASELINES)},
        "mrr": {name: evaluation[name]["mrr"] for name in ("model", *BASELINES)},
        "contrastive_accuracy_hardest": {name: evaluation[name]["contrastive_accuracy_hardest"]
                                         for name in ("model", *BASELINES)},
        "beats_every_baseline_on_mean_cosine": model["mean_cosine"] > best_cosine,
        "mean_cosine_margin_over_best_baseline": model["mean_cosine"] - best_cosine,
        "beats_copy_last_on_recall@1": model["recall@1"] > copy_last["recall@1"],
        "beats_copy_last_on_mrr": model["mrr"] > copy_last["mrr"],
        "round_trip": evaluation["round_trip"],
        "eval_samples": evaluation["eval_samples"],
        "eval_documents": evaluation["eval_documents"],
    }


def mixtures(sequences: str, eval_fraction: float, seed: int, weights: list[float]) -> dict:
    """Fixed predictors between the two baselines on the held-out documents of ``seed``:
    ``normalize(a * last + (1 - a) * mean)`` of the unit context vectors, for each ``a``; what a
    trained predictor has to beat without any training."""
    from lvm_linear_frontier import frontier, held_out

    found = frontier(held_out(sequences, eval_fraction, seed), decays=[],
                     corpus_mean=[(a, 0.0) for a in weights], lambdas=[])["predictors"]
    return {str(a): found[f"corpus mean a={a} c=0.0"] for a in weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", required=True)
    parser.add_argument("--archs", default="gru,transformer,ssm,lstm")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--eval-fraction", type=float, default=0.15)
    parser.add_argument("--options", default="{}",
                        help="JSON of further LVMConfig fields, e.g. '{\"moment_weight\": 0.1}'")
    parser.add_argument("--grid", default=None,
                        help="JSON list of option sets: each arch runs every set with "
                             "--select-seed; the best by (cosine margin over the best baseline + "
                             "recall@1 margin over copy-last) on its held-out documents is run "
                             "again with --seed, and that run is reported")
    parser.add_argument("--select-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mixtures", default=None,
                        help="comma-separated weights a: also report the fixed predictors "
                             "normalize(a*last + (1-a)*mean) on both seeds' held-out documents")
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args()
    results, selection = {}, {}
    base = json.loads(args.options)
    with tempfile.TemporaryDirectory() as tmp:

        def run(arch: str, options: dict, seed: int) -> tuple[dict, float]:
            values = dict(out=tempfile.mkdtemp(prefix=f"{arch}-{seed}-", dir=tmp),
                          sequences=args.sequences,
                          arch=arch, steps=args.steps, batch_size=args.batch_size,
                          hidden=args.hidden, layers=args.layers, lr=args.lr,
                          dropout=args.dropout, eval_fraction=args.eval_fraction,
                          device=args.device, quiet=True, monitor_every=250,
                          monitor_warmup=500, seed=seed)
            values.update({**base, **options})
            values["checkpoint_every"] = values["steps"]
            config = LVMConfig(**values)
            start = time.perf_counter()
            result = train(LVMRecipe, config)
            return summarise(result.evaluation), time.perf_counter() - start

        for arch in args.archs.split(","):
            chosen = {}
            if args.grid:
                tried = []
                for options in json.loads(args.grid):
                    summary, _ = run(arch, options, args.select_seed)
                    score = (summary["mean_cosine_margin_over_best_baseline"]
                             + summary["recall@1"]["model"]
                             - summary["recall@1"]["baseline_last_context"])
                    tried.append({"options": options, "score": score,
                                  "mean_cosine": summary["mean_cosine"]["model"],
                                  "recall@1": summary["recall@1"]["model"]})
                    print(json.dumps({"arch": arch, "seed": args.select_seed, **tried[-1],
                                      "copy_last_recall@1":
                                          summary["recall@1"]["baseline_last_context"],
                                      "context_mean_cosine":
                                          summary["mean_cosine"]["baseline_context_mean"]}),
                          flush=True)
                chosen = max(tried, key=lambda t: t["score"])["options"]
                selection[arch] = {"seed": args.select_seed, "tried": tried, "chosen": chosen}
            summary, seconds = run(arch, chosen, args.seed)
            results[arch] = {"seconds": seconds, "options": {**base, **chosen}, **summary}
            print(json.dumps({arch: results[arch]["mean_cosine"] | {
                "recall@1": results[arch]["recall@1"]["model"],
                "copy_last_recall@1": results[arch]["recall@1"]["baseline_last_context"]}}),
                flush=True)
    fixed = {}
    if args.mixtures:
        weights = [float(a) for a in args.mixtures.split(",")]
        fixed = {str(seed): mixtures(args.sequences, args.eval_fraction, seed, weights)
                 for seed in sorted({args.select_seed, args.seed})}
        print(json.dumps({"mixtures": fixed}), flush=True)
    summary = {"sequences": args.sequences, "mixtures": fixed, "steps": args.steps,
               "batch_size": args.batch_size, "hidden": args.hidden, "layers": args.layers,
               "lr": args.lr, "seed": args.seed, "options": base, "selection": selection,
               "runs": results}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
