"""The Hugging Face ``nlphuji/flickr30k`` layout: a hub id, a ``save_to_disk`` directory, or
local Parquet/Arrow files with the columns ``image``, ``caption`` (list of 5), ``sentids``,
``split``, ``img_id``, ``filename``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc

from uncollapse.data.captions.contract import (
    CAPTION,
    CAPTION_IDX,
    IMAGE_ID,
    IMAGE_PATH,
    SOURCE_ROW,
    SPLIT,
)
from uncollapse.data.polars_read import READ_FAILURES, reason
from uncollapse.data.shards import is_sharded, shard_files
from uncollapse.errors import InputError, ToolError
from uncollapse.extras import require
from uncollapse.pipeline.captions.irregularities import (
    SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS,
    Irregularities,
)
from uncollapse.pipeline.captions.lines import image_stem

__all__ = [
    "HF_CAPTION", "HF_COLUMNS", "HF_FILENAME", "HF_IMG_ID", "HF_SPLIT", "NO_CAPTIONS",
    "check_hf_layout", "data_files", "hf_caption_rows", "hf_image_id", "in_memory_frame",
    "is_dataset_object", "is_saved_dataset", "load_hf_frame", "number_captions_in_row_order",
    "parquet_files", "read_hf", "source_files",
]

# the columns of the flickr30k layout that are read (never `image`: decoding it is slow)
HF_CAPTION = "caption"
HF_SPLIT = "split"
HF_IMG_ID = "img_id"
HF_FILENAME = "filename"
HF_COLUMNS = (HF_CAPTION, HF_SPLIT, HF_IMG_ID, HF_FILENAME)


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists() for n in
                                 ("dataset_info.json", "state.json", "dataset_dict.json"))


def data_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".arrow"))


def source_files(source: str) -> list[Path]:
    """The files of a local source: a file, a folder's Parquet and Arrow files (sorted, in
    subfolders too), or the Parquet files a glob matches (sorted by name).

    Raises:
        InputError: the glob matches nothing, or a file that is not Parquet.
    """
    path = Path(source)
    if path.exists():
        return data_files(path)
    files = shard_files(source)
    if other := [f for f in files if f.suffix != ".parquet"]:
        raise InputError(source, f"matches {other[0]}, not a .parquet file; a glob names "
                         "Parquet shards in the nlphuji/flickr30k layout (quote it)")
    return files


def parquet_files(source: str) -> list[Path] | None:
    """The files of ``source`` where it is Parquet files only (a folder of shards, a glob,
    one file), which a build reads a slice at a time; None for anything else (Arrow files,
    a save_to_disk folder, a hub id)."""
    path = Path(source)
    if is_saved_dataset(path) or not (path.exists() or is_sharded(source)):
        return None
    files = source_files(source)
    return files if files and all(f.suffix == ".parquet" for f in files) else None


def _frame_from_datasets(dataset) -> pl.DataFrame:
    """A ``datasets.Dataset`` or ``DatasetDict`` as one polars frame, without the images."""
    import datasets

    parts = list(dataset.values()) if isinstance(dataset, datasets.DatasetDict) else [dataset]
    frames = []
    for part in parts:
        columns = [c for c in HF_COLUMNS if c in part.column_names]
        frames.append(part.select_columns(columns).to_polars())
    return pl.concat(frames, how="diagonal_relaxed")


def is_dataset_object(source) -> bool:
    """Whether ``source`` is a ``datasets.Dataset`` or ``DatasetDict`` (checked by type name, so
    the datasets library is not imported for a path)."""
    return type(source).__module__.split(".")[0] == "datasets" and \
        type(source).__name__ in ("Dataset", "DatasetDict")


def in_memory_frame(dataset, hf_split: str | None = None) -> tuple[pl.DataFrame, dict]:
    """The rows of a ``datasets.Dataset`` (or one split of a ``DatasetDict``, or all of them)
    and its cache key: the SHA-256 of the rows read (Arrow IPC), since a dataset built in
    memory has no file whose digest could stand for it."""
    if hf_split is not None:
        if type(dataset).__name__ != "DatasetDict" or hf_split not in dataset:
            splits = ", ".join(dataset) if type(dataset).__name__ == "DatasetDict" else "none"
            raise ToolError(f"hf_split {hf_split!r} is not a split of the dataset given "
                            f"(splits: {splits})")
        dataset = dataset[hf_split]
    frame = _frame_from_datasets(dataset)
    digest = hashlib.sha256(frame.write_ipc(None).getvalue()).hexdigest()
    return frame, {"dataset": digest}


def _read_arrow(path: Path) -> pl.DataFrame:
    """An Arrow file without its images: the IPC stream format that ``datasets`` writes, or
    the IPC file (Feather v2) format that pyarrow and polars write."""
    try:
        with pa.memory_map(str(path)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not an Arrow IPC stream or file ({exc})") from exc
    return pl.from_arrow(table.select([c for c in HF_COLUMNS if c in table.column_names]))


def load_hf_frame(source: str, hf_split: str | None = None) -> tuple[pl.DataFrame, dict]:
    """Read the source's rows (no images) and say how to key it in the cache."""
    path = Path(source)
    if is_saved_dataset(path):
        datasets = require("datasets", "hf", "save_to_disk folders")
        dataset = datasets.load_from_disk(str(path))
        if hf_split:
            dataset = dataset[hf_split]
        return _frame_from_datasets(dataset), {"path": str(path)}
    if path.exists() or is_sharded(source):
        files = source_files(source)
        if not files:
            raise InputError(path, "no .parquet or .arrow files here; expected the "
                             "nlphuji/flickr30k layout as Parquet/Arrow or a save_to_disk folder")
        parquet = [str(f) for f in files if f.suffix == ".parquet"]
        frames = []
        if parquet:
            try:
                schema = pl.scan_parquet(parquet[0]).collect_schema()
                columns = [c for c in HF_COLUMNS if c in schema]
                frames.append(pl.scan_parquet(parquet).select(columns).collect())
            except READ_FAILURES as exc:  # polars raises several types, and panics
                raise InputError(path, f"cannot read the Parquet file(s): {reason(exc)}; "
                                       "rebuild them") from exc
        frames += [_read_arrow(f) for f in files if f.suffix == ".arrow"]
        return pl.concat(frames, how="diagonal_relaxed"), {"path": str(path)}
    # Not a local path: a hub id, read through the datasets library (needs the network or
    # a populated HF cache).
    datasets = require("datasets", "hf", "Hugging Face hub ids")

    try:
        dataset = datasets.load_dataset(source, split=hf_split)
    except Exception as exc:
        raise ToolError(f"{source}: not a local file or folder, and loading it as a Hugging Face "
                        f"hub dataset failed ({type(exc).__name__}: {exc}). Download it first "
                        "(datasets.load_dataset(...).save_to_disk(DIR)) and pass DIR.") from exc
    fingerprints = ([d._fingerprint for d in dataset.values()]
                    if isinstance(dataset, datasets.DatasetDict) else [dataset._fingerprint])
    return _frame_from_datasets(dataset), {"hub": source, "fingerprints": fingerprints}


