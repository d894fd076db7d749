"""Optional dependencies: each heavy one belongs to an extra, named when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from uncollapse.errors import ToolError

__all__ = ["EXTRA_OF_MODULE", "MissingExtra", "missing_extra", "require"]


class MissingExtra(ToolError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtra`` saying which extra to install for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(_hint(module, extra, purpose)) from exc


def _hint(module: str, extra: str, purpose: str) -> str:
    return (f"{module} is not installed (needed for {purpose}): pip install "
            f"'uncollapse[{extra}]' (in a checkout: pip install -e '.[{extra}]')")


EXTRA_OF_MODULE = {
    "torch": "torch",
    "datasets": "hf",
    "sentence_transformers": "encoders",
    "tensorboard": "tensorboard",
    "matplotlib": "plots",
    "fastapi": "serve",
    "uvicorn": "serve",
}
"""Top-level module -> the extra that installs it."""


def missing_extra(exc: ImportError) -> str | None:
    """The install hint for an ImportError of an optional dependency, or None for any other."""
    if isinstance(exc, MissingExtra):
        return str(exc)
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(name)
    if extra is None:
        return None
    return _hint(name, extra, "this command")
