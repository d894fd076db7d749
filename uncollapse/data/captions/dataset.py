"""A torch Dataset over the rows of a caption table, with optional feature arrays.

Each item is one caption row; its ``match_id`` is the positive group that
``GroupedBatchSampler`` and ``GroupedCollate`` (``uncollapse.samplers``) work with::

    data = CaptionDataset("captions.parquet", text_features=np.load("text.npy", mmap_mode="r"))
    sampler = GroupedBatchSampler(data.match_ids, batch_size=250, per_group=5, seed=0)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=GroupedCollate("match_id"))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from uncollapse.data.captions.contract import CAPTION, CAPTION_DTYPES, IMAGE_ID, MATCH_ID

if TYPE_CHECKING:
    import datasets
    import polars as pl

__all__ = ["CaptionDataset", "IMAGE_KEYS", "ITEM_COLUMNS"]

# polars is imported where a table is read, not at the top: ``uncollapse.samplers`` exports this
# dataset, and the training path must import on GPU hosts that have torch, numpy and pyarrow only

ITEM_COLUMNS = (IMAGE_ID, MATCH_ID, CAPTION)
"""The caption table columns a ``CaptionDataset`` needs."""

IMAGE_KEYS = (IMAGE_ID, MATCH_ID)
"""The columns image features may be aligned by."""


def _examples(values, limit: int = 5) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _feature_rows(features, name: str) -> int:
    shape = getattr(features, "shape", None)
    if shape is None or len(shape) < 1:
        raise ValueError(f"{name} must be an array or tensor with one row per item, got "
                         f"{type(features).__name__}")
    return int(shape[0])


def _image_feature_rows(keys: pl.Series, image_ids, n_images: int, image_key: str) -> np.ndarray:
    """Row of the image features of every table row, matched on ``image_key`` (vectorised)."""
    import polars as pl

    if image_ids is None:
        if image_key != MATCH_ID:
            raise ValueError("image_ids is needed to align image_features by image_id; pass "
                             "the image_id of every feature row, or image_key='match_id' when "
                             "feature row j belongs to match_id j")
        rows = keys.to_numpy().astype(np.int64)
        outside = (rows < 0) | (rows >= n_images)
        if outside.any():
            bad = np.flatnonzero(outside)
            raise ValueError(f"image_features has {n_images} rows, but table rows "
                             f"{_examples(bad.tolist())} have match_id "
                             f"{_examples(rows[bad].tolist())} outside 0..{n_images - 1}; "
                             "pass image_ids to say which image each feature row holds")
        return rows
    if isinstance(image_ids, Mapping):
        ids, rows = list(image_ids.keys()), np.fromiter(image_ids.values(), dtype=np.int64,
                                                        count=len(image_ids))
        outside = (rows < 0) | (rows >= n_images)
        if outside.any():
            bad = [ids[i] for i in np.flatnonzero(outside)]
            raise ValueError(f"image_ids maps {_examples(bad)} to rows outside "
                             f"0..{n_images - 1} of image_features")
    else:
        ids = image_ids.tolist() if hasattr(image_ids, "tolist") else list(image_ids)
        if len(ids) != n_images:
            raise ValueError(f"image_ids has {len(ids)} entries but image_features has "
                             f"{n_images} rows; entry j must name the image of feature row j")
        rows = np.arange(n_images, dtype=np.int64)
    # string image ids match the table's text ids (COCO's int ids become "139")
    id_type = pl.String if keys.dtype == pl.String else keys.dtype
    try:
        lookup = pl.DataFrame({image_key: pl.Series(ids).cast(id_type, strict=True),
                               "_feature_row": rows})
    except Exception as exc:  # polars raises several types for a failed cast
        raise ValueError(f"image_ids must be {image_key} values ({keys.dtype}); "
                         f"got {_examples(ids, 3)} ({exc})") from exc
    repeated = lookup.filter(pl.col(image_key).is_duplicated())[image_key].unique()
    if len(repeated):
        raise ValueError(f"image_ids names {_examples(repeated.sort().to_list())} more than "
                         "once; each image needs exactly one feature row")
    found = (keys.to_frame(image_key).with_row_index("_table_row")
             .join(lookup, on=image_key, how="left").sort("_table_row"))
    missing = found.filter(pl.col("_feature_row").is_null())
    if len(missing):
        ids_missing = missing[image_key].unique(maintain_order=True).to_list()
        raise ValueError(f"image_features has no row for {image_key} {_examples(ids_missing)} "
                         f"(table rows {_examples(missing['_table_row'].to_list())}); add "
                         "their features or drop those rows from the table")
    return found["_feature_row"].to_numpy().astype(np.int64)


class _Texts:
    """Strings as one UTF-8 buffer plus offsets: compact, and safe to read in forked loader
    workers (polars' thread pool can deadlock after a fork, so items never touch polars)."""

    def __init__(self, values: pl.Series):
        import polars as pl

        values = values.cast(pl.String).fill_null("")
        self.data = np.frombuffer(values.str.join("").item().encode("utf-8"), dtype=np.uint8)
        self.offsets = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(values.str.len_bytes().to_numpy(), out=self.offsets[1:])

    def take(self, index: np.ndarray) -> list[str]:
        data, starts, stops = self.data, self.offsets[index], self.offsets[index + 1]
        return [data[a:b].tobytes().decode("utf-8")
                for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]


def _gather(features, index: np.ndarray) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        return features[torch.from_numpy(index)]
    return torch.as_tensor(np.asarray(features[index]))


class CaptionDataset(Dataset):
    """The rows of a caption table as items for contrastive training.

    Item ``i`` is a dict for table row ``i``: ``row`` (int64), ``match_id`` (int64, its positive
    group), ``image_id`` (str), ``caption`` (str; a null caption is ``""``), and when given
    ``text_features`` (row ``i`` of ``text_features``) and ``image_features`` (the feature row
    of the row's image), both as tensors of the arrays' dtype.

    Args:
        table: a caption table (polars DataFrame) or the path of one (Parquet, checked against
            the caption table contract); a ``datasets.Dataset``, pyarrow Table or pandas
            DataFrame is converted with ``to_caption_frame`` (an Int64 ``image_id`` of
            ``load_dataset("csv")`` becomes text, where no value changes).
        text_features: [n_rows, D] array or tensor, row ``i`` for table row ``i`` (a numpy
            memmap works: rows are read per batch).
        image_features: [n_images, D] array or tensor, one row per image.
        image_ids: which image each row of ``image_features`` holds: a sequence of
            ``n_images`` ids (entry ``j`` is the ``image_key`` of feature row ``j``) or a
            mapping ``{id: feature row}``. Without it, feature row ``j`` belongs to
            ``match_id`` ``j`` (only with ``image_key="match_id"``).
        image_key: the table column ``image_ids`` refers to: ``"image_id"`` (default) or
            ``"match_id"``.

    Attributes:
        match_ids: [n_rows] int64, the ``group_ids`` to give ``GroupedBatchSampler``.

    Raises:
        InputError: ``table`` is a path that is missing or breaks the contract.
        ValueError: a needed column is missing or null, or the features do not line up with
            the rows or images (the message names the rows and ids concerned).

    Example:
        >>> table = pl.read_parquet("captions.parquet")
        >>> data = CaptionDataset(table, image_features=np.load("image_feats.npy"),
        ...                       image_ids=np.load("image_feats_ids.npy"))
        >>> sampler = GroupedBatchSampler(data.match_ids, batch_size=250, per_group=5)
        >>> loader = DataLoader(data, batch_sampler=sampler, num_workers=4,
        ...                     collate_fn=GroupedCollate("match_id"))
        >>> batch = next(iter(loader))  # batch["image_features"]: [250, D]

    ``__getitems__`` reads a whole batch with one gather per column, which ``DataLoader``
    uses with ``batch_sampler=``; ``dataset[list_of_rows]`` returns the batch as one dict of
    stacked tensors and lists.
    """

    def __init__(self, table: pl.DataFrame | str | Path | datasets.Dataset, *, text_features=None,
                 image_features=None, image_ids=None, image_key: str = IMAGE_ID):
        import polars as pl

        from uncollapse.data.captions.table import read_caption_table, to_caption_frame

        if isinstance(table, (str, Path)):
            table = read_caption_table(table, columns=list(ITEM_COLUMNS))
        elif not isinstance(table, pl.DataFrame):  # a datasets.Dataset, pandas, pyarrow
            table = to_caption_frame(table, columns=list(ITEM_COLUMNS))
        missing = [c for c in ITEM_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"the caption table has no column(s) {', '.join(missing)}; a "
                             f"caption table has {', '.join(CAPTION_DTYPES)}")
        if image_key not in IMAGE_KEYS:
            raise ValueError(f"image_key must be one of {', '.join(IMAGE_KEYS)}, not "
                             f"{image_key!r}")
        for column in (IMAGE_ID, MATCH_ID):
            nulls = table[column].is_null()
            if nulls.any():
                raise ValueError(f"column {column} is null in table rows "
                                 f"{_examples(np.flatnonzero(nulls.to_numpy()).tolist())}; "
                                 "every caption needs its image and group")
        self._image_ids = _Texts(table[IMAGE_ID])
        self._captions = _Texts(table[CAPTION])
        self.match_ids = table[MATCH_ID].cast(pl.Int64).to_numpy()
        n = table.height
        if text_features is not None and _feature_rows(text_features, "text_features") != n:
            raise ValueError(f"text_features has {_feature_rows(text_features, 'text_features')}"
                             f" rows but the caption table has {n}; row i of text_features "
                             "must be the features of table row i")
        self.text_features = text_features
        self.image_features = image_features
        self._image_rows = None
        if image_features is not None:
            n_images = _feature_rows(image_features, "image_features")
            keys = table[image_key] if image_key == MATCH_ID else table[IMAGE_ID].cast(
                pl.String)
            self._image_rows = _image_feature_rows(keys, image_ids, n_images, image_key)
        elif image_ids is not None:
            raise ValueError("image_ids was given without image_features")

    def __len__(self) -> int:
        return len(self.match_ids)

    def _index(self, index) -> np.ndarray:
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(index) and (index.min() < -n or index.max() >= n):
            bad = index[(index < -n) | (index >= n)]
            raise IndexError(f"rows {_examples(bad.tolist())} out of range for {n} caption rows")
        return index % n if len(index) else index

    def batch(self, index) -> dict:
        """The rows ``index`` as one dict: tensors stacked along dim 0, strings as lists."""
        index = self._index(index)
        out = {"row": torch.from_numpy(index.copy()),
               MATCH_ID: torch.from_numpy(self.match_ids[index]),
               IMAGE_ID: self._image_ids.take(index),
               CAPTION: self._captions.take(index)}
        if self.text_features is not None:
            out["text_features"] = _gather(self.text_features, index)
        if self.image_features is not None:
            out["image_features"] = _gather(self.image_features, self._image_rows[index])
        return out

    def __getitem__(self, index):
        """One row as a dict (an int) or a batch as one dict (a list, array or tensor of rows)."""
        if isinstance(index, (int, np.integer)) or (
                isinstance(index, torch.Tensor) and index.ndim == 0):
            return {key: value[0] for key, value in self.batch([int(index)]).items()}
        return self.batch(index)

    def __getitems__(self, indices) -> list[dict]:
        """The rows ``indices`` as a list of item dicts, gathered as one batch."""
        batch = self.batch(indices)
        columns = {key: value.unbind(0) if isinstance(value, torch.Tensor) else value
                   for key, value in batch.items()}
        return [dict(zip(columns, values, strict=True))
                for values in zip(*columns.values(), strict=True)]
