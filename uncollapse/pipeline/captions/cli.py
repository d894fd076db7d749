"""``uncollapse build captions``."""

from __future__ import annotations

import click

from uncollapse.cli_paths import InputPath, input_file
from uncollapse.cli_ranges import count
from uncollapse.cli_report import flags_in_errors
from uncollapse.pipeline.build_cli import build_options

__all__ = ["COMMANDS", "build_captions_command"]

FORMAT_CHOICES = ["hf", "karpathy", "tokens", "flickr-csv", "coco"]


def _split_file(ctx, param, values):
    parsed = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{value!r}: expected SPLIT=PATH, e.g. train=trainImages.txt")
        parsed[name] = input_file(ctx, param, path)
    return parsed


@click.command("captions")
@click.argument("source", type=InputPath(dir_okay=True, missing_ok=True))
@click.option("--source-format", type=click.Choice(FORMAT_CHOICES),
              help="Format of SOURCE (default: detected from the content). --format chooses "
                   "the report's format, as in every command.")
@click.option("--splits", help="Keep only these splits, comma-separated (e.g. train,restval).")
@click.option("--split", help="Split of a COCO file (default: from its name, "
                              "captions_val2017.json -> val).")
@click.option("--split-file", "split_files", multiple=True, callback=_split_file,
              metavar="SPLIT=PATH", help="Image list of a split (Flickr8k); repeat per split.")
@click.option("--hf-split", help="Split of a hub dataset or saved DatasetDict to read.")
@click.option("--shard-rows", type=count(1), default=1_000_000, show_default=True,
              help="Rows per Parquet shard when -o names a folder (-o DIR/).")
@build_options(shards=True)
def build_captions_command(source, source_format, splits, split, split_files, hf_split,
                           shard_rows, cache, rebuild, quiet, sharded, engine=None):
    """Rebuild a caption table with true image ids and positive groups (match_id).

    SOURCE is a COCO caption JSON, Karpathy split JSON, Flickr8k/30k token file, Flickr30k
    CSV, nlphuji/flickr30k Parquet/Arrow files or save_to_disk folder, or a hub id.
    Parquet in the flickr30k layout (a file, a folder of shards, or a quoted glob such as
    'flickr30k/*.parquet') is read a slice of rows at a time and the table written a range
    of images at a time, so neither is ever in memory whole.
    Every irregularity of the source (malformed line, two records on one line, empty caption,
    image in no split, ...) is a finding of the build report; --strict makes them fatal
    (exit 1, nothing written).

    -o DIR/ writes the table as Parquet shards (--shard-rows each) and a manifest.json
    (rows, schema, SHA-256 of each shard), which polars, Hugging Face datasets and Ray read
    as they are.

    Example:
        uncollapse build captions captions_val2017.json -o captions.parquet
        uncollapse build captions captions_val2017.json -o captions/ --shard-rows 1000
        uncollapse build captions 'flickr30k/train-*.parquet' -o captions/
        uncollapse build captions Flickr8k.token.txt --split-file train=Flickr_8k.trainImages.txt \\
            --split-file val=Flickr_8k.devImages.txt --split-file test=Flickr_8k.testImages.txt
        uncollapse build captions captions_val2017.json --engine ray -o captions.parquet
    """
    from uncollapse.pipeline.captions import build_captions
    from uncollapse.progress import status

    # Ray draws its own progress; a spinner would fight it for the terminal
    with status(f"building captions from {source}", quiet=quiet or engine is not None), \
            flags_in_errors({"split_files": "--split-file", "hf_split": "--hf-split",
                             "format=": "--source-format"}):
        return build_captions(source, format=source_format,
                              splits=[s.strip() for s in splits.split(",")] if splits else None,
                              split=split, split_files=split_files, hf_split=hf_split,
                              cache=cache, rebuild=rebuild,
                              shard_rows=shard_rows if sharded else None, engine=engine)


COMMANDS = [build_captions_command]
