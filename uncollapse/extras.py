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
