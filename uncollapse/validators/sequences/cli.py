"""``uncollapse validate sequences``."""

from __future__ import annotations

import click

from uncollapse.cli_paths import InputPath
from uncollapse.cli_ranges import SHARE, count
from uncollapse.cli_report import report_options

__all__ = ["COMMANDS", "validate_sequences_command"]


@click.command("sequences")
@click.argument("file", type=InputPath(missing_ok=True))
@click.option("--max-duplicate-share", type=SHARE, default=0.01, show_default=True,
              help="DUPLICATE_TARGETS when one target vector is more than this share of all "
                   "targets ...")
@click.option("--min-duplicates", type=count(2), default=3, show_default=True,
              help="... and occurs at least this many times.")
@report_options
def validate_sequences_command(file, max_duplicate_share, min_duplicates):
    """Check a next-vector sequence NPZ (dense or compact) against the contract.

    Keys, dtypes and shapes (docs/data-contracts.md, "Sequence file"); doc_ids present
    (MISSING_DOC_IDS); NaN/inf values with their positions; contexts that cross a document
    boundary; zero, duplicate and unit-norm vectors; arrays of different lengths; texts that
    do not decode (UTF-8 bytes and offsets, TEXTS_INVALID).

    Example:

    \b
        uncollapse validate sequences sequences.npz
        uncollapse validate sequences sequences.npz --format json --json report.json
    """
    from uncollapse.validators.sequences.rules import validate_sequences

    return validate_sequences(file, max_duplicate_share=max_duplicate_share,
                              min_duplicates=min_duplicates)


COMMANDS = {"validate": [validate_sequences_command]}
