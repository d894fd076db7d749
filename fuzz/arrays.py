"""Hostile variants of ``.npy``, ``.npz`` and ``.parquet`` seeds that still parse as their format.

Byte mutations mostly break the container; these keep it valid and put the hostility inside:
NaN/inf and values near float32's limit, zero-width and zero-row arrays, object arrays whose
pickle would create a marker file if anything loaded them with ``allow_pickle=True``, wrong
dtypes and ranks, arrays of different lengths, missing and extra keys, null, duplicated and
retyped table columns, and strings with TABs, control characters and non-UTF-8 bytes.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from fuzz.mutations import BOMB_BYTES


class PicklePayload:
    """Unpickling this creates ``marker`` (a directory): proof that a pickle was executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def pickled_array(marker: Path) -> np.ndarray:
    out = np.empty(3, dtype=object)
    out[:] = [PicklePayload(str(marker)), 1.0, "x"]
    return out


def _hostile_array(array: np.ndarray, data: st.DataObject, marker: Path) -> np.ndarray:
    kind = data.draw(st.sampled_from([
        "nan", "inf", "near_float32_max", "huge", "zero_width", "zero_rows", "pickled", "strings",
        "complex", "float16", "bool", "scalar", "extra_dim", "one_row", "negative", "shuffled",
        "all_equal"]), label="array mutation")
    a = np.array(array)
    if a.dtype.kind not in "biuf" and kind in ("nan", "inf", "near_float32_max", "huge",
                                                "negative", "complex", "float16"):
        a = np.zeros(a.shape, dtype=np.float32)
    if a.ndim == 0 and kind in ("zero_rows", "one_row"):
        return np.zeros(0, dtype=a.dtype) if kind == "zero_rows" else a.reshape(1)
    if kind in ("nan", "inf", "near_float32_max", "huge", "negative") and a.size:
        a = a.astype(np.float64 if kind == "huge" else np.float32) if a.dtype.kind not in "f" \
            else a.copy()
        flat = a.reshape(-1)
        where = data.draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=4))
        value = {"nan": np.nan, "inf": np.inf, "near_float32_max": 3.0e38, "huge": 1e300,
                 "negative": -1}[kind]
        flat[where] = value
        return a
    if kind == "zero_width":
        return np.zeros((a.shape[0] if a.ndim else 0, 0), dtype=a.dtype)
    if kind == "zero_rows":
        return np.zeros((0, *a.shape[1:]), dtype=a.dtype)
    if kind == "pickled":
        return pickled_array(marker)
    if kind == "strings":
        return a.astype(str)
    if kind == "complex":
        return a.astype(np.complex64)
    if kind == "float16":
        return a.astype(np.float16)
    if kind == "bool":
        return a.astype(bool)
    if kind == "scalar":
        return np.asarray(a.reshape(-1)[0] if a.size else 0)
    if kind == "extra_dim":
        return a[..., None]
    if kind == "one_row":
        return a[:1]
    if kind == "all_equal" and a.size:
        return np.broadcast_to(a.reshape(-1)[:1], a.shape).copy() if a.ndim else a
    return a[::-1].copy() if a.ndim else a


def mutate_npy(seed: Path, data: st.DataObject, marker: Path) -> bytes:
    array = np.load(seed, allow_pickle=False)
    out = io.BytesIO()
    np.save(out, _hostile_array(array, data, marker), allow_pickle=True)
    return out.getvalue()


def mutate_npz(seed: Path, data: st.DataObject, marker: Path) -> bytes:
    with np.load(seed, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    keys = sorted(arrays)
    action = data.draw(st.sampled_from(["array", "array", "drop", "extra", "rename", "shorter",
                                        "pickled_extra", "deflated", "deflated_bomb"]),
                       label="npz mutation")
    key = data.draw(st.sampled_from(keys), label="key")
    if action == "array":
        arrays[key] = _hostile_array(arrays[key], data, marker)
    elif action == "drop":
        del arrays[key]
    elif action == "extra":
        arrays["unexpected"] = np.arange(5)
    elif action == "rename":
        arrays[key.upper() + "_"] = arrays.pop(key)
    elif action == "shorter":
        arrays[key] = arrays[key][:max(0, len(arrays[key]) - 1)] if arrays[key].ndim else \
            arrays[key]
    elif action == "pickled_extra":
        arrays[key] = pickled_array(marker)
    elif action == "deflated_bomb":  # 96 MB of zeros in a few hundred KB
        arrays[key] = np.zeros(BOMB_BYTES // 4, dtype=np.float32)
    out = io.BytesIO()
    if action.startswith("deflated"):
        np.savez_compressed(out, **arrays)
    else:
        _savez(out, arrays)
    return out.getvalue()


def _savez(out: io.BytesIO, arrays: dict) -> None:
    """``np.savez`` that writes object arrays too (their pickle is the point)."""
    with zipfile.ZipFile(out, "w") as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.save(member, array, allow_pickle=True)
            archive.writestr(f"{name}.npy", member.getvalue())


def mutate_parquet(seed: Path, data: st.DataObject, marker: Path) -> bytes:
    table = pq.read_table(seed)
    names = table.column_names
    action = data.draw(st.sampled_from([
        "nulls", "drop", "duplicate", "retype", "zero_rows", "hostile_strings", "nan_numbers",
        "huge_numbers", "binary_strings", "repeat_rows", "one_row"]), label="table mutation")
    name = data.draw(st.sampled_from(names), label="column")
    column = table.column(name)
    i = names.index(name)
    if action == "nulls":
        table = table.set_column(i, name, pa.nulls(table.num_rows, column.type))
    elif action == "drop":
        table = table.drop_columns([name])
    elif action == "duplicate":
        table = pa.Table.from_arrays([*table.columns, column], names=[*names, name])
    elif action == "retype":
        table = table.set_column(i, name, pa.array([str(v) for v in column.to_pylist()]))
    elif action == "zero_rows":
        table = table.slice(0, 0)
    elif action == "hostile_strings":
        junk = data.draw(st.sampled_from(["a\tb", "\x00", "\r\n", "\u2028", "", " ", "\x1b[2J",
                                          "x" * 100_000, "\ufeffid", "NaN"]))
        values = [junk if v is not None and k % 2 == 0 else v
                  for k, v in enumerate(column.cast(pa.string()).to_pylist())]
        table = table.set_column(i, name, pa.array(values, pa.string()))
    elif action in ("nan_numbers", "huge_numbers"):
        value = np.nan if action == "nan_numbers" else 1e300
        values = [value if k % 3 == 0 else v for k, v in enumerate(column.to_pylist())]
        try:
            table = table.set_column(i, name, pa.array(values, pa.float64()))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            table = table.set_column(i, name, pa.array([str(v) for v in values]))
    elif action == "binary_strings":
        values = [b"\xff\xfe" + str(v).encode() for v in column.to_pylist()]
        table = table.set_column(i, name, pa.array(values, pa.binary()))
    elif action == "repeat_rows":
        table = pa.concat_tables([table, table])
    else:
        table = table.slice(0, 1)
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


STRUCTURED: dict[str, Callable[[Path, st.DataObject, Path], bytes]] = {
    ".npy": mutate_npy, ".npz": mutate_npz, ".parquet": mutate_parquet,
}
