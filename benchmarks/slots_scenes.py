"""The slots recipe on generated scenes: foreground ARI against wall-clock time, for the three
slot initialisations (learned, spectral, k-means).

Generates ``--scenes`` scenes (``uncollapse.pipeline.scenes.generate_scenes``: flat-coloured
circles, squares, triangles and diamonds, 1 to ``--max-objects`` per scene), then trains one run
per initialisation for a wall-clock budget each: the engine's ``minutes`` option stops the run
when its clock says the budget is spent and runs the cosine decay over it, so ``--minutes
learned=6`` is six minutes of training, whatever the step rate. Checkpoints are written every
``--checkpoint-every`` steps and all kept; afterwards each one is evaluated on both halves of
the held-out scenes, which gives foreground ARI at each checkpoint's wall-clock time (its
file's write time minus the call of ``train``, set-up included); the checkpoint with the best
ARI on the validation half is reported on the test half, with how far the test curve fell back
after it first passed ``--target``.

Run on a GPU (on a CPU too, very slowly)::

    uncollapse build scenes --num 50000 --size 32 --max-objects 4 -o scenes32.npz
    python benchmarks/slots_scenes.py --scene-file scenes32.npz \\
        --minutes learned=6,spectral=1.5,kmeans=1.5 --json benchmarks/results/slots_scenes_h200.json
    python benchmarks/slots_scenes.py --scene-file scenes32.npz --minutes queries=8 \
        --implicit --batch-size 128 --lr 6e-4 --seed 1 --json slots_queries_seed1.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch

import uncollapse.trainers.run_dir as run_dir_module
from uncollapse.data.scenes.contract import load_scenes, save_scenes
from uncollapse.trainers.engine import resolve_device, train
from uncollapse.trainers.recipe import recipe_class
from uncollapse.trainers.run_dir import RunDir
from uncollapse.trainers.slots.config import SlotsConfig


def evaluate_checkpoints(config: SlotsConfig, started: float) -> list[dict]:
    """Every checkpoint of the run, oldest first, evaluated on the two halves of the held-out
    scenes: ``validation`` (to choose a checkpoint) and ``test`` (to report it)."""
    device = resolve_device(config.device)
    recipe = recipe_class("slots")(config, device)
    recipe.preflight()
    recipe.setup()
    held_out = recipe.eval_scenes  # a seeded random draw, so its halves are random too
    halves = {"validation": held_out[: len(held_out) // 2],
              "test": held_out[len(held_out) // 2:]}
    model = recipe.build_model().to(device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    curve = []
    for path in sorted(RunDir(config.out).checkpoint_paths()):
        state = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        model.eval()
        point = {"step": int(path.stem.split("-")[1]),
                 "seconds": round(path.stat().st_mtime - started, 1)}
        for name, scenes in halves.items():
            recipe.eval_scenes = scenes
            with torch.no_grad(), autocast:
                metrics, _ = recipe.evaluate(model)
            point[name] = {k: metrics[k] for k in ("eval_scenes", "fg_ari", "fg_ari_by_objects",
                                                   "slot_cosine", "init_slot_cosine",
                                                   "reconstruction_mse")}
        curve.append(point)
    return curve


def fallback_after(curve: list[dict], target: float) -> dict:
    """On the test half: the first checkpoint at or past ``target``, and the largest fall of
    the curve below its own best since then (0 where it never fell)."""
    scores = [point["test"]["fg_ari"] for point in curve]
    first = next((i for i, score in enumerate(scores) if score >= target), None)
    if first is None:
        return {"first_index": None, "max_fallback": None}
    best, fallback = scores[first], 0.0
    for score in scores[first:]:
        best = max(best, score)
        fallback = max(fallback, best - score)
    return {"first_index": first, "first_seconds": curve[first]["seconds"],
            "max_fallback": round(fallback, 4), "lowest_after": min(scores[first:])}


def run(scenes: Path, folder: Path, init: str, minutes: float, args) -> dict:
    config = SlotsConfig(scenes=str(scenes), out=str(folder / init), init=init,
                         implicit=args.implicit and init in ("learned", "queries"),
                         device=args.device, batch_size=args.batch_size, lr=args.lr,
                         warmup_steps=args.warmup_steps, slots=args.max_objects + 1,
                         slot_dim=args.slot_dim, channels=args.channels, quiet=True,
                         log_every=50, monitor_every=500, monitor_warmup=500,
                         checkpoint_every=args.checkpoint_every, minutes=minutes,
                         compile=args.compile, eval_fraction=args.eval_fraction,
                         ema_decay=args.ema_decay,
                         seed=args.seed)
    started = time.time()
    result = train(recipe_class("slots"), config)
    seconds = time.time() - started
    final = json.loads(RunDir(config.out).eval.read_text())
    curve = evaluate_checkpoints(config, started)
    chosen = max(curve, key=lambda point: point["validation"]["fg_ari"])
    return {"init": init, "implicit": config.implicit, "seed": args.seed,
            "budget_minutes": minutes, "steps": result.step,
            "train_seconds": round(seconds, 1),
            "samples_per_s": round(result.step * args.batch_size / seconds, 1),
            "fg_ari": final["fg_ari"], "fg_ari_by_objects": final["fg_ari_by_objects"],
            "slot_cosine": final["slot_cosine"], "init_slot_cosine": final["init_slot_cosine"],
            "reconstruction_mse": final["reconstruction_mse"],
            "findings": final.get("findings", []),
            "chosen_on_validation": {"step": chosen["step"], "seconds": chosen["seconds"],
                                     **chosen["test"]},
            "best_test": max(point["test"]["fg_ari"] for point in curve),
            f"after_test_fg_ari_{args.target}": fallback_after(curve, args.target),
            "after_test_fg_ari_0.9": fallback_after(curve, 0.9), "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="learned=6,spectral=1.5,kmeans=1.5",
                        help="init=minutes of training, comma-separated, run in this order")
    parser.add_argument("--scenes", type=int, default=50_000)
    parser.add_argument("--scene-file", help="a scene file to use instead of generating one "
                        "(the GPU host lacks polars, which the scene builder's package imports)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--max-objects", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--warmup-steps", type=int, default=1000)
    parser.add_argument("--slot-dim", type=int, default=64)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--eval-fraction", type=float, default=0.05)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--implicit", action="store_true",
                        help="implicit differentiation of the slot iterations (learned, queries)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--ema-decay", type=float, default=0.0,
                        help="evaluate an exponential moving average of the weights (e.g. "
                             "0.999; 0: the training weights)")
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    run_dir_module.KEEP_CHECKPOINTS = 1000  # keep the whole curve
    device = resolve_device(args.device)
    result: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                    "batch_size": args.batch_size, "lr": args.lr, "slot_dim": args.slot_dim,
                    "channels": args.channels, "implicit": args.implicit,
                    "compile": args.compile, "ema_decay": args.ema_decay, "seed": args.seed,
                    "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scenes = folder / "scenes.npz"
        if args.scene_file:
            scenes = Path(args.scene_file)
            arrays = load_scenes(scenes)
            args.scenes, args.size = len(arrays["images"]), int(arrays["images"].shape[1])
            args.max_objects = int(arrays["num_objects"].max())
        else:
            from uncollapse.pipeline.scenes import generate_scenes  # needs polars

            save_scenes(generate_scenes(args.scenes, args.size, args.max_objects,
                                        seed=args.seed), scenes, compress=False)
        result.update({"scenes": args.scenes, "size": args.size,
                       "max_objects": args.max_objects, "slots": args.max_objects + 1})
        for item in args.minutes.split(","):
            init, minutes = item.split("=")
            result["runs"].append(run(scenes, folder, init, float(minutes), args))
            print(json.dumps({k: v for k, v in result["runs"][-1].items() if k != "curve"}),
                  flush=True)
            if args.json:  # after every run, so a cut-off call still leaves the finished ones
                Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
