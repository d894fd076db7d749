"""Checkpoint files: written with their SHA-256, read back only when it matches.

``step-00001234.pt`` is written through a temporary file beside it and renamed into place; its
digest, computed from the bytes as they are written, goes first into
``step-00001234.pt.sha256`` (the ``sha256sum`` format, so ``sha256sum -c`` checks it too). A
reader hashes the bytes it loads and refuses a file whose digest differs, that has no digest,
or whose contents are not a training state of the expected shape (``check_state``), so a flipped
bit, a torn write or a hostile file is never trained on, evaluated or served.

What this defends against is a faulty disk, a torn copy or a hand-edited file. Whoever can
write the run directory can also write a matching digest: the structure checks then still
refuse anything that is not a training state (torch loads with ``weights_only=True``, so no
code runs), and a well-formed state with other weights is, by design, accepted.
"""

from __future__ import annotations

import errno
import hashlib
import io
import math
import re
from pathlib import Path

import torch

from uncollapse.atomic import atomic_path
from uncollapse.errors import InputError, ToolError

DIGEST_SUFFIX = ".sha256"
NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class CheckpointError(InputError):
    """A checkpoint that cannot be used: unreadable, digest differs, or not a training state."""


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def no_space_error(path: Path, exc: OSError, what: str, after: str) -> ToolError:
    """The message of a write that failed for want of space (or quota), naming the path."""
    reason = "no space left on device" if exc.errno in NO_SPACE else (exc.strerror or str(exc))
    return ToolError(f"{path}: {reason} while writing {what}; {after}")


class _HashingWriter:
    """A file object for ``torch.save`` that hashes the bytes on their way to the file."""

    def __init__(self, fh):
        self.fh = fh
        self.sha = hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def save(path: Path, state: dict) -> str:
    """Write ``state`` to ``path`` (atomically) and its digest beside it; return the digest.

    The digest is written before the checkpoint is renamed into place, so a checkpoint on disk
    always has its digest; a crash in between leaves a digest without its file, which readers
    ignore. A full disk is a ToolError naming the path, and leaves the older checkpoints.
    """
    path = Path(path)
    after = ("the older checkpoints are kept; free space, then continue with --resume")
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as fh:
                writer = _HashingWriter(fh)
                torch.save(state, writer)
        except OSError as exc:
            raise no_space_error(path, exc, "a checkpoint", after) from exc
        digest = writer.sha.hexdigest()
        try:
            with atomic_path(digest_path(path)) as side:
                side.write_text(f"{digest}  {path.name}\n", encoding="utf-8")
        except ToolError as exc:
            raise ToolError(f"{exc}; {after}") from exc
    return digest


def recorded_digest(path: Path) -> str:
    """The digest written beside ``path`` at save, or CheckpointError saying why there is none."""
    side = digest_path(path)
    try:
        text = side.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CheckpointError(path, f"no digest recorded ({side.name} is missing), so it cannot "
                              "be verified; if you trust the file, record one with "
                              f"`sha256sum {path.name} > {side.name}` in its folder") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"its digest file {side.name} cannot be read ({exc})") \
            from exc
    fields = text.split()
    if len(fields) != 2 or fields[1] != path.name or len(fields[0]) != 64 \
            or any(c not in "0123456789abcdef" for c in fields[0]):
        raise CheckpointError(path, f"its digest file {side.name} is damaged (expected "
                              f"'<64 hex digits>  {path.name}')")
    return fields[0]


def load(path: Path, map_location="cpu") -> dict:
    """The training state in ``path``, verified against its digest and ``check_state``.

    Raises:
        CheckpointError: no digest, a digest that differs, an unreadable file, or contents
            that are not a training state; the message says which.
    """
    path = Path(path)
    expected = recorded_digest(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CheckpointError(path, f"its sha256 {actual[:12]}... differs from the "
                              f"{expected[:12]}... recorded when it was written: the file was "
                              "damaged or changed since")
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # a zip or pickle torch cannot read: never trusted, never raw
        raise CheckpointError(path, f"not a readable torch checkpoint ({_short(exc)})") from exc
    check_state(state, path)
    return state


INT_FIELDS = ("step", "epoch", "batch_in_epoch")
DICT_FIELDS = ("model", "optimizer", "sampler", "rng", "model_config")


def check_state(state, path: Path) -> None:
    """Raise CheckpointError unless ``state`` has the shape ``engine.train`` saves: integer
    counters, a recipe name, dicts for the model, optimiser, sampler, RNG and model config, a
    model of finite floating-point tensors and a CPU RNG state."""
    if not isinstance(state, dict):
        raise CheckpointError(path, f"holds a {type(state).__name__}, not a training state "
                              "(a dict written by `uncollapse train`)")
    missing = [k for k in (*INT_FIELDS, *DICT_FIELDS, "recipe") if k not in state]
    if missing:
        raise CheckpointError(path, f"is not a training state: it lacks {', '.join(missing)}")
    for key in INT_FIELDS:
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
            raise CheckpointError(path, f"'{key}' is {_kind(value)}; expected a whole number "
                                  "of at least 0")
    named = re.fullmatch(r"step-(\d+)\.pt", Path(path).name)
    if named and int(named.group(1)) != state["step"]:
        raise CheckpointError(path, f"holds step {state['step']}, not the step its name says")
    if not isinstance(state["recipe"], str):
        raise CheckpointError(path, f"'recipe' is {_kind(state['recipe'])}; expected a name")
    for key in DICT_FIELDS:
        if not isinstance(state[key], dict):
            raise CheckpointError(path, f"'{key}' is {_kind(state[key])}; expected a dict")
    if "train_model" in state:  # a run with --ema-decay: the training weights beside it
        if not isinstance(state["train_model"], dict):
            raise CheckpointError(path, f"'train_model' is {_kind(state['train_model'])}; "
                                  "expected a dict")
        updates = state.get("ema_updates")
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise CheckpointError(path, f"'ema_updates' is {_kind(updates)}; expected a whole "
                                  "number of at least 0")
    for key in ("model", "train_model"):
        for name, tensor in state.get(key, {}).items():
            if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
                raise CheckpointError(path, f"{key} entry {str(name)[:80]!r} is "
                                      f"{_kind(tensor)}; expected a tensor")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(path, f"{key} weight {name!r} holds NaN or infinity; the "
                                      "run diverged before this checkpoint or the file was "
                                      "changed")
    cpu = state["rng"].get("cpu")
    if not isinstance(cpu, torch.Tensor) or cpu.dtype != torch.uint8:
        raise CheckpointError(path, "'rng' has no CPU generator state (a uint8 tensor)")
    for key, value in state["model_config"].items():
        if isinstance(value, float) and not math.isfinite(value):
            raise CheckpointError(path, f"model_config {key!r} is {value}")


def fit(path: Path, action, what: str):
    """Run ``action()`` (loading a checkpoint's state into a model, optimiser, sampler), turning
    the error of a state that does not fit into a CheckpointError naming ``path``."""
    try:
        return action()
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            MemoryError) as exc:
        raise CheckpointError(path, f"does not fit {what}: {_short(exc)}") from exc


def remove(path: Path) -> None:
    """Delete a checkpoint and its digest (the file first: a digest alone is ignored)."""
    path.unlink(missing_ok=True)
    digest_path(path).unlink(missing_ok=True)


def _kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, (bool, int, float, str)):
        return f"{value!r:.40}"
    return f"a {type(value).__name__}"


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " ..."
