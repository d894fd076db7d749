"""Every reader meets hostile files through its command: empty, truncated, another format
under the suffix, a directory, deeply nested JSON, NaN/Infinity, 128-bit integers, object
arrays. Each run must exit 1 (invalid data, with findings) or 2 (could not run) with a message
that names the file and reads as an explanation, never a raw exception: no exception class
names, no errno, no traceback hint. Exit 0 on any of them would be a lie.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.data.captions.table import CAPTION_SCHEMA

CAPTION_HEADER = "image_id,match_id,caption_idx,caption,split,source_row,image_path\n"


def _parquet_bytes(tmp_path) -> bytes:
    path = tmp_path / "seed.parquet"
    pl.DataFrame({"image_id": [str(i // 5) for i in range(20)],
                  "match_id": [i // 5 for i in range(20)]}).write_parquet(path)
    return path.read_bytes()


def _npy_bytes(tmp_path, array) -> bytes:
    path = tmp_path / "seed.npy"
    np.save(path, array, allow_pickle=True)
    return path.read_bytes()


def _npz_bytes(tmp_path, **arrays) -> bytes:
    path = tmp_path / "seed.npz"
    np.savez(path, **arrays)
    return path.read_bytes()


def _write(tmp_path, kind: str, suffix: str):
    """The hostile file ``kind`` with ``suffix``; None when the kind does not apply."""
    path = tmp_path / f"hostile.{suffix}"
    if kind == "directory":
        path.mkdir()
        return path
    parquet = _parquet_bytes(tmp_path)
    content = {
        "empty": b"",
        "garbage": b"\x00\xff garbage \x01\x02" * 20,
        "truncated-parquet": parquet[: len(parquet) // 2],
        "parquet-under-another-suffix": parquet if suffix != "parquet" else None,
        "latin1": "image_id,caption\n1,caf\xe9 \xff\n".encode("latin-1"),
        "deep-json": ("[" * 100_000 + "]" * 100_000).encode(),
        "deep-jsonl": ('{"doc_id": 1, "text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
        .encode(),
        "nan-jsonl": b'{"doc_id": NaN, "text": "a"}\n',
        "array-jsonl": b"[1, 2]\nnull\n",
        "json-scalar": b'"hello"',
        "json-null": b"null",
        "coco-missing-lists": b'{"images": 3}',
        "nan-csv": (CAPTION_HEADER + "1,NaN,0,a dog,train,0,\n2,inf,0,a cat,train,1,\n")
        .encode(),
        "huge-int-csv": (CAPTION_HEADER + "1,99999999999999999999999,0,a,train,0,\n"
                         "2,-99999999999999999999999,0,b,train,1,\n").encode(),
        "header-only-csv": b"image_id\n",
        "object-npy": _npy_bytes(tmp_path, np.array([{"a": 1}] * 3, dtype=object)),
        "string-npy": _npy_bytes(tmp_path, np.array(["a", "b"])),
        "scalar-npy": _npy_bytes(tmp_path, np.float32(1)),
        "truncated-npy": _npy_bytes(tmp_path, np.ones((50, 8), np.float32))[:100],
        "npz-under-npy": _npz_bytes(tmp_path, a=np.zeros(3)),
        "npy-under-npz": _npy_bytes(tmp_path, np.zeros(3)),
        "npz-without-keys": _npz_bytes(tmp_path, x=np.zeros(3)),
        "truncated-npz": _npz_bytes(tmp_path, vectors=np.zeros((50, 4), np.float32),
                                    doc_offsets=np.array([0, 50]),
                                    context_length=np.int64(2))[:300],
    }[kind]
    if content is None:
        return None
    path.write_bytes(content)
    return path


COMMANDS = {
    "build captions": (["build", "captions", "{path}"], ["json", "txt", "csv", "parquet"]),
    "build chunks": (["build", "chunks", "{path}"], ["txt", "jsonl", "parquet"]),
    "build sequences (vectors)": (
        ["build", "sequences", "{chunks}", "--vectors", "{path}", "--context", "2"], ["npy"]),
    "build sequences (chunks)": (
        ["build", "sequences", "{path}", "--vectors", "{vectors}", "--context", "2"],
        ["parquet"]),
    "build attributes": (["build", "attributes", "{path}"], ["txt", "csv", "parquet"]),
    "validate captions": (["validate", "captions", "{path}"], ["parquet", "csv"]),
    "validate batches": (["validate", "batches", "{path}", "--sampler", "random", "-b", "4"],
                         ["parquet", "csv", "npz"]),
    "validate sequences": (["validate", "sequences", "{path}"], ["npz"]),
    "validate attributes": (["validate", "attributes", "{path}"], ["parquet", "csv"]),
    "validate flips": (["validate", "flips", "--table", "{path}"], ["parquet", "csv"]),
    "validate scenes": (["validate", "scenes", "{path}"], ["npz"]),
    "diagnose match-ids": (["diagnose", "match-ids", "{path}", "-b", "4"], ["parquet", "csv"]),
    "diagnose embeddings": (["diagnose", "embeddings", "{path}"], ["npy"]),
    "train contrastive": (["train", "contrastive", "--captions", "{captions}",
                           "--text-features", "{path}", "--steps", "1", "--device", "cpu",
                           "--out", "{out}"], ["npy"]),
    "train lvm": (["train", "lvm", "--sequences", "{path}", "--steps", "1", "--device", "cpu",
                   "--out", "{out}"], ["npz"]),
    "train slots": (["train", "slots", "--scenes", "{path}", "--steps", "1", "--device", "cpu",
                     "--out", "{out}"], ["npz"]),
}
KINDS_BY_SUFFIX = {
    "json": ["empty", "garbage", "deep-json", "json-scalar", "json-null", "coco-missing-lists",
             "parquet-under-another-suffix", "directory"],
    "txt": ["empty", "garbage", "latin1", "parquet-under-another-suffix", "directory"],
    "jsonl": ["empty", "garbage", "deep-jsonl", "nan-jsonl", "array-jsonl",
              "parquet-under-another-suffix", "directory"],
    "csv": ["empty", "garbage", "latin1", "nan-csv", "huge-int-csv", "header-only-csv",
            "parquet-under-another-suffix", "directory"],
    "parquet": ["empty", "garbage", "truncated-parquet", "directory"],
    "npy": ["empty", "garbage", "object-npy", "string-npy", "scalar-npy", "truncated-npy",
            "npz-under-npy", "parquet-under-another-suffix", "directory"],
    "npz": ["empty", "garbage", "npy-under-npz", "npz-without-keys", "truncated-npz",
            "parquet-under-another-suffix", "directory"],
}
CASES = [(name, suffix, kind) for name, (_, suffixes) in COMMANDS.items()
         for suffix in suffixes for kind in KINDS_BY_SUFFIX[suffix]]


@pytest.fixture(scope="module")
def sequence_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    chunks = root / "chunks.parquet"
    pl.DataFrame({"doc_id": [0, 0, 0], "doc_key": ["a", "a", "a"], "position": [0, 1, 2],
                  "text": ["x", "y", "z"]}).write_parquet(chunks)
    vectors = root / "vectors.npy"
    np.save(vectors, np.ones((3, 4), np.float32))
    captions = root / "captions.parquet"
    pl.DataFrame({"image_id": [str(i // 2) for i in range(6)],
                  "match_id": [i // 2 for i in range(6)],
                  "caption_idx": [i % 2 for i in range(6)],
                  "caption": [f"caption {i}" for i in range(6)], "split": ["train"] * 6,
                  "source_row": list(range(6)), "image_path": [None] * 6},
                 schema=CAPTION_SCHEMA).write_parquet(captions)
    return chunks, vectors, captions


def test_the_table_covers_every_reader_family():
    assert len(CASES) >= 120
    assert {c[0].split()[0] for c in CASES} == {"build", "validate", "diagnose", "train"}


@pytest.mark.parametrize("name, suffix, kind", CASES,
                         ids=[f"{n}-{k}.{s}" for n, s, k in CASES])
def test_a_hostile_input_exits_1_or_2_with_a_message_naming_it(raw_error, tmp_path, sequence_inputs,
                                                              name, suffix, kind):
    path = _write(tmp_path, kind, suffix)
    if path is None:
        pytest.fail(f"{kind} does not apply to .{suffix}: fix the table")
    template, _ = COMMANDS[name]
    chunks, vectors, captions = sequence_inputs
    args = [a.format(path=path, chunks=chunks, vectors=vectors, captions=captions,
                     out=tmp_path / "run") for a in template]
    if args[0] == "build":
        args += ["--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    assert result.exit_code in (1, 2), result.output
    if result.exit_code == 2:
        error = result.stderr
        assert path.name in error, error
        assert not raw_error.search(error), error
