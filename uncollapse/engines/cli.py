"""``--engine local|ray`` and ``--ray-address``: the options of every command an engine runs."""

from __future__ import annotations

import functools

import click

from uncollapse.engines import ENGINES

__all__ = ["engine_options"]


def engine_options(command):
    """Add ``--engine`` and ``--ray-address``; ``command`` gets ``engine``: None (this process)
    or a ``RayEngine`` (quiet when the command's ``--quiet`` is given)."""

    @click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                  help="Where the work runs: local (this process) or ray (Ray Data: the "
                       "cluster at --ray-address or $RAY_ADDRESS, else a local Ray; extra "
                       "'ray').")
    @click.option("--ray-address", metavar="ADDRESS", default=None,
                  help="Ray cluster for --engine ray (default: $RAY_ADDRESS; without one a "
                       "local Ray starts).")
    @functools.wraps(command)
    def wrapper(*args, engine, ray_address, **kwargs):
        if ray_address and engine != "ray":
            raise click.UsageError("--ray-address needs --engine ray")
        if engine == "ray":
            from uncollapse.engines.ray import RayEngine

            engine = RayEngine(address=ray_address, quiet=bool(kwargs.get("quiet")))
        else:
            engine = None
        return command(*args, engine=engine, **kwargs)

    return wrapper
