"""The caption table contract: one row per caption, with the image's real identifier and one
positive group (``match_id``) per image (docs/data-contracts.md, "Caption table").

``CAPTION_COLUMNS`` is the one definition of the columns: their dtypes (polars type names),
nullability and meaning. ``CAPTION_DTYPES``, ``NON_NULL`` and ``OPTIONAL_COLUMNS`` are views of
it; ``uncollapse.data.captions.table`` turns the dtypes into polars types (``CAPTION_SCHEMA``),
the builders cast to it, the pandera model of ``uncollapse validate captions`` is generated from
it, and ``read_caption_table`` checks a file against it. This module needs nothing but Python,
so the training path (torch, numpy, pyarrow) can use the contract where polars is not installed.
"""

from __future__ import annotations

from uncollapse.data.spec import ColumnSpec, DocSection

__all__ = [
    "CAPTION", "CAPTION_COLUMNS", "CAPTION_DTYPES", "CAPTION_IDX", "COLUMN_MEANINGS",
    "DOC_SECTIONS", "IMAGE_ID", "IMAGE_PATH", "MATCH_ID", "NON_NULL", "OPTIONAL_COLUMNS",
    "SOURCE_ROW", "SPLIT", "expected_columns",
]

IMAGE_ID = "image_id"
MATCH_ID = "match_id"
CAPTION_IDX = "caption_idx"
CAPTION = "caption"
SPLIT = "split"
SOURCE_ROW = "source_row"
IMAGE_PATH = "image_path"

CAPTION_COLUMNS: dict[str, ColumnSpec] = {
    IMAGE_ID: ColumnSpec("String", "the image's real identifier from the source (file name stem, "
                                   "COCO image_id, Karpathy cocoid); never a loop counter or row "
                                   "number", nullable=False),
    MATCH_ID: ColumnSpec("Int64", "positive group: rows with equal match_id are positives of each "
                                  "other; one per image_id, numbered in sorted image_id order",
                         nullable=False),
    CAPTION_IDX: ColumnSpec("Int16", "the caption's number within its image (the source's own "
                                     "numbering)", nullable=False),
    # caption nulls are reported as empty captions, not as a broken contract
    CAPTION: ColumnSpec("String", "caption text as in the source, surrounding whitespace "
                                  "stripped"),
    SPLIT: ColumnSpec("String", "train, val, test, restval, ... or null where the source assigns "
                                "none"),
    SOURCE_ROW: ColumnSpec("Int64", "the line or record of the source the caption came from",
                           nullable=False),
    IMAGE_PATH: ColumnSpec("String", "where the image lives, if known (nullable, optional)",
                           required=False),
}
"""Column -> dtype, nullability and meaning, in the order the builders write them."""

CAPTION_DTYPES: dict[str, str] = {name: spec.dtype for name, spec in CAPTION_COLUMNS.items()}
"""Column -> polars dtype name, in the order the builders write them."""

NON_NULL = tuple(name for name, spec in CAPTION_COLUMNS.items() if not spec.nullable)
"""Columns that may not hold nulls (``caption`` nulls are reported as empty captions)."""

OPTIONAL_COLUMNS = tuple(name for name, spec in CAPTION_COLUMNS.items() if not spec.required)
"""Columns a table may leave out."""

COLUMN_MEANINGS = {name: spec.meaning for name, spec in CAPTION_COLUMNS.items()}


def expected_columns() -> str:
    """The contract as one line for error messages: ``image_id (String), match_id (Int64), ...``."""
    return ", ".join(f"{name} ({dtype})" for name, dtype in CAPTION_DTYPES.items())


DOC_SECTIONS = (DocSection("""\
## Caption table

One row per caption. Read by `uncollapse.data.captions.table.read_caption_table` (Parquet,
or CSV with a header row whose values are cast to the dtypes below; `-` is standard input),
written by `uncollapse build captions`, checked by `uncollapse validate captions` and its
pandera model, served for training by `uncollapse.data.captions.dataset.CaptionDataset`.

Grouping rules (what contrastive training relies on):

- `match_id` is the positive group: rows with equal `match_id` are positives of each other,
  every other row in a batch is a negative. There is one `match_id` per `image_id` and one
  `image_id` per `match_id` (`MATCH_ID_INCONSISTENT`), numbered `0..G-1` in sorted
  `image_id` order.
- `image_id` is the source's real identifier. A `match_id` equal to the row number (or a
  loop counter) makes every group a single row, so no row has a positive
  (`GROUPS_ALL_UNIQUE`, `IMAGE_ID_POSITIONAL`).
- A group holds at least 2 rows by default (`--min-group`, `--max-group`, `--group-size`
  set the range, `GROUP_SIZE_OUT_OF_RANGE`), and an image belongs to one split only
  (`SPLIT_LEAKAGE`: an image in two splits leaks between training and evaluation).
- A caption is one record of the source: not empty, no control characters, no second record
  key, a plausible length. The same normalised caption twice in a group wastes a positive;
  under two groups it makes a false negative; both are reported.

The finding codes are explained in [finding-codes.md](finding-codes.md).
""", CAPTION_COLUMNS),)
"""What docs/data-contracts.md shows of the caption family."""

# Image features of a caption table's images (``--image-features`` of the contrastive recipe),
IMAGE_FEATURES = "features"
IMAGE_FEATURE_IDS = "image_ids"
