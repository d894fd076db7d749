"""``uncollapse build attributes``."""

from __future__ import annotations

import sys

import click

from uncollapse.pipeline.build_cli import build_options, publish


def _names(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


@click.command("attributes")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--identities", type=click.Path(exists=True, dir_okay=False),
              help="CelebA identity_CelebA.txt (`<image> <identity>` per line).")
@click.option("--partition", type=click.Path(exists=True, dir_okay=False),
              help="CelebA list_eval_partition.txt (`<image> 0|1|2`, train/val/test).")
@click.option("--attributes", help="Comma-separated attribute columns to keep, in this order "
                                   "(default: all).")
@click.option("--strict", is_flag=True,
              help="Any irregularity in the input (malformed row, count mismatch, image missing "
                   "from a side file) is fatal: exit 1 and write nothing.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write the build report as JSON here (lists every skipped line).")
@build_options
def build_attributes_command(source, identities, partition, attributes, strict, report_path,
                     output, rebuild, cache_dir):
    """Build an attribute table (image_id, identity, split, one 0/1 int8 column per attribute).

    SOURCE is CelebA's list_attr_celeba.txt (count line, names line, `000001.jpg -1 1 ...`
    rows, any whitespace, LF or CRLF) or a .csv/.parquet table with an image_id column and
    -1/1 or 0/1 attribute columns. A count line that disagrees with the rows, malformed rows
    (with their line numbers, skipped), duplicates, and images missing from the identity or
    partition file are reported on stderr; --strict makes them fatal (exit 1).

    Example:
        uncollapse build attributes list_attr_celeba.txt --identities identity_CelebA.txt \\
            --partition list_eval_partition.txt -o attrs.parquet
        uncollapse build attributes attrs.csv --attributes Smiling,Male,Eyeglasses -o a.parquet
    """
    from rich.console import Console

    from uncollapse.atomic import atomic_path
    from uncollapse.cache.store import Cache
    from uncollapse.pipeline.attributes.build import ATTRIBUTES_FILE, build_attributes_cached
    from uncollapse.report import Report

    entry = build_attributes_cached(source, identities=identities, partition=partition,
                                    attributes=_names(attributes),
                                    cache=Cache(cache_dir), rebuild=rebuild)
    report = Report.from_dict(entry.result["report"])
    if report_path:
        with atomic_path(report_path) as tmp:
            tmp.write_text(report.to_json())
    # the full list of skipped lines goes to --report; the terminal gets the findings
    report.stats.pop("skipped_lines", None)
    report.render_text(Console(stderr=True), strict=strict)
    irregular = [f for f in report.findings if f.severity != "info"]
    if strict and irregular:
        click.echo(f"--strict: {sum(f.count for f in irregular)} irregularit(ies) in the input; "
                   "nothing written", err=True)
        sys.exit(1)
    publish(entry, ATTRIBUTES_FILE, output)


COMMANDS = {"build": [build_attributes_command]}
