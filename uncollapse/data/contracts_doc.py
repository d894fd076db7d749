"""``docs/data-contracts.md``, generated from the contracts' own definitions so it cannot drift.

Run ``python -m uncollapse.data.contracts_doc > docs/data-contracts.md`` after changing a
contract; a test fails while the file and the code disagree. The columns, dtypes, shapes and
meanings come from the contract modules; the prose of each family (what a row is, the rules a
checker enforces) is held here.
"""

from __future__ import annotations

import polars as pl

from uncollapse.data.attributes.contract import MAX_ATTRIBUTES, RESERVED_COLUMNS
from uncollapse.data.attributes.table import ATTRIBUTE_DTYPE, IDENTITY_DTYPE
from uncollapse.data.captions.contract import COLUMN_MEANINGS, NON_NULL, OPTIONAL_COLUMNS
from uncollapse.data.captions.table import CAPTION_SCHEMA
from uncollapse.data.scenes.contract import SCENE_ARRAYS
from uncollapse.data.sequences.contract import COMPACT_ARRAYS, DENSE_ARRAYS
from uncollapse.data.spec import ArraySpec

COMMAND = "python -m uncollapse.data.contracts_doc > docs/data-contracts.md"

INTRO = f"""\
# Data contracts

What each data family's files hold, column by column and array by array. Every command that
builds a family writes this layout, every `uncollapse validate` command checks it, and the
torch Datasets read it. Generated from the definitions in `uncollapse.data` by
`{COMMAND}`; do not edit by hand.

Rules shared by every family:

- Files are plain data. Tables are Parquet (CSV where noted); arrays are NPZ files of numeric
  arrays that load with `numpy.load(path, allow_pickle=False)`. Object arrays, pickles and
  other code-carrying formats are refused, never loaded.
- Row `i` of every column or array describes the same item; no family relies on a row's
  position to mean anything else (an id is never a row number).
- Outputs are written atomically: a file at its final path is complete.
"""

CAPTIONS = """\
## Caption table

One row per caption. Read by `uncollapse.data.captions.table.read_caption_table` (Parquet,
or CSV with a header row whose values are cast to the dtypes below; `-` is standard input),
written by `uncollapse build captions`, checked by `uncollapse validate captions` and the
pandera model `uncollapse.validators.captions.CaptionTable`, served for training by
`uncollapse.data.captions.dataset.CaptionDataset`.

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
"""

ATTRIBUTES = f"""\
## Attribute table

One row per image. Read by `uncollapse.data.attributes.table.read_attribute_table`
(Parquet, or CSV with `image_id` and `split` kept as text), written by
`uncollapse build attributes`, checked by `uncollapse validate attributes`; the flips of
`AttributeFlipDataset` are drawn from its attribute columns.

- `image_id` is the source's own name (`000001.jpg`), never a row number.
- Every column that is not one of {", ".join(f"`{c}`" for c in RESERVED_COLUMNS)} is an
  attribute: {ATTRIBUTE_DTYPE}, values 0 or 1 only (convert -1/1 sources with
  `(a + 1) // 2`), no nulls, named as in the source. At most {MAX_ATTRIBUTES} attributes take
  part in combination ids (one bit each in an int64).
- `image_id` occurs once (`ATTR_DUPLICATE_IMAGE_ID`); an identity has images in one split
  only (`IDENTITY_LEAKAGE`); an attribute with one value in every row is reported
  (`ATTR_CONSTANT`: flipping it leads to a value no sample has).
"""

ATTRIBUTE_COLUMNS = {
    "image_id": (pl.String, "no", "the image's name in the source (`000001.jpg`)"),
    "identity": (IDENTITY_DTYPE, "yes",
                 "the person or object identity (CelebA `identity_CelebA.txt`), null when "
                 "the source gives none"),
    "split": (pl.String, "yes", "train, val, test, ... or null where the source assigns none"),
}
"""The reserved columns' dtype, nullability and meaning (the contract module names them)."""

