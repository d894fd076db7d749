"""``uncollapse serve RUN_DIR``: an HTTP server for a trained next-vector (LVM) model.

``POST /predict`` with ``{"context": [[...D floats...] x C] or a batch of those,
"output": "decoder" | "cosine"}`` returns ``{"vectors": ..., "output": ..., "shape": [...]}``:
``y_dec`` (the raw-scale vector a decoder expects) or ``y_cos`` (its unit-norm copy, for cosine
retrieval). Shapes and values are validated: a wrong dimension, a context longer than the
model's, an empty context or a non-finite value is a 422 with the reason, never a 500.
``GET /health`` says what the model expects. Needs the ``serve`` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

from typing import Literal

import torch
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from uncollapse.trainers import checkpoints
from uncollapse.trainers.engine import resolve_device
from uncollapse.trainers.lvm_models import LVMModelConfig, NextVectorModel
from uncollapse.trainers.run_dir import RunDir

MAX_BATCH = 4096


class PredictRequest(BaseModel):
    context: list = Field(description="[C, D] context vectors, or [B, C, D] for a batch")
    output: Literal["decoder", "cosine"] = "decoder"


def load_model(run_dir: str, device: str = "auto") -> tuple[NextVectorModel, torch.device]:
    """The LVM model of a run directory's newest readable checkpoint."""
    run = RunDir(run_dir)
    target = resolve_device(device)
    state, path = run.load_checkpoint(map_location=target)
    if state["recipe"] != "lvm":
        raise ValueError(f"{run_dir}: a {state['recipe']!r} run; serve takes an lvm run")
    model = checkpoints.fit(path, lambda: NextVectorModel(
        LVMModelConfig(**state["model_config"])).to(target), "an lvm model (its model_config)")
    checkpoints.fit(path, lambda: model.load_state_dict(state["model"]), "its model")
    model.eval()
    return model, target


def context_tensor(context: list, dim: int, max_length: int) -> tuple[torch.Tensor, bool]:
    """[B, C, D] float32 from nested lists and whether one [C, D] context was given, or
    HTTPException(422) saying what is wrong."""
    try:
        tensor = torch.tensor(context, dtype=torch.float32)
    except (TypeError, ValueError) as exc:
        raise HTTPException(422, f"context must be a rectangular array of numbers: {exc}") \
            from exc
    single = tensor.dim() == 2
    if single:
        tensor = tensor[None]
    if tensor.dim() != 3:
        raise HTTPException(422, f"context must be [C, D] or [B, C, D], got shape "
                            f"{list(tensor.shape)}")
    batch, length, width = tensor.shape
    if width != dim:
        raise HTTPException(422, f"context vectors have {width} dimensions; the model takes "
                            f"{dim}")
    if not 1 <= length <= max_length:
        raise HTTPException(422, f"context holds {length} vectors; give 1 to {max_length}")
    if not 1 <= batch <= MAX_BATCH:
        raise HTTPException(422, f"batch of {batch}; give 1 to {MAX_BATCH} contexts")
    if not torch.isfinite(tensor).all():
        bad = torch.nonzero(~torch.isfinite(tensor))[0].tolist()
        raise HTTPException(422, f"context holds a non-finite value at index {bad} (NaN, "
                            "infinity, or beyond the float32 range)")
    return tensor, single


def create_app(run_dir: str, device: str = "auto") -> FastAPI:
    """The FastAPI app serving ``run_dir``'s model."""
    model, target = load_model(run_dir, device)
    config = model.config
    app = FastAPI(title="uncollapse next-vector model", version="1")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "dim": config.dim, "context_length": config.context_length,
                "arch": config.arch}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict:
        context, single = context_tensor(request.context, config.dim, config.context_length)
        with torch.no_grad():
            y_dec = model(context.to(target)).float()
        vectors = y_dec if request.output == "decoder" else NextVectorModel.cosine(y_dec)
        values = vectors.cpu()
        if not torch.isfinite(values).all():
            raise HTTPException(500, "the model produced a non-finite output")
        result = values[0] if single else values
        return {"output": request.output, "shape": list(result.shape),
                "vectors": result.tolist()}

    return app
