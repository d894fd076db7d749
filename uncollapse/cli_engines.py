"""``--engine local|ray`` and ``--ray-address``, for the commands an engine can run.

The root group adds them (``add_engine_options``), not the commands' own modules: an engine
runs the families' functions (``uncollapse.engines`` imports pipeline and validators), so a
family's command module that imported it would close an import cycle. A command in
``ENGINE_COMMANDS`` takes ``engine``: None (this process) or a ``RayEngine``, quiet when the
command's ``--quiet`` is given.
"""

from __future__ import annotations

import functools

import click

from uncollapse.engines import ENGINES

__all__ = ["ENGINE_COMMANDS", "add_engine_options"]

ENGINE_COMMANDS = {("build", "captions"), ("build", "chunks"), ("build", "sequences"),
                   ("validate", "captions")}
"""(group, command) of every command that takes ``--engine``."""


def add_engine_options(command: click.Command) -> None:
    """Give ``command`` the options ``--engine`` and ``--ray-address`` (once)."""
    if getattr(command, "_engine_options", False):
        return
    command._engine_options = True
    command.params += [
        click.Option(["--engine"], type=click.Choice(ENGINES), default="local",
                     show_default=True,
                     help="Where the work runs: local (this process) or ray (Ray Data: the "
                          "cluster at --ray-address or $RAY_ADDRESS, else a local Ray; extra "
                          "'ray')."),
        click.Option(["--ray-address"], metavar="ADDRESS", default=None,
                     help="Ray cluster for --engine ray (default: $RAY_ADDRESS; without one a "
                          "local Ray starts)."),
    ]
    callback = command.callback

    @functools.wraps(callback)
    def with_engine(*args, engine, ray_address, **kwargs):
        if ray_address and engine != "ray":
            raise click.UsageError("--ray-address needs --engine ray")
        if engine == "ray":
            from uncollapse.engines.ray import RayEngine

            engine = RayEngine(address=ray_address, quiet=bool(kwargs.get("quiet")))
        else:
            engine = None
        return callback(*args, engine=engine, **kwargs)

    command.callback = with_engine
