"""``uncollapse build captions``."""

from __future__ import annotations

import sys

import click

from uncollapse.pipeline.build_cli import build_options, publish

FORMAT_CHOICES = ["hf", "karpathy", "tokens", "flickr-csv", "coco"]


def _split_file(ctx, param, values):
    parsed = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{value!r}: expected SPLIT=PATH, e.g. train=trainImages.txt")
        parsed[name] = path
    return parsed


@click.command("captions")
@click.argument("source")
@click.option("--format", "source_format", type=click.Choice(FORMAT_CHOICES),
              help="Source format (default: detected from the content).")
@click.option("--splits", help="Keep only these splits, comma-separated (e.g. train,restval).")
@click.option("--split", help="Split of a COCO file (default: from its name, "
                              "captions_val2017.json -> val).")
@click.option("--split-file", "split_files", multiple=True, callback=_split_file,
              metavar="SPLIT=PATH", help="Image list of a split (Flickr8k); repeat per split.")
@click.option("--hf-split", help="Split of a hub dataset or saved DatasetDict to read.")
@click.option("--strict", is_flag=True,
              help="Any irregularity in the source (malformed line, empty caption, image in "
                   "no split, ...) is fatal: exit 1 and write nothing.")
@click.option("--quiet", is_flag=True, help="Print only errors.")
@build_options
def build_captions_command(source, source_format, splits, split, split_files, hf_split, strict,
                           quiet, output, rebuild, cache_dir):
    """Rebuild a caption table with true image ids and positive groups (match_id).

    SOURCE is a COCO caption JSON, Karpathy split JSON, Flickr8k/30k token file, Flickr30k
    CSV, nlphuji/flickr30k Parquet/Arrow files or save_to_disk folder, or a hub id.

    Example:
        uncollapse build captions captions_val2017.json -o captions.parquet
        uncollapse build captions Flickr8k.token.txt --split-file train=Flickr_8k.trainImages.txt \\
            --split-file val=Flickr_8k.devImages.txt --split-file test=Flickr_8k.testImages.txt
    """
    from uncollapse.cache.store import Cache
    from uncollapse.pipeline.captions.build import OUTPUT_NAME, build_captions
    from uncollapse.progress import status

    with status(f"building captions from {source}", quiet=quiet):
        built = build_captions(source, format=source_format,
                               splits=[s.strip() for s in splits.split(",")] if splits
                               else None,
                               split=split, split_files=split_files, hf_split=hf_split,
                               cache=Cache(cache_dir), rebuild=rebuild)
    report = built.report
    irregular = [f for f in report.findings if f.severity != "info"]
    if not quiet or (strict and irregular):
        report.render_text(strict=strict)
    if strict and irregular:
        click.echo(f"--strict: {sum(f.count for f in irregular)} irregularit(ies) in the source; "
                   "nothing written", err=True)
        sys.exit(1)
    publish(built.entry, OUTPUT_NAME, output)
