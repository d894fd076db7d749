"""Commands of uncollapse.validators: each family's ``validate`` and ``diagnose`` commands (read
from the families table), the batch audit and the collapse diagnostics."""

from __future__ import annotations

from uncollapse.families import family_modules
from uncollapse.validators.batches import cli as batches_cli
from uncollapse.validators.collapse import cli as collapse_cli

__all__ = ["COMMANDS"]


def _commands() -> dict[str, list]:
    """Each family's commands in the order of the families table, then the batch audit's and
    the collapse diagnostics'."""
    packages = [module for _, module in family_modules("validators", "cli")]
    commands: dict[str, list] = {"validate": [], "diagnose": []}
    for module in (*packages, batches_cli, collapse_cli):
        for parent, group in module.COMMANDS.items():
            commands[parent] += group
    return commands


COMMANDS = _commands()
