"""Commands of uncollapse.pipeline: each family's ``build`` commands, in the families table's
order (``uncollapse.families``), from ``uncollapse/pipeline/<family>/cli.py``."""

from __future__ import annotations

from uncollapse.families import family_modules

__all__ = ["COMMANDS"]

COMMANDS = {"build": [command for _, module in family_modules("pipeline", "cli")
                      for command in module.COMMANDS]}
