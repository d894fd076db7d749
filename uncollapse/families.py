"""The one table of data families and of training recipes.

Everything that lists families or recipes reads these tables: the command line (each family's
``build``, ``validate`` and ``diagnose`` commands, each recipe's ``train`` command), the registry
of finding codes, and the generated reference in ``docs/``. Adding a family is one line in
``FAMILIES`` plus its column of small files; adding a recipe is one line in ``RECIPES`` plus its
folder (``docs/extending.md`` walks through both).

A family's modules sit at the same names in every layer, and each layer is optional:

- ``uncollapse/data/<family>/contract.py``: column or key constants, dtypes, and
  ``DOC_SECTIONS`` (what ``docs/data-contracts.md`` says of it); its readers, writers and torch
  Datasets beside it;
- ``uncollapse/pipeline/<family>/cli.py``: ``COMMANDS``, a list of ``build`` commands;
- ``uncollapse/validators/<family>/rules.py``: its rules, each with its finding code;
- ``uncollapse/validators/<family>/cli.py``: ``COMMANDS``,
  ``{"validate": [...], "diagnose": [...]}``.

A family's package ``__init__`` in each layer stays light: looking up its ``cli.py`` imports
it, and the command line must start fast.

A recipe's config, model, recipe, plots and command options live in
``uncollapse/trainers/<recipe>/``; ``config.py`` there defines the dataclass named in the table.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

__all__ = ["FAMILIES", "RECIPES", "Family", "RecipeEntry", "family", "family_modules", "recipe"]


@dataclass(frozen=True)
class Family:
    """One data family: its name (also its package name in every layer) and what it holds."""

    name: str
    summary: str

    def module_name(self, layer: str, leaf: str) -> str:
        """``uncollapse.<layer>.<family>.<leaf>``, e.g. ``uncollapse.validators.captions.rules``."""
        return f"uncollapse.{layer}.{self.name}.{leaf}"

    def module(self, layer: str, leaf: str) -> ModuleType | None:
        """That module imported, or None where the family has no such module in that layer.

        Only the family's package (its ``__init__``, kept light) and the module itself are
        imported; a layer where the family is a plain module rather than a package is not.
        """
        try:
            package = importlib.util.find_spec(f"uncollapse.{layer}.{self.name}")
        except ModuleNotFoundError:  # no such layer
            return None
        if package is None or package.submodule_search_locations is None:
            return None
        name = self.module_name(layer, leaf)
        return None if importlib.util.find_spec(name) is None else importlib.import_module(name)


@dataclass(frozen=True)
class RecipeEntry:
    """One training recipe: its name (``uncollapse train <name>``), the family it trains on,
    the config dataclass that declares its options, and the lower bound of each logged term a
    correct computation never goes below (the recipe's loss guard holds it to them; the doctor
    judges logs of any framework by them)."""

    name: str
    family: str
    config: str
    summary: str
    lower_bounds: tuple[tuple[str, float], ...] = ()

    @property
    def package(self) -> str:
        return f"uncollapse.trainers.{self.name}"

    def config_class(self) -> type:
        """The recipe's config dataclass (imports its package's ``config`` module, not torch)."""
        return getattr(importlib.import_module(f"{self.package}.config"), self.config)


FAMILIES: tuple[Family, ...] = (
    Family("captions", "image-caption tables (Parquet) with true image_id and match_id"),
    Family("sequences", "next-vector sequence files (NPZ) with doc_ids"),
    Family("attributes", "attribute tables (Parquet) for attribute-flip training"),
    Family("scenes", "multi-object scene files (NPZ) with masks"),
)

RECIPES: tuple[RecipeEntry, ...] = (
    RecipeEntry("contrastive", "captions", "ContrastiveConfig",
           "image-text contrastive training with grouped batches",
           (("infonce", 0.0), ("infonce_text_to_image", 0.0), ("infonce_image_to_text", 0.0))),
    RecipeEntry("lvm", "sequences", "LVMConfig", "next-vector prediction over sequence files",
           (("infonce", 0.0), ("moment", 0.0), ("variance", 0.0), ("mse", 0.0),
            ("cosine", 0.0), ("doc_infonce", 0.0))),
    RecipeEntry("flow", "attributes", "FlowConfig", "attribute flow on embeddings",
           (("infonce", 0.0), ("identity", 0.0), ("divergence", 0.0), ("curl", 0.0))),
    # the slot diagnostics are cosines, bounded by -1; the loss terms by 0
    RecipeEntry("slots", "scenes", "SlotsConfig", "slot attention on scene files",
           (("reconstruction", 0.0), ("diversity", 0.0), ("init_slot_cosine", -1.0),
            ("slot_cosine", -1.0))),
)


def family(name: str) -> Family:
    """The family called ``name``; a ValueError lists the known ones."""
    for entry in FAMILIES:
        if entry.name == name:
            return entry
    raise ValueError(f"unknown family {name!r}; one of {', '.join(f.name for f in FAMILIES)}")


def recipe(name: str) -> RecipeEntry:
    """The recipe called ``name``; a ValueError lists the known ones."""
    for entry in RECIPES:
        if entry.name == name:
            return entry
    raise ValueError(f"unknown recipe {name!r}; one of {', '.join(r.name for r in RECIPES)}")


def family_modules(layer: str, leaf: str) -> list[tuple[Family, ModuleType]]:
    """Every family's ``uncollapse.<layer>.<family>.<leaf>`` module that exists, in table order."""
    found = []
    for entry in FAMILIES:
        module = entry.module(layer, leaf)
        if module is not None:
            found.append((entry, module))
    return found
