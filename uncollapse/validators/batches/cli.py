"""``uncollapse validate batches``: audit what a sampler puts in each batch."""

from __future__ import annotations

import click

from uncollapse.cli_paths import InputPath
from uncollapse.cli_ranges import MAX_EPOCHS, MAX_WORLD_SIZE, SEED, count
from uncollapse.cli_report import quiet_option, report_options
from uncollapse.data.captions.contract import MATCH_ID
from uncollapse.data.sequences.contract import CHUNK_DOC_ID, DOC_IDS

__all__ = ["COMMANDS", "validate_batches_command"]


@click.command("batches")
@click.argument("table", type=InputPath())
@click.option("--sampler", type=click.Choice(["grouped", "diverse", "random"]), required=True,
              help="grouped: GroupedBatchSampler; diverse: DiverseBatchSampler; random: "
                   "torch's RandomSampler (DistributedSampler across ranks), the usual default.")
@click.option("--batch-size", "-b", type=count(1), required=True, help="Rows per batch.")
@click.option("--per-group", "-k", type=count(1), help="grouped: rows of each group per batch.")
@click.option("--max-per-doc", "-m", type=count(1),
              help="Most rows of one document per batch (diverse; checked for any sampler "
                   "when --doc-column is given).")
@click.option("--group-column", default=MATCH_ID, show_default=True,
              help="Column of the positive group ids.")
@click.option("--doc-column", default=None,
              help=f"Column (or NPZ array) of document ids [default: {CHUNK_DOC_ID}; {DOC_IDS} in "
                   "NPZ].")
@click.option("--exclude-duplicates", "exclude_duplicates_column", default=None,
              help="grouped: column whose equal values mark duplicates to keep apart "
                   "(e.g. the caption text or its hash).")
@click.option("--world-size", "-w", type=count(1, MAX_WORLD_SIZE), default=1, show_default=True,
              help="Ranks to simulate; every rank's batches are audited together.")
@click.option("--epochs", "-e", type=count(1, MAX_EPOCHS), default=1, show_default=True,
              help="Epochs to replay (set_epoch is called before each).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--keep-last", is_flag=True, help="Keep the smaller last batch (drop_last=False).")
@quiet_option
@report_options
def validate_batches_command(table, sampler, batch_size, per_group, max_per_doc, group_column,
                             doc_column, exclude_duplicates_column, world_size, epochs, seed,
                             keep_last, quiet):
    """Replay a sampler over TABLE's ids and check every batch it yields.

    Reports positives per batch, distinct groups per batch, most rows of one document in a
    batch, duplicate indices, rows covered per epoch and rank overlap. Exit 1 when a batch
    breaks a guarantee (BATCH_WITHOUT_POSITIVES, DOC_OVER_CAP, DUPLICATE_INDEX_IN_BATCH,
    RANKS_OVERLAP, RANK_LENGTHS_DIFFER, ...). Rows an epoch leaves out are ROWS_NOT_PLACED, a
    warning above 5% of the table, with the most rows any plan of that many batches places.

    TABLE is a caption table (Parquet with match_id), a CSV, or an NPZ sequence file
    (doc_ids).

    Example:
        uncollapse validate batches captions.parquet --sampler random -b 64
        uncollapse validate batches captions.parquet --sampler grouped -b 50 -k 5 -w 2 -e 2
        uncollapse validate batches seqs.npz --sampler diverse -b 256 -m 4
    """
    from uncollapse.validators.batches.table import audit_table

    if epochs < 1 or world_size < 1 or batch_size < 1:
        raise click.BadParameter("--batch-size, --world-size and --epochs must be at least 1")
    from uncollapse.cli_report import flags_in_errors

    flags = {"batch_size": "--batch-size", "per_group": "--per-group",
             "max_per_doc": "--max-per-doc", "drop_last=False": "--keep-last",
             "world_size": "--world-size"}
    from uncollapse.progress import status

    with status(f"replaying the {sampler} sampler over {table}", quiet=quiet), \
            flags_in_errors(flags):
        return audit_table(table, sampler=sampler, batch_size=batch_size, per_group=per_group,
                           max_per_doc=max_per_doc, group_column=group_column,
                           doc_column=doc_column, world_size=world_size, epochs=epochs,
                           seed=seed, drop_last=not keep_last,
                           exclude_duplicates_column=exclude_duplicates_column)


COMMANDS = {"validate": [validate_batches_command]}
