"""The windows of a sequence file are cut per partition of whole documents
(``sequence_partition``) and written in ``doc_id`` order (``write_sequence_parts``): any
partitioning, in any order, gives the bytes of the whole table as one partition, which is
what the local engine writes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uncollapse.data import npz
from uncollapse.data.shards import stable_bucket
from uncollapse.errors import ToolError
from uncollapse.pipeline.sequences import sequence_file
from uncollapse.pipeline.sequences.sequence_file import (
    sequence_partition,
    write_sequence_parts,
    write_sequences,
)


def chunk_table(lengths: list[int], doc_ids: list[int]) -> pl.DataFrame:
    doc = np.repeat(np.asarray(doc_ids, dtype=np.int64), lengths)
    position = np.concatenate([np.arange(n) for n in lengths]).astype(np.int32)
    return pl.DataFrame({"doc_id": doc, "doc_key": [f"ключ{d}" for d in doc],
                         "position": position,
                         "text": [f"{d}/{p}" * (p % 3) for d, p in zip(doc, position,
                                                                        strict=True)]})


def vectors_of(chunks: pl.DataFrame, dim: int = 4) -> np.ndarray:
    """float64 vectors naming their row, document and position."""
    vectors = np.zeros((chunks.height, dim))
    vectors[:, 0] = np.arange(chunks.height)
    vectors[:, 1] = chunks["doc_id"].to_numpy()
    vectors[:, 2] = chunks["position"].to_numpy() + 0.25
    return vectors


def partitions_of(chunks, vectors, n: int, order: list[int], **form) -> list:
    bucket = stable_bucket(chunks["doc_id"].to_numpy(), n)
    return [sequence_partition(chunks.filter(pl.Series(bucket == p)), vectors[bucket == p], 3,
                               **form) for p in order]


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=25),
       gaps=st.lists(st.integers(1, 1000), min_size=25, max_size=25),
       n=st.integers(1, 6), shuffle=st.randoms(use_true_random=False),
       compact=st.booleans(), texts=st.booleans())
def test_any_partitioning_in_any_order_writes_the_bytes_of_one_partition(
        tmp_path_factory, lengths, gaps, n, shuffle, compact, texts):
    tmp = tmp_path_factory.mktemp("parts")
    chunks = chunk_table(lengths, np.cumsum(gaps[:len(lengths)]).tolist())
    vectors = vectors_of(chunks)
    whole = write_sequences(chunks, vectors, 3, tmp / "whole.npz", compact=compact, texts=texts)
    order = list(range(n))
    shuffle.shuffle(order)
    parts = partitions_of(chunks, vectors, n, order, compact=compact, texts=texts)
    with pytest.MonkeyPatch.context() as patch:  # a few rows per written block
        patch.setattr(npz, "_CONVERT_BLOCK", 40)
        stats = write_sequence_parts(parts, chunks, vectors, 3, tmp / "parts.npz",
                                     compact=compact, texts=texts)
    assert stats == whole
    assert (tmp / "parts.npz").read_bytes() == (tmp / "whole.npz").read_bytes()


def test_windows_of_interleaved_partitions_come_back_in_doc_id_order(tmp_path):
    chunks = chunk_table([5, 2, 4, 6], [10, 20, 30, 40])
    vectors = vectors_of(chunks)
    # documents 10 and 30 in one partition, 20 and 40 in the other, the second first
    odd = pl.Series(chunks["doc_id"].is_in([20, 40]))
    parts = [sequence_partition(chunks.filter(odd), vectors[odd.to_numpy()], 3),
             sequence_partition(chunks.filter(~odd), vectors[~odd.to_numpy()], 3)]
    assert [part.samples for part in parts] == [3, 3]
    assert parts[0].context_sequences.dtype == np.float32
    stats = write_sequence_parts(parts, chunks, vectors, 3, tmp_path / "seq.npz")
    assert (stats["samples"], stats["short_documents"], stats["documents"]) == (6, 1, 4)
    with np.load(tmp_path / "seq.npz", allow_pickle=False) as data:
        assert data["doc_ids"].tolist() == [10, 10, 30, 40, 40, 40]
        assert data["target_positions"].tolist() == [3, 4, 3, 3, 4, 5]
        assert data["target_vectors"][:, 0].tolist() == [3, 4, 10, 14, 15, 16]
        assert data["context_sequences"][2, :, 0].tolist() == [7, 8, 9]


def test_a_document_split_between_partitions_is_refused_and_nothing_is_written(tmp_path):
    chunks = chunk_table([5, 4], [1, 2])
    vectors = vectors_of(chunks)
    halves = [sequence_partition(chunks.slice(0, 3), vectors[:3], 2),
              sequence_partition(chunks.slice(3), vectors[3:], 2)]
    with pytest.raises(ToolError, match=r"the partitions hold 9 chunk rows in 3 documents for "
                                        r"9 chunk rows: a document was lost or split"):
        write_sequence_parts(halves, chunks, vectors, 2, tmp_path / "seq.npz")
    lost = partitions_of(chunks, vectors, 2, [0])
    with pytest.raises(ToolError, match="a document was lost"):
        write_sequence_parts(lost, chunks, vectors, 2, tmp_path / "seq.npz")
    assert list(tmp_path.iterdir()) == []


class _Partitioning:
    """What ``RayEngine.map_groups`` promises, in this process: the blocks' rows numbered,
    split by the stable hash of the key, each partition in row order handed to ``fn``."""

    def __init__(self, n: int):
        self.n, self.blocks = n, 0

    def map_groups(self, fn, blocks, *, key, what):
        blocks = list(blocks)
        self.blocks = len(blocks)
        rows = pl.concat(blocks).with_row_index("row")
        bucket = stable_bucket(rows[key].to_numpy(), self.n)
        return [fn(rows.filter(pl.Series(bucket == p))) for p in reversed(range(self.n))
                if (bucket == p).any()]


@pytest.mark.parametrize("compact", [False, True], ids=["dense", "compact"])
def test_an_engine_cuts_blocks_of_rows_into_the_local_file(tmp_path, monkeypatch, compact):
    chunks = chunk_table([7, 1, 3, 9, 4] * 8, list(range(0, 80, 2)))
    vectors = vectors_of(chunks)
    local = write_sequences(chunks, vectors, 3, tmp_path / "local.npz", compact=compact)
    engine = _Partitioning(5)
    monkeypatch.setattr(sequence_file, "BLOCK_BYTES", 160)  # 10 rows a block, 5 with vectors
    on_engine = write_sequences(chunks, vectors, 3, tmp_path / "engine.npz", compact=compact,
                                engine=engine)
    assert engine.blocks == (20 if compact else 39)  # of 192 rows
    assert on_engine == local
    assert (tmp_path / "engine.npz").read_bytes() == (tmp_path / "local.npz").read_bytes()
