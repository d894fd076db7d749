"""Line-oriented caption sources: Flickr8k/Flickr30k token files and the Flickr30k CSV."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from uncollapse.data.captions.contract import (
    CAPTION,
    CAPTION_IDX,
    IMAGE_ID,
    IMAGE_PATH,
    SOURCE_ROW,
    SPLIT,
)
from uncollapse.pipeline.captions.irregularities import (
    SOURCE_IMAGE_IN_TWO_SPLITS,
    SOURCE_IMAGE_NOT_IN_SPLIT,
    SOURCE_MALFORMED_LINE,
    SOURCE_RECORDS_ON_ONE_LINE,
    SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS,
    Irregularities,
)
from uncollapse.pipeline.text_files import read_text_lines

__all__ = [
    "CSV_LINE", "IMAGE_SUFFIX", "RECORD_KEY", "SECOND_RECORD", "TOKEN_LINE",
    "apply_split_files", "image_stem", "parse_numbered_lines", "read_flickr_csv", "read_lines",
    "read_token_file",
]

# `1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress ...`
# The separator is one tab (or, in hand-made files, a run of spaces); whitespace beyond it
# belongs to the caption, so stripping it is counted.
TOKEN_LINE = r"^\s*(?P<file>[^\s#]+)#(?P<number>\d+)(?:\t|\s+)(?P<caption>.*)$"
# `1000092795.jpg| 0| Two young guys with shaggy hair ...`
# The real file separates fields with "| "; that one space is part of the separator.
CSV_LINE = r"^\s*(?P<file>[^|]+?)\s*\|\s*(?P<number>\d+)\s*\| ?(?P<caption>.*)$"
IMAGE_SUFFIX = r"(?i)\.(jpe?g|png|gif|bmp)(\.\d+)?$"
# `2677656448_6b7e7702af.jpg#3`: the key of a token-file record, found inside a caption
RECORD_KEY = r"[^\s#]+\.(?i:jpe?g|png|gif|bmp)#\d+"
# a TAB, then a second record's key and its TAB: where a lost line break joined two records
SECOND_RECORD = rf"\t({RECORD_KEY}\t)"


def read_lines(path: Path) -> pl.DataFrame:
    """The file's lines with their 1-based line numbers (BOM and CR/LF handled)."""
    lines = read_text_lines(path)
    return pl.DataFrame({"text": lines}, schema={"text": pl.String}).with_row_index(
        "line", offset=1).with_columns(pl.col("line").cast(pl.Int64))


def image_stem(file_col: pl.Expr) -> pl.Expr:
    """The image's real identifier: its file name without directory and extension."""
    return file_col.str.replace(r"^.*/", "").str.replace(IMAGE_SUFFIX, "")


def parse_numbered_lines(path: Path, pattern: str, irregular: Irregularities,
                         *, header_prefix: str | None = None,
                         second_record: str | None = None) -> pl.DataFrame:
    """Split ``file#n caption`` style lines into columns; report lines that do not match.

    ``second_record``: a regex (group 1 starts the next record) of where two records share a
    line; such lines are split into their records and reported.
    """
    lines = read_lines(path)
    lines = lines.filter(pl.col("text").str.strip_chars() != "")
    if header_prefix is not None and lines.height and lines["text"][0].strip().startswith(
            header_prefix):
        lines = lines.slice(1)
    if second_record is not None:
        lines = _split_joined_records(lines, second_record, irregular)
    parsed = lines.with_columns(pl.col("text").str.extract_groups(pattern).alias("m")).unnest("m")
    # A caption number that does not fit caption_idx (int16) is a malformed line, not a crash.
    parsed = parsed.with_columns(pl.col("number").cast(pl.Int16, strict=False))
    ok = pl.col("file").is_not_null() & pl.col("number").is_not_null()
    bad = parsed.filter(~ok)
    irregular.add(SOURCE_MALFORMED_LINE,
                  bad.select("line", pl.col("text").str.slice(0, 120)),
                  "malformed line(s) skipped")
    good = parsed.filter(ok)
    return good.select(
        image_stem(pl.col("file")).alias(IMAGE_ID),
        pl.col("number").cast(pl.Int64).alias(CAPTION_IDX),
        pl.col("caption").alias(CAPTION),  # the pattern's group
        pl.lit(None, dtype=pl.String).alias(SPLIT),
        pl.col("line").alias(SOURCE_ROW),
        pl.col("file").str.strip_chars().alias(IMAGE_PATH),
    )


def _split_joined_records(lines: pl.DataFrame, second_record: str,
                          irregular: Irregularities) -> pl.DataFrame:
    """One row per record: a line holding several is split (a line never holds a newline)."""
    pieces = lines.with_columns(
        records=pl.col("text").str.replace_all(second_record, "\n${1}").str.split("\n"))
    joined = pieces.filter(pl.col("records").list.len() > 1)
    irregular.add(SOURCE_RECORDS_ON_ONE_LINE,
                  joined.select("line", records=pl.col("records").list.len(),
                                text=pl.col("text").str.slice(0, 120)),
                  f"line(s) hold more than one record ({joined['records'].list.len().sum()} "
                  "records in all); each was split into its records")
    return pieces.select("line", text="records").explode("text")


def read_token_file(path: Path, irregular: Irregularities) -> pl.DataFrame:
    return parse_numbered_lines(path, TOKEN_LINE, irregular, second_record=SECOND_RECORD)


def read_flickr_csv(path: Path, irregular: Irregularities) -> pl.DataFrame:
    return parse_numbered_lines(path, CSV_LINE, irregular, header_prefix="image_name")


def apply_split_files(table: pl.DataFrame, split_files: dict[str, Path],
                      irregular: Irregularities) -> pl.DataFrame:
    """Give each caption the split whose list names its image (Flickr8k's split files)."""
    if not split_files:
        return table
    lists = []
    for order, (split, list_path) in enumerate(split_files.items()):
        names = read_lines(Path(list_path)).filter(pl.col("text").str.strip_chars() != "")
        lists.append(names.select(
            image_stem(pl.col("text").str.strip_chars()).alias(IMAGE_ID),
            pl.lit(split).alias(SPLIT), order=pl.lit(order), list_file=pl.lit(str(list_path)),
            line="line"))
    listed = pl.concat(lists)
    # A name repeated within one list is harmless; only names in two different lists leak.
    twice = (listed.unique([IMAGE_ID, "order"], keep="first")
             .filter(pl.len().over(IMAGE_ID) > 1).sort(IMAGE_ID, "order"))
    irregular.add(SOURCE_IMAGE_IN_TWO_SPLITS,
                  twice.group_by(IMAGE_ID, maintain_order=True).agg(
                      pl.col(SPLIT), pl.col("list_file").first().alias("file"),
                      pl.col("line").first()),
                  "image(s) listed in more than one split")
    first = listed.sort("order", "line").unique(IMAGE_ID, keep="first")
    with_captions = table.select(IMAGE_ID).unique()
    orphans = first.join(with_captions, on=IMAGE_ID, how="anti").sort("order", "line")
    irregular.add(SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS,
                  orphans.select(IMAGE_ID, SPLIT, file="list_file", line="line"),
                  "image(s) in a split list have no captions")
    table = table.drop(SPLIT).join(first.select(IMAGE_ID, SPLIT), on=IMAGE_ID, how="left")
    unlisted = table.filter(pl.col(SPLIT).is_null()).group_by(IMAGE_ID).agg(
        pl.col(SOURCE_ROW).min().alias("line")).sort("line")
    irregular.add(SOURCE_IMAGE_NOT_IN_SPLIT, unlisted, "image(s) in no split list (split null)")
    return table
