"""Optional dependencies: each heavy one belongs to an extra, named when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from uncollapse import __version__
from uncollapse.errors import ToolError

__all__ = ["EXTRA_OF_MODULE", "WHEEL", "MissingExtra", "install_command", "missing_extra",
           "require"]

WHEEL = f"uncollapse-{__version__}-py3-none-any.whl"
"""The wheel ``pip wheel --no-deps . -w dist`` builds from a checkout (no release exists yet)."""


class MissingExtra(ToolError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtra`` saying which extra to install for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(_hint(module, extra, purpose)) from exc


def install_command(extra: str) -> str:
    """How to install ``extra``, in the two forms the README's Install section gives: from a
    checkout, or from the wheel built there. Every message naming an extra says this."""
    return (f"pip install -e '.[{extra}]' in a checkout of uncollapse, or "
            f"pip install 'dist/{WHEEL}[{extra}]' with its wheel")


def _hint(module: str, extra: str, purpose: str) -> str:
    return f"{module} is not installed (needed for {purpose}): {install_command(extra)}"


EXTRA_OF_MODULE = {
    "torch": "torch",
    "datasets": "hf",
    "sentence_transformers": "encoders",
    "tensorboard": "tensorboard",
    "matplotlib": "plots",
    "fastapi": "serve",
    "uvicorn": "serve",
    "ray": "ray",
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
