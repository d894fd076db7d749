"""``uncollapse cache ...``: list, verify, explain and clear cached artifacts."""

from __future__ import annotations

import click

from uncollapse.cli_paths import DirectoryPath
from uncollapse.cli_report import quiet_option, report_options

root_option = click.option("--cache-dir", type=DirectoryPath(), default=None,
                           help="Cache root (default: $UNCOLLAPSE_CACHE, else the platform "
                                "cache directory).")


BUILT_IN_STAGES = ("attributes", "captions", "chunk-vectors", "chunks", "scenes", "sequences")
"""The stages of the ``build`` commands (a test keeps this list equal to the package's)."""


def _cache(cache_dir):
    from uncollapse.cache.store import Cache

    return Cache(cache_dir)


def _known_stage(cache, stage: str | None) -> str | None:
    """``stage`` if it is a built-in stage or one the cache holds; else exit 2 listing them (a
    misspelt ``--stage captionz`` would otherwise clear or list nothing and exit 0)."""
    from uncollapse.cache.store import check_stage_name
    from uncollapse.errors import ToolError

    if stage is None:
        return None
    check_stage_name(stage)
    present = cache.stage_names()
    if stage in BUILT_IN_STAGES or stage in present:
        return stage
    others = sorted(set(present) - set(BUILT_IN_STAGES))
    raise ToolError(f"no stage {stage!r}: the build stages are {', '.join(BUILT_IN_STAGES)}"
                    + (f"; this cache also holds {', '.join(others)}" if others else "")
                    + " (`uncollapse cache ls` lists the entries)")


@click.group("cache")
def cache_group():
    """Content-addressed store of built artifacts."""


@cache_group.command("path")
@root_option
def path_cmd(cache_dir):
    """Print the cache root.

    Example:
        uncollapse cache path
    """
    click.echo(str(_cache(cache_dir).root))


@cache_group.command("ls")
@root_option
@click.option("--stage", help="Only entries of this stage.")
def ls_cmd(cache_dir, stage):
    """List cached entries: stage, key, rows, size, created (or why an entry is broken).

    Example:
        uncollapse cache ls --stage captions
    """
    cache = _cache(cache_dir)
    entries = cache.entries(_known_stage(cache, stage))
    if not entries:
        click.echo("no entries")
    for entry in entries:
        if entry.broken:
            click.echo(f"{entry.stage:<12} {entry.key[:16]}  BROKEN: {entry.broken}; remove it "
                       f"with `uncollapse cache clear --stage {entry.stage}`")
            continue
        size = sum(f["bytes"] for f in entry.files.values())
        rows = sum(entry.manifest.get("rows", {}).values())
        click.echo(f"{entry.stage:<12} {entry.key[:16]}  rows={rows:<10} bytes={size:<10} "
                   f"{entry.manifest.get('created', '')}")


@cache_group.command("verify")
@root_option
@click.argument("key", required=False)
@quiet_option
@report_options
def verify_cmd(cache_dir, key, quiet):
    """Re-hash cached files against their manifests (exit 1 on any mismatch).

    Example:
        uncollapse cache verify            # every entry
        uncollapse cache verify 3fa9c2     # one entry, by key prefix
    """
    from uncollapse.cache.verify import validate_cache
    from uncollapse.progress import status

    cache = _cache(cache_dir)
    with status(f"re-hashing the files of {cache.root}", quiet=quiet):
        return validate_cache(cache, key)


@cache_group.command("explain")
@root_option
@click.argument("key_a")
@click.argument("key_b")
def explain_cmd(cache_dir, key_a, key_b):
    """Show which key inputs differ between two entries (why they are not the same artifact).

    Example:
        uncollapse cache explain 3fa9c2 81d0be
    """
    diffs = _cache(cache_dir).explain(key_a, key_b)
    if not diffs:
        click.echo("the key inputs are identical")
    for path, a, b in diffs:
        click.echo(f"{path}:\n  {key_a}: {a}\n  {key_b}: {b}")


@cache_group.command("clear")
@root_option
@click.option("--stage", help="Only entries of this stage.")
def clear_cmd(cache_dir, stage):
    """Remove cached entries (and leftovers of crashed builds).

    Entries and temporary directories that a running build holds are kept.

    Example:
        uncollapse cache clear --stage captions
    """
    cache = _cache(cache_dir)
    removed, kept = cache.clear_counts(_known_stage(cache, stage))
    line = f"removed {removed} entr{'y' if removed == 1 else 'ies'}"
    if kept:
        line += f"; kept {kept} in use by a running build"
    click.echo(line)


COMMANDS = {"": [cache_group]}
