"""JSON caption sources: COCO caption annotations and Karpathy's split files."""

from __future__ import annotations

import json
import re
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
from uncollapse.errors import InputError
from uncollapse.pipeline.captions.irregularities import (
    SOURCE_DUPLICATE_IMAGE,
    SOURCE_INVALID_ID,
    SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS,
    SOURCE_UNKNOWN_IMAGE,
    Irregularities,
)
from uncollapse.pipeline.captions.lines import image_stem
from uncollapse.pipeline.text_files import decode_utf8

__all__ = [
    "COCO_CAPTION", "COCO_IMAGE_ID", "COCO_SPLIT_IN_NAME", "KARPATHY_SPLIT",
    "coco_split_from_name", "load_json", "read_coco", "read_karpathy",
]

COCO_SPLIT_IN_NAME = re.compile(r"(train|val|test|restval)(?:\d{4})?", re.IGNORECASE)
# fields of the sources that happen to share a name with a caption table column
COCO_IMAGE_ID = "image_id"  # annotations[].image_id
COCO_CAPTION = "caption"  # annotations[].caption
KARPATHY_SPLIT = "split"  # images[].split


def load_json(path: Path) -> dict:
    try:
        data = json.loads(decode_utf8(path, path.read_bytes(),
                                      hint="JSON must be UTF-8; re-encode the file (e.g. iconv "
                                           "-t UTF-8) or download it again"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}", line=exc.lineno) from exc
    except RecursionError as exc:
        raise InputError(path, "JSON nested too deeply to be a caption file (thousands of "
                               "levels of [ or {); check that this is the COCO or Karpathy "
                               "JSON") from exc
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object at the top level")
    return data


def _records(path: Path, data: dict, key: str, fields: dict[str, pl.DataType],
             irregular: Irregularities | None = None,
             ids: tuple[str, ...] = ()) -> pl.DataFrame:
    """The records under ``key`` as a frame of ``fields`` with their ``index``; a record whose
    id field (``ids``) is NaN, Infinity or fractional is skipped as SOURCE_INVALID_ID."""
    records = data.get(key)
    if not isinstance(records, list):
        found = "no such key" if key not in data else f"a JSON {_json_kind(records)}"
        raise InputError(path, f"expected a list under the key {key!r}; found {found} (is "
                         "this a COCO caption file?)")
    try:
        frame = pl.DataFrame(records, infer_schema_length=None)
    except Exception as exc:  # polars raises several types for ragged records
        raise InputError(path, f"cannot read the records under {key!r}: {exc}") from exc
    missing = [f for f in fields if f not in frame.columns]
    if missing and records:
        raise InputError(path, f"records under {key!r} lack the field(s) {missing}; "
                         "is this the right format?")
    if not records:
        return pl.DataFrame(schema={"index": pl.UInt32, **fields})
    frame = frame.with_row_index("index")
    for name in ids:
        if frame[name].dtype.is_float():
            value = pl.col(name)
            bad = value.is_not_null() & (value.is_nan() | value.is_infinite() |
                                         (value != value.floor()))
            if irregular is not None:
                irregular.add(SOURCE_INVALID_ID, frame.filter(bad).select(
                    list=pl.lit(key), record=pl.col("index"),
                    **{name: value.cast(pl.String)}),
                    f"record(s) under {key!r} with a {name!r} that is not an integer or a "
                    "string, skipped")
            frame = frame.filter(~bad).with_columns(value.cast(pl.Int64))
    return frame.select(
        "index", *[pl.col(f).cast(dtype, strict=False) for f, dtype in fields.items()])


def _json_kind(value) -> str:
    """The JSON name of a decoded value's type (``object``, not ``dict``)."""
    return {dict: "object", str: "string", bool: "boolean", type(None): "null", int: "number",
            float: "number"}.get(type(value), "value")


def coco_split_from_name(path: Path) -> str | None:
    """``captions_val2017.json`` -> ``val``."""
    match = COCO_SPLIT_IN_NAME.search(path.name)
    return match.group(1).lower() if match else None


def read_coco(path: Path, irregular: Irregularities, split: str | None = None) -> pl.DataFrame:
    """COCO caption JSON: ``images[]`` (``id``, ``file_name``) and ``annotations[]``."""
    data = load_json(path)
    images = _records(path, data, "images", {"id": pl.String, "file_name": pl.String},
                      irregular, ids=("id",))
    annotations = _records(path, data, "annotations",
                           {COCO_IMAGE_ID: pl.String, "id": pl.Int64, COCO_CAPTION: pl.String},
                           irregular, ids=(COCO_IMAGE_ID, "id"))
    split = split or coco_split_from_name(path)
    image_id = pl.col(COCO_IMAGE_ID)
    repeated = images.filter(pl.int_range(pl.len()).over("id") > 0).sort("index")
    irregular.add(SOURCE_DUPLICATE_IMAGE,
                  repeated.select(pl.col("id").alias(IMAGE_ID), image=pl.col("index")),
                  "repeated image entr(ies) in images[] ignored")
    images = images.unique("id", keep="first", maintain_order=True)
    table = annotations.join(images.select(pl.col("id").alias(COCO_IMAGE_ID),
                                           pl.col("file_name").alias(IMAGE_PATH)),
                             on=COCO_IMAGE_ID, how="left")
    unknown = table.filter(pl.col(IMAGE_PATH).is_null()).sort("index")
    irregular.add(SOURCE_UNKNOWN_IMAGE,
                  unknown.select(image_id.alias(IMAGE_ID), annotation=pl.col("index")),
                  "caption(s) refer to an image missing from images[]")
    no_captions = images.join(annotations.select(image_id.alias("id")).unique(), on="id",
                              how="anti")
    irregular.add(SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS,
                  no_captions.sort("index").select(pl.col("id").alias(IMAGE_ID),
                                                   image=pl.col("index")),
                  "image(s) in images[] have no captions")
    # COCO has no caption numbering: number an image's captions by annotation id.
    return table.select(
        image_id.alias(IMAGE_ID),
        (pl.col("id").rank("ordinal").over(COCO_IMAGE_ID) - 1).cast(pl.Int64).alias(CAPTION_IDX),
        pl.col(COCO_CAPTION).alias(CAPTION),
        pl.lit(split, dtype=pl.String).alias(SPLIT),
        pl.col("index").cast(pl.Int64).alias(SOURCE_ROW),
        IMAGE_PATH,
    )


def read_karpathy(path: Path, irregular: Irregularities) -> pl.DataFrame:
    """Karpathy's ``dataset_{coco,flickr8k,flickr30k}.json``: ``images[].sentences[].raw``."""
    data = load_json(path)
    records = data.get("images")
    if not isinstance(records, list):
        raise InputError(path, "expected a list under the key 'images' (Karpathy split JSON)")
    try:
        images = pl.DataFrame(records, infer_schema_length=None).with_row_index("index")
    except Exception as exc:
        raise InputError(path, f"cannot read images[]: {exc}") from exc
    for needed in ("filename", "sentences"):
        if records and needed not in images.columns:
            raise InputError(path, f"images[] records lack {needed!r}; is this Karpathy JSON?")
    if not records:
        return pl.DataFrame(schema={IMAGE_ID: pl.String, CAPTION_IDX: pl.Int64,
                                    CAPTION: pl.String, SPLIT: pl.String,
                                    SOURCE_ROW: pl.Int64, IMAGE_PATH: pl.String})
    # COCO images carry their real COCO id (`cocoid`), the same id COCO's own JSON uses.
    image_id = (pl.col("cocoid").cast(pl.String) if "cocoid" in images.columns
                else image_stem(pl.col("filename")))
    folder = pl.col("filepath") + "/" if "filepath" in images.columns else pl.lit("")
    images = images.with_columns(
        image_id.alias(IMAGE_ID),
        pl.concat_str(folder, pl.col("filename")).alias(IMAGE_PATH),
        (pl.col(KARPATHY_SPLIT).cast(pl.String) if KARPATHY_SPLIT in images.columns
         else pl.lit(None, dtype=pl.String)).alias(SPLIT),
        n_sentences=pl.col("sentences").list.len(),
    )
    irregular.add(SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS,
                  images.filter(pl.col("n_sentences").fill_null(0) == 0)
                  .select(IMAGE_ID, image=pl.col("index")),
                  "image(s) have no sentences")
    sentences = (images.filter(pl.col("n_sentences") > 0)
                 .with_columns(pl.int_ranges(pl.col("n_sentences")).alias(CAPTION_IDX))
                 .explode("sentences", CAPTION_IDX)
                 .with_row_index("sentence_index"))
    return sentences.select(
        IMAGE_ID,
        pl.col(CAPTION_IDX).cast(pl.Int64),
        pl.col("sentences").struct.field("raw").cast(pl.String).alias(CAPTION),
        SPLIT,
        pl.col("sentence_index").cast(pl.Int64).alias(SOURCE_ROW),
        IMAGE_PATH,
    )
