"""``uncollapse validate captions`` and ``uncollapse diagnose match-ids``."""

from __future__ import annotations

import click

from uncollapse.cli_paths import InputPath
from uncollapse.cli_ranges import NON_NEGATIVE_INT, SEED, THRESHOLD_SHARE, check_order, count
from uncollapse.cli_report import quiet_option, report_options

__all__ = ["COMMANDS", "diagnose_match_ids_command", "validate_captions_command"]


@click.command("captions")
@click.argument("table", type=InputPath(allow_dash=True, missing_ok=True, dir_okay=True,
                                         stream_hint="pass - to read standard input"))
@click.option("--group-size", type=count(1),
              help="Every group must have exactly this many captions.")
@click.option("--min-group", type=count(1), default=None,
              help="Smallest acceptable group (default 2: a group of one has no positive).")
@click.option("--max-group", type=count(1), default=None, help="Largest acceptable group.")
@click.option("--max-singleton-share", type=THRESHOLD_SHARE, default=0.9, show_default=True,
              help="GROUPS_ALL_UNIQUE when at least this share of groups holds one row.")
@click.option("--min-caption-chars", type=NON_NEGATIVE_INT, default=2, show_default=True,
              help="Shorter captions are implausible (CAPTION_LENGTH_IMPLAUSIBLE).")
@click.option("--max-caption-chars", type=count(1), default=1000, show_default=True,
              help="Longer captions are implausible (CAPTION_LENGTH_IMPLAUSIBLE).")
@quiet_option
@report_options
def validate_captions_command(table, group_size, min_group, max_group, max_singleton_share,
                              min_caption_chars, max_caption_chars, quiet, engine=None):
    """Check a caption table (Parquet or CSV; - reads standard input) against the pandera
    model CaptionTable: schema, grouping, positional ids, split leakage, duplicates, caption text.

    TABLE may be a folder or a quoted glob of Parquet shards: they are checked as one table by
    polars' streaming engine, in bounded memory (a table larger than memory).

    Example:
        uncollapse validate captions captions.parquet --group-size 5
        uncollapse validate captions captions.parquet --min-group 5 --max-group 7 --format github
        uncollapse validate captions captions.csv
        uncollapse validate captions captions/ --group-size 5
        uncollapse validate captions 'shards/part-*.parquet'
        cat captions.parquet | uncollapse validate captions -
        uncollapse validate captions captions.parquet --engine ray --ray-address auto
    """
    from uncollapse.progress import status
    from uncollapse.validators.captions import validate_captions as run

    check_order("--min-group", min_group, "--max-group", max_group)
    check_order("--min-caption-chars", min_caption_chars, "--max-caption-chars",
                max_caption_chars)
    if group_size is not None:
        min_group = max_group = group_size
    from uncollapse.cli_report import flags_in_errors

    flags = {"min_group": "--min-group", "max_group": "--max-group",
             "max_singleton_share": "--max-singleton-share",
             "min_caption_chars": "--min-caption-chars", "max_caption_chars": "--max-caption-chars"}
    if engine is not None and table == "-":
        raise click.UsageError("--engine ray reads a file its workers can read, not standard "
                               "input")
    with status(f"checking {table}", quiet=quiet or engine is not None), flags_in_errors(flags):
        return run(table, min_group=2 if min_group is None else min_group, max_group=max_group,
                   max_singleton_share=max_singleton_share, min_caption_chars=min_caption_chars,
                   max_caption_chars=max_caption_chars, engine=engine)


@click.command("match-ids")
@click.argument("table", type=InputPath(missing_ok=True))
@click.option("--batch-size", "-b", type=count(2), required=True, help="Rows per random batch.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--max-batches", type=count(1), default=2000, show_default=True,
              help="Random batches to draw for the simulated shares.")
@quiet_option
@report_options
def diagnose_match_ids_command(table, batch_size, seed, max_batches, quiet):
    """Group-size histogram and what uniformly random batches would hold.

    Prints the share of random batches of B rows with no positive pair, the mean number of
    positives per row, and a verdict.

    Example:
        uncollapse diagnose match-ids captions.parquet --batch-size 256
    """
    from uncollapse.cli_report import flags_in_errors
    from uncollapse.progress import status
    from uncollapse.validators.captions.match_ids import diagnose_match_ids as run

    with status(f"drawing random batches of {table}", quiet=quiet), \
            flags_in_errors({"batch_size": "--batch-size", "max_batches": "--max-batches"}):
        return run(table, batch_size=batch_size, seed=seed, max_batches=max_batches)


COMMANDS = {"validate": [validate_captions_command], "diagnose": [diagnose_match_ids_command]}
