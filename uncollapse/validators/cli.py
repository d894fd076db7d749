"""Commands of uncollapse.validators: each family's ``validate`` and ``diagnose`` commands (read
from the families table), the batch audit and the collapse diagnostics."""

from __future__ import annotations

from uncollapse.families import family_modules
from uncollapse.validators.batches import cli as batches_cli
from uncollapse.validators.collapse import cli as collapse_cli
from uncollapse.validators.doctor import cli as doctor_cli

__all__ = ["COMMANDS"]


def _commands() -> dict[str, list]:
    """Each family's commands in the order of the families table, then the batch audit's, the
    collapse diagnostics' and the doctor (a command of the root group)."""
    packages = [module for _, module in family_modules("validators", "cli")]
    commands: dict[str, list] = {"validate": [], "diagnose": [], "": []}
    for module in (*packages, batches_cli, collapse_cli, doctor_cli):
        for parent, group in module.COMMANDS.items():
            commands[parent] += group
    return commands


COMMANDS = _commands()
