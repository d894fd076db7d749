"""Reading and checking a caption table with polars (docs/data-contracts.md, "Caption table"),
and, beside it, the pyarrow/numpy readers of the training path (``read_caption_arrays``,
``read_image_features``), which run where polars is not installed.

``CAPTION_SCHEMA`` is ``CAPTION_DTYPES`` of the contract as polars types.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from uncollapse.data.captions.contract import (
    CAPTION_DTYPES,
    IMAGE_FEATURE_IDS,
    IMAGE_FEATURES,
    IMAGE_ID,
    MATCH_ID,
    OPTIONAL_COLUMNS,
    SPLIT,
    expected_columns,
)
from uncollapse.data.csv_header import refuse_duplicate_columns
from uncollapse.data.npz import NPZ_READ_FAILURES, why
from uncollapse.data.readable import PARQUET, ZIP, check_input_file, unreadable
from uncollapse.errors import InputError

try:  # GPU hosts train without polars: the pyarrow readers below still work there
    import polars as pl

    from uncollapse.data.polars_read import READ_FAILURES, parquet_reading, reason
    from uncollapse.data.shards import shard_files
except ImportError:
    pl = None

__all__ = [
    "CAPTION_SCHEMA", "PARQUET_MAGIC", "PARQUET_SUFFIXES", "read_caption_arrays",
    "read_caption_table", "read_image_features", "scan_caption_shards", "schema_problems",
    "to_caption_frame",
]

CAPTION_SCHEMA: dict[str, pl.DataType] = ({name: getattr(pl, dtype)
                                           for name, dtype in CAPTION_DTYPES.items()}
                                          if pl is not None else {})
"""Column -> polars dtype, in the order the builders write them."""


def schema_problems(schema: pl.Schema | dict) -> list[str]:
    """Every way ``schema`` (column -> dtype) differs from the contract; empty when it fits."""
    problems = []
    for name, dtype in CAPTION_SCHEMA.items():
        if name not in schema:
            if name not in OPTIONAL_COLUMNS:
                problems.append(f"column {name!r} is missing")
        elif schema[name] != dtype:
            problems.append(f"column {name!r} is {schema[name]}, expected {dtype}")
    return problems


def to_caption_frame(data, *, name: str = "<table>",
                     columns: list[str] | None = None) -> pl.DataFrame:
    """A caption table from another library's frame, with the contract's dtypes.

    Takes a polars DataFrame or LazyFrame, a Hugging Face ``datasets.Dataset``, a pyarrow
    Table or a pandas DataFrame. ``datasets.load_dataset("csv", ...)`` reads ``image_id`` as
    Int64 and ``caption_idx`` as int64, ``load_dataset("json", ...)`` ``caption_idx`` as int64,
    pandas turns an integer column with a gap into float64: each column is converted to the
    contract's dtype (integer ids become text, integers of any width and whole floats become
    the contract's integers, an all-null column gets its dtype) only where no value changes;
    columns the contract does not name are kept, after the contract's. ``columns``: need,
    convert and return only these.

    Raises:
        InputError: a required column is missing, or a value does not fit its column's dtype
            (a caption_idx of 70000, a match_id of 1.5, a float image_id): the column, the
            value and its row are named, nothing is rounded or cut.
        TypeError: ``data`` is none of the kinds above (a ``DatasetDict``: pick a split).

    Example:
        >>> from datasets import load_dataset
        >>> table = to_caption_frame(load_dataset("csv", data_files="captions.csv")["train"])
        >>> CaptionTable.validate(table)
    """
    frame = _polars_frame(data)
    wanted = columns or [c for c in CAPTION_SCHEMA if c not in OPTIONAL_COLUMNS]
    missing = [f"column {c!r} is missing" for c in wanted if c not in frame.columns]
    if missing:
        raise _contract_error(name, missing)
    ours = columns or [c for c in CAPTION_SCHEMA if c in frame.columns]
    converted = [_to_dtype(frame[c], CAPTION_SCHEMA[c], name) for c in ours]
    extra = [] if columns else [c for c in frame.columns if c not in CAPTION_SCHEMA]
    return frame.select(*converted, *extra)


def _polars_frame(data) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    kind = f"{type(data).__module__.split('.')[0]}.{type(data).__name__}"
    if kind == "datasets.DatasetDict":
        raise TypeError(f"a DatasetDict holds several splits ({', '.join(data)}); pass one of "
                        "them, such as data['train']")
    if kind in ("datasets.Dataset", "pyarrow.Table"):
        return pl.from_arrow(data.data.table if kind == "datasets.Dataset" else data)
    if kind == "pandas.DataFrame":
        return pl.from_pandas(data)
    raise TypeError(f"expected a caption table as a polars, pandas or pyarrow frame or a "
                    f"datasets.Dataset, got {kind}")


def _to_dtype(column: pl.Series, dtype: pl.DataType, name) -> pl.Series:
    """``column`` as ``dtype`` where no value changes; else InputError naming the first."""
    have = column.dtype
    if have == dtype:
        return column
    if dtype == pl.String:
        fits = have == pl.Null or isinstance(have, (pl.Categorical, pl.Enum)) or (
            have.is_integer() and column.name == IMAGE_ID)
    else:
        fits = have == pl.Null or have.is_integer() or have.is_float()
    if not fits:
        raise InputError(name, f"column {column.name!r} is {have}, expected {dtype}; convert "
                         "it (whole numbers for an id or number column, text for text)")
    cast = column.cast(dtype, strict=False)
    changed = cast.is_null() & column.is_not_null()
    if have.is_float():
        changed = changed | (column.is_not_null() & (column != column.floor()).fill_null(True))
    if changed.any():
        row = int(changed.arg_true()[0])
        raise InputError(name, f"column {column.name!r} holds {column[row]!r} at row {row}, "
                         f"which is not a {dtype} ({int(changed.sum())} value(s) like it); "
                         "nothing was rounded or cut: fix the values")
    return cast


def read_caption_table(path: str | Path, *, columns: list[str] | None = None) -> pl.DataFrame:
    """Read a caption table (Parquet or CSV) and check its columns against the contract.

    Parquet is recognised by its magic bytes (``PAR1``), anything else is read as CSV with a
    header row; CSV values are read as text (ids keep their leading zeros) and cast to the
    contract's dtypes. ``"-"`` reads the table from standard input.

    Args:
        path: the file, or ``"-"`` for standard input.
        columns: read only these columns (all contract columns by default).

    Raises:
        InputError: the file is missing or unreadable, does not match the contract (every
            mismatch is named, with the expected columns), or a CSV value does not convert to
            its column's dtype (the line is named).
    """
    if str(path) == "-":
        name, source = "<stdin>", io.BytesIO(sys.stdin.buffer.read())
        magic = source.getvalue()[:4]
    else:
        name = source = Path(path)
        check_input_file(source, "a caption table (Parquet or CSV)",
                         "build one with `uncollapse build captions`", accept=(PARQUET,))
        try:
            with open(source, "rb") as handle:
                magic = handle.read(4)
        except OSError as exc:
            raise unreadable(name, exc) from exc
    if magic == PARQUET_MAGIC:
        return _read_parquet(name, source, columns)
    if isinstance(name, Path) and name.suffix.lower() in PARQUET_SUFFIXES:
        raise InputError(name, "not a readable Parquet file (it does not start with PAR1)")
    if magic.lstrip()[:1] in (b"{", b"["):
        raise InputError(name, "is a JSON file, not a caption table (Parquet or CSV); a caption "
                         "source (COCO or Karpathy JSON) is made into a table first: "
                         f"`uncollapse build captions {name} -o captions.parquet`")
    return _read_csv(name, source, columns)


def scan_caption_shards(source: str | Path, *, columns: list[str] | None = None) -> pl.LazyFrame:
    """A caption table stored as Parquet shards (a folder, or a glob such as
    ``'captions/part-*.parquet'``) as one LazyFrame, rows in the shards' name order; each
    shard's columns are checked against the contract (from its footer, without reading rows).

    Raises:
        InputError: no shard matches, or a shard is unreadable or does not match the contract
            (the shard is named).
    """
    files = shard_files(source)
    for file in files:
        with parquet_reading(file):
            schema = pl.read_parquet_schema(file)
        if problems := schema_problems(schema):
            raise _contract_error(file, problems)
    wanted = columns or list(CAPTION_SCHEMA)
    # image_path is optional: a shard without it reads as nulls
    return pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore",
                           schema={c: CAPTION_SCHEMA[c] for c in CAPTION_SCHEMA}).select(wanted)


PARQUET_MAGIC = b"PAR1"
PARQUET_SUFFIXES = (".parquet", ".pq")


def _contract_error(name, problems: list[str]) -> InputError:
    return InputError(name, "does not match the caption table contract: "
                      f"{'; '.join(problems)}. Expected columns {expected_columns()}; "
                      "rebuild it with `uncollapse build captions`")


def _read_parquet(name, source, columns: list[str] | None) -> pl.DataFrame:
    with parquet_reading(name):
        schema = pl.read_parquet_schema(source)
    if problems := schema_problems(schema):
        raise _contract_error(name, problems)
    wanted = columns or [c for c in CAPTION_SCHEMA if c in schema]
    with parquet_reading(name):
        return pl.read_parquet(source, columns=wanted)


def _read_csv(name, source, columns: list[str] | None) -> pl.DataFrame:
    refuse_duplicate_columns(name, None if isinstance(source, Path) else source)
    try:
        text = pl.read_csv(source, infer_schema=False)
    except READ_FAILURES as exc:
        raise InputError(name, f"not a readable Parquet or CSV file ({reason(exc)})") from exc
    if not set(CAPTION_SCHEMA) & set(text.columns):
        raise InputError(name, "is not a caption table: its first line names none of the "
                         f"table's columns ({expected_columns()}); a caption source (COCO or "
                         "Karpathy JSON, a Flickr token file or CSV) is made into a table "
                         f"first: `uncollapse build captions {name} -o captions.parquet`")
    missing = [f"column {c!r} is missing" for c in CAPTION_SCHEMA
               if c not in text.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        raise _contract_error(name, missing)
    wanted = columns or [c for c in CAPTION_SCHEMA if c in text.columns]
    text = text.select(wanted)
    cast = text.select(pl.col(c).cast(CAPTION_SCHEMA.get(c, pl.String), strict=False)
                       for c in wanted)
    for column in wanted:
        failed = (cast[column].is_null() & text[column].is_not_null()).arg_true()
        if failed.len():
            row = int(failed[0])
            raise InputError(name, f"column {column!r} holds {text[column][row]!r}, which is "
                             f"not a {CAPTION_SCHEMA[column]} ({failed.len()} value(s) like it); "
                             "fix the value or rebuild the table with `uncollapse build captions`",
                             line=row + 2)
    return cast


def read_caption_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """``match_id`` (int64), ``image_id`` (str) and ``split`` (object, None where unset) of a
    caption table, keyed by those column names, with pyarrow only (the training path).

    Raises:
        InputError: the file is missing or unreadable, lacks ``match_id`` or ``image_id``, or
            either holds nulls.
    """
    path = Path(path)
    check_input_file(path, "a Parquet caption table", "build one with `uncollapse build "
                     "captions`", require=PARQUET)
    try:
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in (MATCH_ID, IMAGE_ID, SPLIT)
                                             if c in names])
    except Exception as exc:
        raise InputError(path, f"not a readable Parquet caption table ({exc})") from exc
    for column in (MATCH_ID, IMAGE_ID):
        if column not in table.column_names:
            raise InputError(path, f"has no {column!r} column; build the table with "
                             "`uncollapse build captions`")
    if table.column(MATCH_ID).null_count or table.column(IMAGE_ID).null_count:
        raise InputError(path, f"{MATCH_ID} or {IMAGE_ID} holds nulls; run `uncollapse validate "
                         "captions` to see which rows")
    split = (table.column(SPLIT).to_numpy(zero_copy_only=False)
             if SPLIT in table.column_names else np.full(table.num_rows, None, dtype=object))
    return {MATCH_ID: table.column(MATCH_ID).to_numpy().astype(np.int64),
            IMAGE_ID: table.column(IMAGE_ID).to_numpy(zero_copy_only=False).astype(str),
            SPLIT: split}


def read_image_features(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(features [images, D], image_ids [images] as str)`` of an image-feature NPZ, read
    without pickle.

    Raises:
        InputError: unreadable, holds object arrays, or lacks ``features`` or ``image_ids``.
    """
    path = Path(path)
    check_input_file(path, "an image-feature NPZ", f"save {IMAGE_FEATURES} and "
                     f"{IMAGE_FEATURE_IDS} with numpy.savez", require=ZIP)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not {IMAGE_FEATURES, IMAGE_FEATURE_IDS} <= set(npz.files):
                raise InputError(path, f"an image-feature NPZ needs {IMAGE_FEATURES!r} and "
                                 f"{IMAGE_FEATURE_IDS!r}, it has {sorted(npz.files)}")
            return npz[IMAGE_FEATURES], npz[IMAGE_FEATURE_IDS].astype(str)
    except NPZ_READ_FAILURES as exc:  # object arrays need pickle, which is refused
        raise InputError(path, f"cannot be read without pickle ({why(exc)}); save "
                         f"{IMAGE_FEATURES} and {IMAGE_FEATURE_IDS} (a string or integer "
                         "array) with numpy.savez") from exc