_TEXT = (pl.String, pl.Null)
_EXPECTED = {HF_CAPTION: ("text or a list of text", lambda t: isinstance(t, _TEXT) or (
                 isinstance(t, pl.List) and isinstance(t.inner, _TEXT))),
             HF_FILENAME: ("text", lambda t: isinstance(t, _TEXT)),
             HF_SPLIT: ("text", lambda t: isinstance(t, _TEXT)),
             HF_IMG_ID: ("integers or text", lambda t: isinstance(t, _TEXT) or t.is_integer())}
"""The flickr30k layout's columns and the dtypes they may have; anything else (bytes, numbers
in the caption) is refused by name instead of failing inside a list or string operation."""
NO_CAPTIONS = "row(s) have no captions"


def check_hf_layout(schema: pl.Schema, source: str) -> bool:
    """Check that ``schema`` is the flickr30k layout (the columns read, their dtypes); whether
    the captions come one per row (``caption`` is text) rather than as a list per image.

    Raises:
        InputError: a column is missing or has a dtype the layout does not have.
    """
    columns = set(schema)
    if HF_CAPTION not in columns or not ({HF_FILENAME, HF_IMG_ID} & columns):
        raise InputError(source, f"expected the columns {HF_CAPTION} and {HF_FILENAME} (or "
                         f"{HF_IMG_ID}); found {list(schema)}")
    for column, (expected, fits) in _EXPECTED.items():
        if column in columns and not fits(schema[column]):
            raise InputError(source, f"column {column!r} is {schema[column]}, expected "
                             f"{expected}; write the column as (UTF-8) text, or rebuild the file "
                             "from the original dataset")
    return schema[HF_CAPTION] == pl.String


