"""Fixed and closed-form linear next-vector predictors on a sequence file's held-out documents.

Where does within-document retrieval stand without a trained network? For each seed's split (the
recipe's own: ``--eval-fraction`` of the documents held out, seeded) this reports mean cosine,
recall@1 and MRR (``predictor_metrics``, the recipe's evaluation) of:

- ``decay γ``: the context vectors weighted by ``γ^(C-1-k)`` (γ = 0: copy-last, 1: the mean);
- ``corpus mean a, c``: ``a * last + (1 - a) * mean + c * μ`` (``mean``: the mean of the unit
  context vectors), μ the mean unit training target (c > 0 adds what every target shares,
  c < 0 removes it; c = 0 is ``lvm_real_corpus.py --mixtures``);
- ``decay γ + c μ``: the decay weights normalised to sum to 1, plus ``c * μ`` (the two
  levers together: γ trades recall for cosine, μ buys cosine cheaply);
- ``ridge λ``: ``last + x W``, W the ridge regression of ``target - last`` on the concatenated
  unit context ``x``, fit in closed form on the training documents.

With ``--select-seed S`` the predictor is also chosen on seed S's held-out documents as the
issue's target reads (the highest recall@1 among those whose mean cosine beats the context
mean's) and judged on every other seed: does it beat copy-last on recall@1 with mean cosine
above the context mean's?

    python benchmarks/lvm_linear_frontier.py --sequences pydocs.npz --seeds 0,1 \\
        --json lvm_linear_frontier.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from uncollapse.trainers.lvm.config import LVMConfig
from uncollapse.trainers.lvm.recipe import LVMRecipe, predictor_metrics


def held_out(sequences: str, eval_fraction: float, seed: int) -> LVMRecipe:
    """The recipe set up on ``sequences`` with ``seed``'s split (CPU, nothing trained)."""
    config = LVMConfig(out="unused", sequences=sequences, device="cpu", quiet=True, seed=seed,
                       eval_fraction=eval_fraction)
    recipe = LVMRecipe(config, torch.device("cpu"))
    recipe.setup()
    return recipe


def unit_context(recipe: LVMRecipe, samples: torch.Tensor) -> torch.Tensor:
    return F.normalize(recipe.context(samples).double(), dim=-1)


def ridge(recipe: LVMRecipe, lam: float) -> torch.Tensor:
    """W [C*D, D] of ``target - last ≈ x W`` on the training samples (x: the unit context)."""
    samples = recipe.train_samples
    context = unit_context(recipe, samples)
    x = context.reshape(len(context), -1)
    y = F.normalize(recipe.target(samples).double(), dim=-1) - context[:, -1]
    gram = x.T @ x + lam * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(gram, x.T @ y)


def frontier(recipe: LVMRecipe, decays: list[float], corpus_mean: list[tuple[float, float]],
             lambdas: list[float], decay_mu: list[tuple[float, float]] = ()) -> dict:
    samples = recipe.eval_samples
    context = unit_context(recipe, samples)
    last, mean = context[:, -1], context.mean(dim=1)
    mu = F.normalize(recipe.target(recipe.train_samples).double(), dim=-1).mean(dim=0)
    length = context.shape[1]
    predictors = {"copy-last": last, "context mean": mean}
    for g in decays:
        weights = torch.tensor([g ** (length - 1 - k) for k in range(length)], dtype=last.dtype)
        predictors[f"decay {g}"] = torch.einsum("c,bcd->bd", weights, context)
    for a, c in corpus_mean:
        predictors[f"corpus mean a={a} c={c}"] = a * last + (1 - a) * mean + c * mu
    for g, c in decay_mu:
        weights = torch.tensor([g ** (length - 1 - k) for k in range(length)], dtype=last.dtype)
        predictors[f"decay {g} + {c} mu"] = (torch.einsum("c,bcd->bd", weights / weights.sum(),
                                                          context) + c * mu)
    for lam in lambdas:
        predictors[f"ridge {lam}"] = last + context.reshape(len(context), -1) @ ridge(recipe, lam)
    target = recipe.target(samples)
    docs, positions = recipe.doc_ids[samples], recipe.positions[samples]
    out = {}
    for name, prediction in predictors.items():
        metrics = predictor_metrics(F.normalize(prediction.float(), dim=-1), target, docs,
                                    positions, recipe.context_length)
        out[name] = {k: round(metrics[k], 4) for k in ("mean_cosine", "recall@1", "mrr")}
    return {"eval_samples": len(samples), "eval_documents": int(docs.unique().numel()),
            "predictors": out}


def beats_both(metrics: dict, predictors: dict) -> bool:
    """Recall@1 above copy-last's and mean cosine above the context mean's."""
    return (metrics["recall@1"] > predictors["copy-last"]["recall@1"]
            and metrics["mean_cosine"] > predictors["context mean"]["mean_cosine"])


def select(seeds: dict, select_seed: str) -> dict:
    """Choose on ``select_seed`` (the highest recall@1 among predictors whose mean cosine is
    above the context mean's; none if none is) and judge the choice on every seed."""
    chosen_on = seeds[select_seed]["predictors"]
    floor = chosen_on["context mean"]["mean_cosine"]
    allowed = [name for name, m in chosen_on.items()
               if name not in ("copy-last", "context mean") and m["mean_cosine"] > floor]
    if not allowed:
        return {"seed": select_seed, "chosen": None}
    chosen = max(allowed, key=lambda name: chosen_on[name]["recall@1"])
    return {"seed": select_seed, "chosen": chosen,
            "beats_both": {seed: beats_both(r["predictors"][chosen], r["predictors"])
                           for seed, r in seeds.items()}}


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", required=True)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--eval-fraction", type=float, default=0.15)
    parser.add_argument("--decays", default="0.2,0.35,0.5,0.65,0.8")
    parser.add_argument("--corpus-mean", default="1:-0.5,1:0.5,0.7:-0.5,0.7:0.5,0.5:0.5",
                        help="a:c pairs of a*last + (1-a)*mean + c*μ")
    parser.add_argument("--decay-mu", default="0.2:0.2,0.35:0.2,0.35:0.4,0.5:0.2,0.5:0.4",
                        help="γ:c pairs of (normalised decay weights) + c*μ")
    parser.add_argument("--ridge", default="10,100,1000", help="ridge penalties λ")
    parser.add_argument("--select-seed", help="choose on this seed, judge on the others")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    def pairs(text: str) -> list[tuple[float, float]]:
        return [tuple(floats(p.replace(":", ","))) for p in text.split(",") if p]

    result = {"sequences": args.sequences, "eval_fraction": args.eval_fraction, "seeds": {}}
    for seed in (int(s) for s in args.seeds.split(",")):
        recipe = held_out(args.sequences, args.eval_fraction, seed)
        result["seeds"][str(seed)] = frontier(recipe, floats(args.decays),
                                              pairs(args.corpus_mean), floats(args.ridge),
                                              pairs(args.decay_mu))
    if args.select_seed is not None:
        result["selection"] = select(result["seeds"], args.select_seed)
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