SCENES = """\
## Scene file

Synthetic scenes for object-centric (slot attention) training: one NPZ, scene `i` is row `i`
of every array. Read by `uncollapse.data.scenes.contract.load_scenes`, written by
`uncollapse build scenes` (`save_scenes`), checked by `uncollapse validate scenes`, served by
`uncollapse.data.scenes.dataset.SceneDataset` (images as float [3, H, W] in [0, 1]).

- Mask labels of scene `i` are exactly `0..num_objects[i]`: no label above `num_objects[i]`,
  and every object `1..num_objects[i]` keeps at least `--min-visible` pixels (default 4), so a
  slot can find it.
- `num_objects` is at least 1.
"""

SEQUENCES = """\
## Sequence file

Next-vector prediction samples: a context of C vectors and the vector that follows, all from
one document. One NPZ in one of two forms, written by `uncollapse build sequences` (dense by
default, `--compact` for the compact form), checked by `uncollapse validate sequences`, served
by `SequenceDataset` and `HardNegativeSequenceDataset` (`uncollapse.data.sequences`).

- A context never crosses a document boundary; documents with fewer than C + 1 chunks give
  no samples.
- Texts are stored as UTF-8 bytes plus offsets (text `i` is `utf8[offsets[i]:offsets[i + 1]]`),
  never pickled: a list of texts needs both its `_utf8` and its `_offsets` array. Files written
  before this layout hold fixed-width unicode arrays instead, which are still read.
- Uncompressed files are memory-mapped by the datasets; the compact form reads each window
  out of `vectors` without a C-fold copy.
"""

DENSE = """\
### Dense form

Sample `i` is row `i` of the per-sample arrays; N samples, context length C, vector size D.
"""

COMPACT = """\
### Compact form

Every chunk's vector once; sample windows are computed from `doc_offsets` and
`context_length`. M chunks in n_docs documents.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def caption_columns() -> list[str]:
    """The caption table as a markdown table, from ``CAPTION_SCHEMA`` and its companions."""
    missing = [c for c in CAPTION_SCHEMA if c not in COLUMN_MEANINGS]
    if missing:
        raise RuntimeError(f"COLUMN_MEANINGS has no meaning for {missing}")
    lines = ["| column | dtype | nulls | required | meaning |", "|---|---|---|---|---|"]
    for name, dtype in CAPTION_SCHEMA.items():
        nulls = "no" if name in NON_NULL else "yes"
        required = "no" if name in OPTIONAL_COLUMNS else "yes"
        lines.append(f"| `{name}` | {dtype} | {nulls} | {required} | "
                     f"{_cell(COLUMN_MEANINGS[name])} |")
    return lines


def attribute_columns() -> list[str]:
    """The attribute table as a markdown table: the reserved columns, then the attributes."""
    if tuple(ATTRIBUTE_COLUMNS) != tuple(RESERVED_COLUMNS):
        raise RuntimeError(f"describe the reserved columns {RESERVED_COLUMNS} in "
                           "ATTRIBUTE_COLUMNS, in that order")
    lines = ["| column | dtype | nulls | meaning |", "|---|---|---|---|"]
    for name, (dtype, nulls, meaning) in ATTRIBUTE_COLUMNS.items():
        lines.append(f"| `{name}` | {dtype} | {nulls} | {_cell(meaning)} |")
    lines.append(f"| every other column | {ATTRIBUTE_DTYPE} | no | one attribute, 0 or 1 |")
    return lines


def array_table(arrays: dict[str, ArraySpec]) -> list[str]:
    """An NPZ contract as a markdown table: array, shape, dtype, required, meaning."""
    lines = ["| array | shape | dtype | required | meaning |", "|---|---|---|---|---|"]
    for name, spec in arrays.items():
        lines.append(f"| `{name}` | {spec.shape} | {spec.dtype} | "
                     f"{'yes' if spec.required else 'no'} | {_cell(spec.meaning)} |")
    return lines


def contracts_markdown() -> str:
    """The whole of ``docs/data-contracts.md``."""
    parts = [INTRO,
             CAPTIONS, "\n".join(caption_columns()) + "\n",
             ATTRIBUTES, "\n".join(attribute_columns()) + "\n",
             SCENES, "\n".join(array_table(SCENE_ARRAYS)) + "\n",
             SEQUENCES,
             DENSE, "\n".join(array_table(DENSE_ARRAYS)) + "\n",
             COMPACT, "\n".join(array_table(COMPACT_ARRAYS)) + "\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    print(contracts_markdown(), end="")
