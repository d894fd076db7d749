"""The caption table contract: one row per caption, with the image's real identifier and one
positive group (``match_id``) per image (docs/data-contracts.md, "Caption table").

``CAPTION_DTYPES`` is the one definition of the columns and their dtypes (polars type names);
``uncollapse.data.captions.table`` turns it into polars types (``CAPTION_SCHEMA``), the builders
cast to it, the pandera model in ``uncollapse.validators.captions`` is generated from it, and
``read_caption_table`` checks a file against it. This module needs nothing but Python, so the
training path (torch, numpy, pyarrow) can use the contract where polars is not installed.
"""

from __future__ import annotations

CAPTION_DTYPES: dict[str, str] = {
    "image_id": "String",
    "match_id": "Int64",
    "caption_idx": "Int16",
    "caption": "String",
    "split": "String",
    "source_row": "Int64",
    "image_path": "String",
}
"""Column -> polars dtype name, in the order the builders write them."""

NON_NULL = ("image_id", "match_id", "caption_idx", "source_row")
"""Columns that may not hold nulls (``caption`` nulls are reported as empty captions)."""

OPTIONAL_COLUMNS = ("image_path",)
"""Columns a table may leave out."""

COLUMN_MEANINGS = {
    "image_id": "the image's real identifier from the source (file name stem, COCO image_id, "
                "Karpathy cocoid); never a loop counter or row number",
    "match_id": "positive group: rows with equal match_id are positives of each other; one per "
                "image_id, numbered in sorted image_id order",
    "caption_idx": "the caption's number within its image (the source's own numbering)",
    "caption": "caption text as in the source, surrounding whitespace stripped",
    "split": "train, val, test, restval, ... or null where the source assigns none",
    "source_row": "the line or record of the source the caption came from",
    "image_path": "where the image lives, if known (nullable, optional)",
}


def expected_columns() -> str:
    """The contract as one line for error messages: ``image_id (String), match_id (Int64), ...``."""
    return ", ".join(f"{name} ({dtype})" for name, dtype in CAPTION_DTYPES.items())


# Column names, for code that reads or writes one column (``table[MATCH_ID]``).
IMAGE_ID = "image_id"
MATCH_ID = "match_id"
CAPTION_IDX = "caption_idx"
CAPTION = "caption"
SPLIT = "split"
SOURCE_ROW = "source_row"
IMAGE_PATH = "image_path"

# Image features of a caption table's images (``--image-features`` of the contrastive recipe),
# as an NPZ: ``features`` [images, D] float, ``image_ids`` [images] (string or integer ids).
IMAGE_FEATURES = "features"
IMAGE_FEATURE_IDS = "image_ids"
