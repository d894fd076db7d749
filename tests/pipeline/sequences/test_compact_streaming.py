"""Compact sequence files from vectors larger than memory: the vectors member is streamed
from the memory map into the NPZ, converted a block at a time, never copied whole."""

from __future__ import annotations

import tracemalloc

import numpy as np
import polars as pl

from uncollapse.data.npz import AsType, open_npz, write_npz
from uncollapse.data.sequences.chunks import load_chunks
from uncollapse.pipeline.sequences.sequence_file import write_sequences

MB = 1 << 20


def chunk_table(path, n_docs: int, per_doc: int) -> None:
    doc = np.repeat(np.arange(n_docs, dtype=np.int64), per_doc)
    pl.DataFrame({"doc_id": doc, "doc_key": pl.Series(doc).cast(pl.String),
                  "position": np.tile(np.arange(per_doc, dtype=np.int32), n_docs),
                  "text": pl.Series(doc).cast(pl.String)}).write_parquet(path)


def test_compact_vectors_stream_from_a_memory_map(tmp_path):
    rows, dim = 100_000, 96  # float64 on disk: 77 MB; as float32 in the file: 38 MB
    chunk_table(tmp_path / "chunks.parquet", rows // 100, 100)
    on_disk = np.lib.format.open_memmap(tmp_path / "vectors.npy", mode="w+",
                                        dtype=np.float64, shape=(rows, dim))
    for start in range(0, rows, 10_000):
        on_disk[start:start + 10_000] = (np.arange(start, start + 10_000)[:, None]
                                         + np.arange(dim) / 128)
    on_disk.flush()
    del on_disk
    chunks = load_chunks(tmp_path / "chunks.parquet")
    vectors = np.load(tmp_path / "vectors.npy", mmap_mode="r")

    tracemalloc.start()
    stats = write_sequences(chunks, vectors, 4, tmp_path / "seq.npz", compact=True, texts=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # a converted copy of the vectors alone would be 38 MB
    assert peak < 12 * MB, f"peak {peak / MB:.1f} MB"
    assert stats["chunks"] == rows and stats["samples"] == rows - 4 * (rows // 100)

    written = open_npz(tmp_path / "seq.npz")["vectors"]
    assert written.dtype == np.float32 and written.shape == (rows, dim)
    for start in (0, 31_337, rows - 7):
        assert np.array_equal(written[start:start + 7], vectors[start:start + 7].astype(
            np.float32))
    with np.load(tmp_path / "seq.npz", allow_pickle=False) as npz:  # numpy's own reader
        assert np.array_equal(npz["vectors"][12_345], vectors[12_345].astype(np.float32))


def test_converted_and_fortran_ordered_members_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1000, 37))
    fortran = np.asfortranarray(rng.integers(0, 100, size=(300, 5)))
    write_npz(tmp_path / "a.npz", {"half": AsType(base, np.float16), "fortran": fortran,
                                   "scalar": np.int64(4), "empty": AsType(base[:0], np.float32)})
    with np.load(tmp_path / "a.npz", allow_pickle=False) as npz:
        assert np.array_equal(npz["half"], base.astype(np.float16))
        assert np.array_equal(npz["fortran"], fortran)
        assert npz["scalar"] == 4 and npz["empty"].shape == (0, 37)
    mapped = open_npz(tmp_path / "a.npz")
    assert np.array_equal(mapped["half"], base.astype(np.float16))
