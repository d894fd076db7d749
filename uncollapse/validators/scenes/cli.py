"""``uncollapse validate scenes``."""

from __future__ import annotations

import click

from uncollapse.cli_paths import InputPath
from uncollapse.cli_ranges import count
from uncollapse.cli_report import report_options

__all__ = ["COMMANDS", "validate_scenes_command"]


@click.command("scenes")
@click.argument("file", type=InputPath(missing_ok=True))
@click.option("--min-visible", type=count(1), default=4, show_default=True,
              help="SCENE_OBJECT_INVISIBLE for objects with fewer visible pixels.")
@report_options
def validate_scenes_command(file, min_visible):
    """Check a scene NPZ: keys, dtypes and matching shapes; mask labels agree with
    num_objects; every object visible.

    Example:
        uncollapse validate scenes scenes.npz --min-visible 4
    """
    from uncollapse.validators.scenes.rules import validate_scenes

    return validate_scenes(file, min_visible=min_visible)


COMMANDS = {"validate": [validate_scenes_command]}
