"""Optional dependencies: each heavy one belongs to an extra, named when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from uncollapse.errors import ToolError


class MissingExtra(ToolError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtra`` saying which extra to install for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{purpose} need(s) {module}, which is not installed: "
            f"pip install 'uncollapse[{extra}]' (in a checkout: pip install -e '.[{extra}]')"
        ) from exc


EXTRA_OF_MODULE = {
    "torch": "torch",
    "datasets": "hf",
    "sentence_transformers": "encoders",
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
    return (f"this command needs {name}, which is not installed: pip install "
            f"'uncollapse[{extra}]' (in a checkout: pip install -e '.[{extra}]')")
