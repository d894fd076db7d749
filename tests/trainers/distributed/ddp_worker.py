"""Run by the data-parallel tests under ``torchrun --nproc_per_node=2`` (CPU, gloo).

``python ddp_worker.py SPEC OUT``, SPEC a JSON file with ``mode``:

- ``step``: for every case (a recipe, its config and each rank's rows of one step), one
  training step through ``DistributedDataParallel`` as the engine takes it; rank 0 writes the
  initial weights, the loss terms averaged over ranks and the gradients to ``OUT/<case>.pt``.
  Then ``raise_together`` with an error on rank 1 only: each rank writes what it raised.
- ``train``: ``engine.train`` on a recipe that records the rows of every step of this rank
  (``OUT/rows<rank>.json``) and, with ``fail_at``, raises on rank 1 at that step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from uncollapse.trainers import distributed
from uncollapse.trainers.engine import recipe_class, train


def one_step(case: dict, ranks, device, out: Path) -> None:
    cls = recipe_class(case["recipe"])
    config = cls.config_class(**case["config"])
    recipe = cls(config, device)
    recipe.preflight()
    recipe.setup()
    recipe.on_epoch(0)
    distributed.broadcast_tensors([getattr(recipe, n) for n in recipe.replicated], ranks)
    torch.manual_seed(0)
    model = recipe.build_model().to(device)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = distributed.wrap(model, ranks, device)
    rows = torch.tensor(case["rows"][ranks.rank])
    step = recipe.step(wrapped, rows)
    step.loss.backward()
    names = ["loss", *step.terms]
    values = torch.stack([step.loss.detach(), *(v.detach().float().reshape(())
                                                for v in step.terms.values())])
    values = distributed.mean_over_ranks(values, ranks)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    # DDP left the same averaged gradient on every rank
    for name, grad in grads.items():
        other = distributed.gather_rows(grad[None], ranks)
        assert torch.equal(other[0], other[1]), name
    if ranks.is_main:
        torch.save({"initial": initial, "terms": dict(zip(names, values.tolist(), strict=True)),
                    "grads": grads},
                   out / f"{case['name']}.pt")


def fail_on_rank_one() -> None:
    if dist.get_rank() == 1:
        raise ValueError("rank one's own error")


def recording(cls, out: Path, fail_at: int | None):
    class Recording(cls):
        def step(self, model, rows):
            self.seen = getattr(self, "seen", [])
            rank = dist.get_rank()
            if fail_at is not None and rank == 1 and len(self.seen) + 1 == fail_at:
                raise RuntimeError(f"deliberate failure on rank {rank} at step {fail_at}")
            self.seen.append(rows.tolist())
            (out / f"rows{rank}.json").write_text(json.dumps(self.seen))
            return super().step(model, rows)

    return Recording


def main(spec_path: str, out_dir: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(out_dir)
    if spec["mode"] == "train":
        cls = recording(recipe_class(spec["recipe"]), out, spec.get("fail_at"))
        train(cls, cls.config_class(**spec["config"]))
        return
    ranks, device = distributed.start("cpu")
    try:
        for case in spec["cases"]:
            one_step(case, ranks, device, out)
        try:
            distributed.raise_together(ranks, device, fail_on_rank_one)
            raised = None
        except Exception as exc:  # what each rank raised is the result
            raised = {"type": type(exc).__name__, "message": str(exc)}
        (out / f"raised{ranks.rank}.json").write_text(json.dumps(raised))
        dist.barrier()
    finally:
        distributed.stop(ranks)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