def hf_image_id(columns) -> pl.Expr:
    """The image id of a row of the flickr30k layout: the file name stem (``img_id`` in this
    layout is a running number, so it is used only without ``filename``)."""
    if HF_FILENAME in columns:
        return image_stem(pl.col(HF_FILENAME)).alias(IMAGE_ID)
    return pl.col(HF_IMG_ID).cast(pl.String).alias(IMAGE_ID)


def hf_caption_rows(frame: pl.DataFrame, *, row_offset: int = 0
                    ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows of the flickr30k layout (checked by ``check_hf_layout``; the rows from
    ``row_offset`` on, for a slice of the source) as caption rows, one per caption, and the
    rows without captions (``image_id``, ``line``). Captions one per row keep ``caption_idx``
    0: ``number_captions_in_row_order`` numbers them once an image's rows are together."""
    columns = set(frame.columns)
    if frame.schema[HF_CAPTION] == pl.String:
        frame = frame.with_columns(pl.concat_list(HF_CAPTION))
    no_text = pl.lit(None, dtype=pl.String)
    frame = frame.with_row_index("row", offset=row_offset).with_columns(
        hf_image_id(columns),
        (pl.col(HF_FILENAME).cast(pl.String) if HF_FILENAME in columns
         else no_text).alias(IMAGE_PATH),
        (pl.col(HF_SPLIT).cast(pl.String) if HF_SPLIT in columns else no_text).alias(SPLIT),
        n=pl.col(HF_CAPTION).list.len().fill_null(0),
    )
    without = frame.filter(pl.col("n") == 0).select(IMAGE_ID, line="row")
    rows = (frame.filter(pl.col("n") > 0)
            .with_columns(pl.int_ranges(pl.col("n")).alias(CAPTION_IDX))
            .explode(HF_CAPTION, CAPTION_IDX))
    return rows.select(
        IMAGE_ID,
        pl.col(CAPTION_IDX).cast(pl.Int64),
        pl.col(HF_CAPTION).cast(pl.String).alias(CAPTION),
        SPLIT,
        pl.col("row").cast(pl.Int64).alias(SOURCE_ROW),
        IMAGE_PATH,
    ), without


def number_captions_in_row_order(rows: pl.DataFrame) -> pl.DataFrame:
    """``caption_idx`` of captions given one per row: each image's captions numbered in row
    order (``rows`` hold every row of their images, in source order)."""
    return rows.with_columns(pl.int_range(pl.len()).over(IMAGE_ID).cast(pl.Int64)
                             .alias(CAPTION_IDX))


def read_hf(frame: pl.DataFrame, source: str, irregular: Irregularities) -> pl.DataFrame:
    """Rows of the flickr30k layout to caption rows; the image id is the file name stem
    (``img_id`` in this layout is a running number, so it is used only without ``filename``)."""
    one_per_row = check_hf_layout(frame.schema, source)
    rows, without = hf_caption_rows(frame)
    irregular.add(SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS, without, NO_CAPTIONS)
    return number_captions_in_row_order(rows) if one_per_row else rows
