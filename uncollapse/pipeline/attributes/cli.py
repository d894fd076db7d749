"""``uncollapse build attributes``."""

from __future__ import annotations

import click

from uncollapse.cli_paths import InputPath
from uncollapse.pipeline.build_cli import build_options

__all__ = ["COMMANDS", "build_attributes_command"]


def _names(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


@click.command("attributes")
@click.argument("source", type=InputPath())
@click.option("--identities", type=InputPath(),
              help="CelebA identity_CelebA.txt (`<image> <identity>` per line).")
@click.option("--partition", type=InputPath(),
              help="CelebA list_eval_partition.txt (`<image> 0|1|2`, train/val/test).")
@click.option("--attributes", help="Comma-separated attribute columns to keep, in this order "
                                   "(default: all).")
@build_options
def build_attributes_command(source, identities, partition, attributes, cache, rebuild, quiet):
    """Build an attribute table (image_id, identity, split, one 0/1 int8 column per attribute).

    SOURCE is CelebA's list_attr_celeba.txt (count line, names line, `000001.jpg -1 1 ...`
    rows, any whitespace, LF or CRLF) or a .csv/.parquet table with an image_id column and
    -1/1 or 0/1 attribute columns. A count line that disagrees with the rows, malformed rows
    (with their line numbers, skipped), duplicates, and images missing from the identity or
    partition file are findings of the build report (--json PATH keeps every skipped line);
    --strict makes them fatal (exit 1, nothing written).

    Example:
        uncollapse build attributes list_attr_celeba.txt --identities identity_CelebA.txt \\
            --partition list_eval_partition.txt -o attrs.parquet
        uncollapse build attributes attrs.csv --attributes Smiling,Male,Eyeglasses -o a.parquet
    """
    from uncollapse.pipeline.attributes import build_attributes
    from uncollapse.progress import status

    with status(f"building attributes from {source}", quiet=quiet):
        return build_attributes(source, identities=identities, partition=partition,
                                attributes=_names(attributes), cache=cache, rebuild=rebuild)


COMMANDS = [build_attributes_command]
