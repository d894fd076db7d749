"""``uncollapse build scenes``."""

from __future__ import annotations

import click

from uncollapse.cli_ranges import SEED, count
from uncollapse.cli_report import flags_in_errors
from uncollapse.pipeline.build_cli import build_options

__all__ = ["COMMANDS", "build_scenes_command"]


@click.command("scenes")
@click.option("--num", type=count(1), required=True, help="Number of scenes.")
@click.option("--size", type=count(8), default=64, show_default=True,
              help="Image height and width in pixels.")
@click.option("--max-objects", type=count(1, 255), default=6, show_default=True,
              help="K: most shapes per scene (mask labels 1..K).")
@click.option("--min-objects", type=count(1), default=1, show_default=True,
              help="Fewest shapes per scene.")
@click.option("--min-visible", type=count(1), default=4, show_default=True,
              help="Every object keeps at least this many visible pixels.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--compress/--no-compress", default=True, show_default=True,
              help="Write a compressed NPZ (much smaller; flat colours compress well).")
@build_options
def build_scenes_command(num, size, max_objects, min_objects, min_visible, seed, compress,
                         cache, rebuild, quiet):
    """Generate multi-object scenes (circles, squares, triangles, diamonds) with instance masks.

    Writes an NPZ with images [N,H,W,3] uint8, masks [N,H,W] uint8 (0 background, 1..K in
    painting order; later shapes occlude earlier ones) and num_objects [N] int8. Every object
    stays visible (--min-visible pixels). Loads with np.load(path, allow_pickle=False).

    Example:
        uncollapse build scenes --num 10000 --size 64 --max-objects 6 --seed 0 -o scenes.npz
    """
    from uncollapse.pipeline.scenes import build_scenes
    from uncollapse.progress import status

    with status(f"generating {num:,} scenes of {size}x{size}", quiet=quiet), \
            flags_in_errors({"num": "--num", "size": "--size", "max_objects": "--max-objects",
                             "min_objects": "--min-objects", "min_visible": "--min-visible"}):
        return build_scenes(num, size, max_objects, seed=seed, min_objects=min_objects,
                            min_visible=min_visible, compress=compress, cache=cache,
                            rebuild=rebuild)


COMMANDS = [build_scenes_command]
