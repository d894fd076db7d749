"""What every ``uncollapse build ...`` command shares: the cache options and publishing results."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from uncollapse.atomic import atomic_copy


def build_options(command):
    """Add ``-o/--output``, ``--rebuild`` and ``--cache-dir`` to a build command."""

    @click.option("-o", "--output", type=click.Path(dir_okay=False),
                  help="Also write the result here (atomically).")
    @click.option("--rebuild", is_flag=True, help="Build again even if the cache has it.")
    @click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                  help="Cache root (default: $UNCOLLAPSE_CACHE, else the platform cache).")
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, **kwargs)

    return wrapper


def publish(entry, name: str, output: str | None) -> Path:
    """Copy the cached file ``name`` of ``entry`` to ``output`` atomically; say where it is."""
    cached = entry.file(name)
    state = "cache hit" if entry.hit else "built"
    click.echo(f"{state}: {entry.stage} {entry.key[:16]} -> {cached}", err=True)
    if output:
        atomic_copy(cached, output)
        click.echo(f"wrote {output}", err=True)
        return Path(output)
    return cached
