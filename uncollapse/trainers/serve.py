"""``uncollapse serve RUN_DIR``: an HTTP server for a trained next-vector (LVM) model.

``POST /predict`` with ``{"context": [[...D floats...] x C] or a batch of those,
"output": "decoder" | "cosine"}`` returns ``{"vectors": ..., "output": ..., "shape": [...]}``:
``y_dec`` (the raw-scale vector a decoder expects) or ``y_cos`` (its unit-norm copy, for cosine
retrieval). ``GET /health`` says what the model expects. Needs the ``serve`` extra (FastAPI,
uvicorn).

Every input gets a 4xx with the reason or an answer, never a 500: the body is refused past
``max_body`` bytes (413) before it is read whole, parsed and checked in a worker thread (so a
large body never holds up ``/health``), with integers read as floats (``10**400`` is infinite,
a 422, not an ``OverflowError``), and a model output that overflows float32 is a 422 too. Error
messages never repeat the input. With a token (``--token`` or ``UNCOLLAPSE_SERVE_TOKEN``), every
route but ``/health`` wants ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import secrets
import signal
import threading

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from uncollapse.trainers import checkpoints
from uncollapse.trainers.engine import resolve_device
from uncollapse.trainers.lvm.model import LVMModelConfig, NextVectorModel
from uncollapse.trainers.run_dir import RunDir

MAX_BATCH = 4096
DEFAULT_MAX_BODY = 1 << 20
TOKEN_ENV = "UNCOLLAPSE_SERVE_TOKEN"
OUTPUTS = ("decoder", "cosine")
PUBLIC_PATHS = frozenset({"/health"})
KEEP_ALIVE_S = 30
"""How long an idle keep-alive connection stays open. uvicorn's 5 s closed connections that a
busy client was about to reuse (1 read error in 4,000 requests of 200 clients)."""
log = logging.getLogger("uncollapse.serve")

PREDICT_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["context"], "properties": {
        "context": {"type": "array", "description": "[C, D] context vectors, or [B, C, D]"},
        "output": {"type": "string", "enum": list(OUTPUTS), "default": "decoder"}}}}}}}


def load_model(run_dir: str, device: str = "auto") -> tuple[NextVectorModel, torch.device]:
    """The LVM model of a run directory's newest checkpoint whose digest and contents check
    out."""
    run = RunDir(run_dir)
    target = resolve_device(device)
    models = []

    def fits(state: dict, path) -> None:
        if state["recipe"] != "lvm":
            raise ValueError(f"{run_dir}: a {state['recipe']!r} run; serve takes an lvm run")
        model = checkpoints.fit(path, lambda: NextVectorModel(
            LVMModelConfig(**state["model_config"])).to(target),
            "an lvm model (its model_config)")
        checkpoints.fit(path, lambda: model.load_state_dict(state["model"]), "its model")
        models.append(model)

    run.load_checkpoint(map_location=target, fits=fits)
    model = models[-1]
    model.eval()
    return model, target


def parse_request(body: bytes) -> tuple[object, str]:
    """``(context, output)`` of a ``/predict`` body, or HTTPException(422) saying what is wrong
    (never quoting the body)."""
    try:
        values = json.loads(body, parse_int=float)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        where = f" (line {exc.lineno}, column {exc.colno})" \
            if isinstance(exc, json.JSONDecodeError) else ""
        raise HTTPException(422, f"the body is not JSON{where}; send an object like "
                            '{"context": [[...], ...], "output": "decoder"}') from None
    if not isinstance(values, dict) or "context" not in values:
        raise HTTPException(422, 'the body must be a JSON object with a "context" array')
    output = values.get("output", "decoder")
    if output not in OUTPUTS:
        raise HTTPException(422, f'"output" must be one of {", ".join(OUTPUTS)}')
    return values["context"], output


def context_tensor(context, dim: int, max_length: int) -> tuple[torch.Tensor, bool]:
    """[B, C, D] float32 from nested lists and whether one [C, D] context was given, or
    HTTPException(422) saying what is wrong."""
    if not isinstance(context, list):
        raise HTTPException(422, '"context" must be an array: [C, D] vectors or [B, C, D]')
    try:
        tensor = torch.tensor(context, dtype=torch.float32)
    except Exception:  # ragged, strings, objects, nesting torch refuses: never a 500
        raise HTTPException(422, '"context" must be a rectangular array of numbers') from None
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


def create_app(run_dir: str, device: str = "auto", *, max_body: int = DEFAULT_MAX_BODY,
               token: str | None = None) -> Guard:
    """The ASGI app serving ``run_dir``'s model: FastAPI inside a ``Guard`` (body limit,
    bearer token, request count)."""
    model, target = load_model(run_dir, device)
    config = model.config
    app = FastAPI(title="uncollapse next-vector model", version="1")

    def answer(body: bytes) -> dict:
        """Parse, check and predict: CPU work, run in a worker thread."""
        context, output = parse_request(body)
        tensor, single = context_tensor(context, config.dim, config.context_length)
        with torch.no_grad():
            y_dec = model(tensor.to(target)).float()
        vectors = y_dec if output == "decoder" else NextVectorModel.cosine(y_dec)
        values = vectors.cpu()
        if not torch.isfinite(values).all():
            raise HTTPException(422, "the model's output overflows float32 for this context "
                                "(values far outside the training data's range)")
        result = values[0] if single else values
        return {"output": output, "shape": list(result.shape), "vectors": result.tolist()}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "dim": config.dim, "context_length": config.context_length,
                "arch": config.arch}

    @app.post("/predict", openapi_extra=PREDICT_SCHEMA)
    async def predict(request: Request) -> dict:
        body = await read_body(request, max_body)
        try:
            return await run_in_threadpool(answer, body)
        except HTTPException:
            raise
        except Exception:  # a bug, not the input's fault: logged, and the connection stays
            log.exception("POST /predict failed")
            raise HTTPException(500, "internal error; the server log has the details") \
                from None

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        # FastAPI's own handler repeats the input ("input": ...): a 50 MB body came back
        errors = [{"loc": e.get("loc"), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    return Guard(app, max_body=max_body, token=token)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or HTTPException(413) as soon as it passes ``limit`` bytes (a chunked upload
    is not read further)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_large(limit), headers={"connection": "close"})
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> str:
    return (f"the body is larger than {limit} bytes; send fewer contexts per request, or start "
            "the server with a larger --max-body")


class Guard:
    """ASGI middleware in front of the app: counts requests, checks the bearer token, and
    refuses a body whose Content-Length passes the limit before any of it is read."""

    def __init__(self, app, *, max_body: int, token: str | None):
        self.app = app
        self.max_body = max_body
        self.token = token.encode() if token else None
        self.requests = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.requests += 1
        headers = dict(scope["headers"])
        if self.token is not None and scope["path"] not in PUBLIC_PATHS:
            given = headers.get(b"authorization", b"")
            if not secrets.compare_digest(given, b"Bearer " + self.token):
                return await JSONResponse(
                    {"detail": "missing or wrong token: send 'Authorization: Bearer <token>'"},
                    status_code=401,
                    headers={"www-authenticate": "Bearer", "connection": "close"},
                )(scope, receive, send)
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body:
            return await JSONResponse({"detail": too_large(self.max_body)}, status_code=413,
                                      headers={"connection": "close"})(scope, receive, send)
        return await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"()": "uvicorn.logging.DefaultFormatter", "use_colors": False,
                    "fmt": "%(asctime)s %(levelname)s %(message)s"},
        "access": {"()": "uvicorn.logging.AccessFormatter", "use_colors": False,
                   "fmt": '%(asctime)s %(client_addr)s "%(request_line)s" %(status_code)s'},
    },
    "handlers": {
        "default": {"class": "logging.StreamHandler", "formatter": "default",
                    "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "access",
                   "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        "uncollapse.serve": {"handlers": ["default"], "level": "INFO", "propagate": False},
    },
}
"""One line per request (time, client, request line, status) and warnings, on stderr."""


def serve(app: Guard, host: str, port: int, *, say=print) -> int:
    """Run ``app`` until SIGINT or SIGTERM; say where it listens and why it stopped.

    Returns the exit code: 130 after Ctrl-C (SIGINT), 0 after SIGTERM.
    """
    import uvicorn

    class Server(uvicorn.Server):
        stopped_by: int | None = None

        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:
                bound = self.servers[0].sockets[0].getsockname()
                shown = f"[{host}]" if ":" in host else host
                say(f"listening on http://{shown}:{bound[1]} (Ctrl-C to stop)")

        def handle_exit(self, sig, frame):
            self.stopped_by = self.stopped_by or sig
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises the signal after shutting down, which turns Ctrl-C into a
            # KeyboardInterrupt traceback; stop here instead and say so
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    server = Server(uvicorn.Config(app, host=host, port=port, log_config=LOG_CONFIG,
                                   access_log=True, server_header=False,
                                   timeout_keep_alive=KEEP_ALIVE_S))
    server.run()
    how = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}.get(
        server.stopped_by, "the server's own shutdown")
    say(f"stopped by {how} after {app.requests} request(s)")
    return 130 if server.stopped_by == signal.SIGINT else 0

