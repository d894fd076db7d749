"""The public names of a validators package, imported from their modules on first use.

A package's ``__init__`` runs whenever any of its modules is imported: ``uncollapse --help``
imports every ``cli.py``, and the trainers import ``validators/captions/match_ids.py`` on hosts
without pandera or polars. So a package names its public functions and classes here instead of
importing the modules that define them (pandera, polars or torch would come along).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

__all__ = ["lazy_names"]


def lazy_names(package: str, names: dict[str, str]) -> tuple[Callable, Callable]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` for ``names``.

    Args:
        package: the package's ``__name__``.
        names: public name -> the package's module that defines it (``"rules"``); a name that
            maps to itself is that module.

    Example:
        >>> __getattr__, __dir__ = lazy_names(__name__, {"validate_captions": "rules"})
    """
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(f"{package}.{names[name]}")
        return module if names[name] == name else getattr(module, name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
