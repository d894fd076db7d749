"""`uncollapse build sequences`: windows per document, dense and compact files, encoders."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from uncollapse.cli import main
from uncollapse.data.npz import open_npz, write_npz
from uncollapse.data.sequences.chunks import load_chunks
from uncollapse.data.sequences.contract import (
    COMPACT_ARRAYS,
    CONCEPT_TEXTS,
    DENSE_ARRAYS,
    DOC_KEYS,
    TEXTS,
    read_texts,
    sequence_windows,
)
from uncollapse.errors import InputError, ToolError
from uncollapse.pipeline.sequences.corpus import read_chunks
from uncollapse.pipeline.sequences.encode import encode_texts, resolve_encoder
from uncollapse.pipeline.sequences.sequence_file import write_sequences

REPO = Path(__file__).resolve().parents[3]


def make_chunks(tmp_path: Path, lengths: list[int], dim: int = 3) -> tuple[Path, Path]:
    """A chunk table of documents with these lengths, and vectors whose values name the row:
    vector of row r is [r, doc, position] (+ zeros), so windows can be checked by value."""
    doc = np.repeat(np.arange(len(lengths)), lengths)
    position = np.concatenate([np.arange(n) for n in lengths]) if lengths else np.zeros(0)
    chunks = pl.DataFrame({"doc_id": doc.astype(np.int64),
                           "doc_key": [f"doc{d}" for d in doc],
                           "position": position.astype(np.int32),
                           "text": [f"d{d}p{p}" for d, p in zip(doc, position, strict=True)]},
                          schema={"doc_id": pl.Int64, "doc_key": pl.String,
                                  "position": pl.Int32, "text": pl.String})
    vectors = np.zeros((len(doc), dim), dtype=np.float32)
    vectors[:, 0] = np.arange(len(doc)) + 1
    vectors[:, 1] = doc
    vectors[:, 2] = position
    chunks_path, vectors_path = tmp_path / "chunks.parquet", tmp_path / "vectors.npy"
    chunks.write_parquet(chunks_path)
    np.save(vectors_path, vectors)
    return chunks_path, vectors_path


def test_windows_stay_inside_documents_and_short_documents_are_counted():
    offsets = np.array([0, 5, 7, 7 + 3, 14])  # lengths 5, 2, 3, 4
    windows = sequence_windows(offsets, 2)
    assert windows.target_rows.tolist() == [2, 3, 4, 9, 12, 13]
    assert windows.doc_index.tolist() == [0, 0, 0, 2, 3, 3]
    assert windows.positions.tolist() == [2, 3, 4, 2, 2, 3]
    assert windows.short_documents == 1
    assert windows.context_rows(2).tolist() == [[0, 1], [1, 2], [2, 3], [7, 8], [10, 11],
                                                [11, 12]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=20), st.integers(1, 5))
def test_every_window_is_the_c_chunks_before_its_target_in_one_document(lengths, c):
    offsets = np.r_[0, np.cumsum(lengths)]
    windows = sequence_windows(offsets, c)
    doc_of_row = np.repeat(np.arange(len(lengths)), lengths)
    assert windows.target_rows.size == sum(max(n - c, 0) for n in lengths)
    assert windows.short_documents == sum(n < c + 1 for n in lengths)
    context = windows.context_rows(c)
    if context.size:
        assert (doc_of_row[context] == doc_of_row[windows.target_rows][:, None]).all()
        assert (context[:, -1] == windows.target_rows - 1).all()
        position = windows.target_rows - offsets[:-1][windows.doc_index]
        assert (position == windows.positions).all() and (position >= c).all()


def test_dense_file_matches_the_contract_and_loads_without_pickle(tmp_path):
    chunks_path, vectors_path = make_chunks(tmp_path, [4, 1, 3])
    chunks = load_chunks(chunks_path)
    stats = write_sequences(chunks, np.load(vectors_path), 2, tmp_path / "seq.npz")
    assert stats == {"form": "dense", "documents": 3, "chunks": 8, "samples": 3,
                     "context_length": 2, "dim": 3, "short_documents": 1}
    with np.load(tmp_path / "seq.npz", allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    assert {k: (v.dtype.str, v.shape) for k, v in data.items()} == {
        "context_sequences": ("<f4", (3, 2, 3)), "target_vectors": ("<f4", (3, 3)),
        "doc_ids": ("<i8", (3,)), "target_positions": ("<i4", (3,)),
        "concept_texts_utf8": ("|u1", (12,)), "concept_texts_offsets": ("<i8", (4,))}
    assert set(data) <= set(DENSE_ARRAYS)
    # rows 0-3 are doc 0, row 4 doc 1 (too short), rows 5-7 doc 2; vector[0] = row + 1
    assert data["target_vectors"][:, 0].tolist() == [3, 4, 8]
    assert data["context_sequences"][:, :, 0].tolist() == [[1, 2], [2, 3], [6, 7]]
    assert data["doc_ids"].tolist() == [0, 0, 2]
    assert data["target_positions"].tolist() == [2, 3, 2]
    assert read_texts(data, CONCEPT_TEXTS).tolist() == ["d0p2", "d0p3", "d2p2"]
    assert data["concept_texts_offsets"].tolist() == [0, 4, 8, 12]


def test_compact_file_holds_each_vector_once_with_csr_offsets(tmp_path):
    chunks_path, vectors_path = make_chunks(tmp_path, [4, 1, 3])
    chunks = load_chunks(chunks_path)
    vectors = np.load(vectors_path, mmap_mode="r")
    write_sequences(chunks, vectors, 2, tmp_path / "seq.npz", compact=True)
    with np.load(tmp_path / "seq.npz", allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    assert sorted(data) == ["context_length", "doc_keys_offsets", "doc_keys_utf8", "doc_offsets",
                            "texts_offsets", "texts_utf8", "vectors"]
    assert set(data) <= set(COMPACT_ARRAYS)
    assert np.array_equal(data["vectors"], np.load(vectors_path))
    assert data["doc_offsets"].tolist() == [0, 4, 5, 8]
    assert read_texts(data, DOC_KEYS).tolist() == ["doc0", "doc1", "doc2"]
    assert read_texts(data, TEXTS)[:2] == ["d0p0", "d0p1"]
    assert data["texts_utf8"].dtype == np.uint8 and data["texts_offsets"][-1] == 8 * 4
    assert data["context_length"].shape == () and int(data["context_length"]) == 2


def test_no_texts_leaves_the_text_arrays_out(tmp_path):
    chunks_path, vectors_path = make_chunks(tmp_path, [4])
    write_sequences(load_chunks(chunks_path), np.load(vectors_path), 1, tmp_path / "d.npz",
                    texts=False)
    with np.load(tmp_path / "d.npz", allow_pickle=False) as npz:
        assert not [k for k in npz.files if "texts" in k]
        assert npz["target_vectors"].shape == (3, 3)


def test_non_ascii_texts_round_trip_through_utf8_bytes(tmp_path):
    chunks_path, vectors_path = make_chunks(tmp_path, [3])
    chunks = load_chunks(chunks_path).with_columns(
        text=pl.Series(["Ålesund — 北京", "", "naïve 😀"]))
    write_sequences(chunks, np.load(vectors_path), 1, tmp_path / "c.npz", compact=True)
    data = open_npz(tmp_path / "c.npz")
    texts = read_texts(data, TEXTS)
    assert texts.tolist() == ["Ålesund — 北京", "", "naïve 😀"]
    assert [texts[i] for i in range(3)] == texts.tolist() and texts[[2, 0]][0] == "naïve 😀"
    assert data["texts_offsets"].tolist() == [0, 19, 19, 30]  # bytes, not characters


def wikitext_vectors(tmp_path: Path, dim: int = 64):
    chunks, _ = read_chunks(REPO / "data" / "wikitext2" / "wikitext2_test.txt", unit="line")
    vectors = np.random.default_rng(0).standard_normal((chunks.height, dim)).astype(np.float32)
    return chunks, vectors


@pytest.mark.parametrize("compact", [True, False])
def test_a_wikitext_sequence_file_is_at_most_1_1x_its_vector_and_text_bytes(tmp_path, compact):
    # The bound of the contract: fixed-width unicode texts made these files ~90% text padding.
    chunks, vectors = wikitext_vectors(tmp_path)
    path = tmp_path / "s.npz"
    stats = write_sequences(chunks, vectors, 4, path, compact=compact)
    data = open_npz(path)
    if compact:
        raw = vectors.nbytes + int(chunks["text"].str.len_bytes().sum())
        assert data["texts_utf8"].size == int(chunks["text"].str.len_bytes().sum())
    else:
        targets = sequence_windows(np.r_[0, np.cumsum(np.bincount(chunks["doc_id"]))], 4)
        raw = (data["context_sequences"].nbytes + data["target_vectors"].nbytes
               + int(chunks["text"].gather(targets.target_rows).str.len_bytes().sum()))
        assert stats["samples"] == targets.target_rows.size
    size = path.stat().st_size
    assert size <= 1.1 * raw, (size, raw, size / raw)


def test_npz_members_are_memory_mapped_and_aligned(tmp_path):
    arrays = {"vectors": np.arange(40, dtype=np.float32).reshape(10, 4),
              "names": np.array(["a", "bcd"]), "scalar": np.int64(3),
              "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "empty": np.zeros((0, 4), dtype=np.float32)}
    write_npz(tmp_path / "x.npz", arrays)
    opened = open_npz(tmp_path / "x.npz")
    for name, value in arrays.items():
        assert np.array_equal(opened[name], value), name
    assert isinstance(opened["vectors"], np.memmap)
    assert opened["vectors"].ctypes.data % 64 == 0
    assert opened["scalar"].shape == ()
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]  # no temporary file left


def test_large_members_checksum_in_a_thread_and_stay_valid_zip(tmp_path, monkeypatch):
    import zipfile

    import uncollapse.data.npz as npzfile

    monkeypatch.setattr(npzfile, "_THREADED_CRC", 64)
    monkeypatch.setattr(npzfile, "_WRITE_BLOCK", 100)  # many blocks per member
    vectors = np.random.default_rng(0).standard_normal((300, 5)).astype(np.float32)
    write_npz(tmp_path / "x.npz", {"vectors": vectors, "offsets": np.arange(7)})
    with zipfile.ZipFile(tmp_path / "x.npz") as archive:
        assert archive.testzip() is None  # every CRC-32 matches
    with np.load(tmp_path / "x.npz", allow_pickle=False) as npz:
        assert np.array_equal(npz["vectors"], vectors)
        assert npz["offsets"].tolist() == list(range(7))


def test_every_member_is_aligned_and_equal_arrays_give_equal_files(tmp_path):
    arrays = {f"a{i}": np.arange(i * 7 + 1, dtype=np.float32) for i in range(5)}
    arrays["texts"] = np.array(["x", "yz"])
    write_npz(tmp_path / "one.npz", arrays)
    write_npz(tmp_path / "two.npz", arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    opened = open_npz(tmp_path / "one.npz")
    assert all(isinstance(opened[n], np.memmap) and opened[n].ctypes.data % 64 == 0
               for n in arrays)
    with np.load(tmp_path / "one.npz", allow_pickle=False) as npz:
        assert all(np.array_equal(npz[n], v) for n, v in arrays.items())


def test_object_arrays_are_refused_on_write_and_on_read(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        write_npz(tmp_path / "x.npz", {"texts": np.array(["a", None], dtype=object)})
    assert not (tmp_path / "x.npz").exists()
    np.savez(tmp_path / "pickled.npz", texts=np.array(["a", None], dtype=object))
    with pytest.raises(InputError, match="holds Python objects"):
        open_npz(tmp_path / "pickled.npz")


def test_compressed_npz_is_read_into_memory(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", vectors=np.ones((3, 2), dtype=np.float32))
    opened = open_npz(tmp_path / "c.npz")
    assert not isinstance(opened["vectors"], np.memmap)
    assert opened["vectors"].sum() == 6


def test_not_an_npz_is_an_input_error(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(InputError, match="not an NPZ archive"):
        open_npz(tmp_path / "x.npz")


def test_cli_builds_dense_and_compact_through_the_cache(tmp_path):
    chunks_path, vectors_path = make_chunks(tmp_path, [6, 2, 5])
    dense, compact = tmp_path / "dense.npz", tmp_path / "compact.npz"
    base = ["build", "sequences", str(chunks_path), "--vectors", str(vectors_path),
            "--context", "3"]
    result = CliRunner().invoke(main, base + ["-o", str(dense)])
    assert result.exit_code == 0, result.output
    assert "samples 5" in result.output and "short documents 1" in result.output
    result = CliRunner().invoke(main, base + ["--compact", "-o", str(compact)])
    assert result.exit_code == 0 and "form compact" in result.output
    again = CliRunner().invoke(main, base + ["-o", str(dense)])
    assert "cache hit: sequences" in again.output
    with np.load(dense, allow_pickle=False) as npz:
        assert npz["context_sequences"].shape == (5, 3, 3)
    with np.load(compact, allow_pickle=False) as npz:
        assert npz["doc_offsets"].tolist() == [0, 6, 8, 13]


def test_cli_vectors_not_aligned_with_chunks_exits_2(tmp_path):
    chunks_path, _ = make_chunks(tmp_path, [3, 3])
    np.save(tmp_path / "short.npy", np.ones((5, 4), dtype=np.float32))
    result = CliRunner().invoke(main, ["build", "sequences", str(chunks_path), "--vectors",
                                       str(tmp_path / "short.npy"), "--context", "1"])
    assert result.exit_code == 2
    assert "5 vectors for 6 chunk rows" in result.output


def test_cli_needs_exactly_one_vector_source(tmp_path):
    chunks_path, vectors_path = make_chunks(tmp_path, [3])
    neither = CliRunner().invoke(main, ["build", "sequences", str(chunks_path), "--context", "1"])
    assert neither.exit_code == 2 and "exactly one of --vectors" in neither.output


# encoders ------------------------------------------------------------------------------------
class FakeSentenceTransformer:
    """Stands in for sentence_transformers.SentenceTransformer: records how it is called."""

    calls: list = []

    def __init__(self, path, device=None, local_files_only=False):
        self.path, self.device = path, device
        FakeSentenceTransformer.calls.append(("load", path, device, local_files_only))

    def encode(self, texts, batch_size, convert_to_numpy, show_progress_bar):
        FakeSentenceTransformer.calls.append(("encode", len(texts)))
        return np.array([[len(t), ord(t[-1]), 1.0] for t in texts], dtype=np.float64)

    def get_sentence_embedding_dimension(self):
        return 3


@pytest.fixture
def fake_sentence_transformers(monkeypatch):
    module = types.ModuleType("sentence_transformers")
    module.SentenceTransformer = FakeSentenceTransformer
    FakeSentenceTransformer.calls = []
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    return FakeSentenceTransformer


def model_dir(tmp_path: Path) -> Path:
    path = tmp_path / "model"
    path.mkdir()
    (path / "modules.json").write_text("[]")
    return path


def test_encoder_runs_in_batches_offline_and_keeps_order(tmp_path, fake_sentence_transformers,
                                                         monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    vectors = encode_texts(texts, str(model_dir(tmp_path)), batch_size=2, quiet=True)
    assert vectors.dtype == np.float32
    assert vectors[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert [c for c in fake_sentence_transformers.calls if c[0] == "encode"] == [
        ("encode", 2), ("encode", 2), ("encode", 1)]
    load = fake_sentence_transformers.calls[0]
    assert load[1] == str((tmp_path / "model").resolve()) and load[3] is True
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_cli_encoder_path_builds_sequences(tmp_path, fake_sentence_transformers):
    chunks_path, _ = make_chunks(tmp_path, [4, 4])
    out = tmp_path / "seq.npz"
    result = CliRunner().invoke(main, ["build", "sequences", str(chunks_path), "--encoder",
                                       str(model_dir(tmp_path)), "--context", "2", "--quiet",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as npz:
        # texts are d{doc}p{pos}: the fake vector's second value is the last character
        assert npz["target_vectors"][:, 1].tolist() == [ord("2"), ord("3"), ord("2"), ord("3")]
        assert npz["context_sequences"].shape == (4, 2, 3)


def test_installed_model_package_is_found_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "fake_model_pkg"
    (package / "model" / "1_Pooling").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (package / "model" / "modules.json").write_text("[]")
    (package / "model" / "1_Pooling" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert resolve_encoder("fake-model-pkg") == (package / "model").resolve()


def test_unknown_encoder_says_nothing_is_downloaded():
    with pytest.raises(ToolError, match="Nothing is downloaded"):
        resolve_encoder("sentence-transformers/all-MiniLM-L6-v2")


def test_missing_encoder_extra_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ToolError, match=r"pip install -e '\.\[encoders\]' in a checkout"):
        encode_texts(["x"], str(model_dir(tmp_path)), quiet=True)


def test_a_member_whose_header_claims_more_data_than_it_holds_is_an_input_error(tmp_path):
    path = tmp_path / "x.npz"
    write_npz(path, {"vectors": np.ones((10, 4), dtype=np.float32),
                     "texts": np.array(["a" * 200] * 10)})
    data = path.read_bytes()
    assert data.count(b"(10, 4)") == 1
    path.write_bytes(data.replace(b"(10, 4)", b"(20, 4)"))  # the bytes that follow are texts
    with pytest.raises(InputError, match="'vectors' is truncated.*320 bytes.*holds 160"):
        open_npz(path)
    with pytest.raises(InputError, match="'vectors' cannot be read.*CRC"):  # read, not mapped
        open_npz(path, mmap=False)
