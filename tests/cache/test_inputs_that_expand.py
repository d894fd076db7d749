"""Inputs that expand when read are measured before they are read, against a limit the user
can raise (``UNCOLLAPSE_MAX_DECOMPRESSED``).

polars reads gzip/zlib/zstd CSV and JSON lines silently, and numpy inflates deflated NPZ
members whole: a 6.8 MB gzip of 2 GB took ``validate captions`` to 5 GB of memory, a 2 MB
deflated scene file to 2.1 GB. Each case here is a small file on disk that expands past a low
limit set by the test; it must be refused with exit 2 naming the limit and how to raise it,
before it is inflated. Compressed inputs within the limit still work, and the checks that run
before polars reads a file (a repeated header column, JSON nested too deep) see through the
compression.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.data.expansion import DEFAULT_LIMIT, ENV, limit
from uncollapse.errors import ToolError

REPO = Path(__file__).resolve().parents[2]
LOW = {ENV: "1M"}


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def caption_csv(rows: int) -> bytes:
    head = b"image_id,match_id,caption_idx,caption,split,source_row\n"
    return head + b"img0,0,0,a caption that repeats itself,train,0\n" * rows


@pytest.fixture
def captions_bomb(tmp_path) -> Path:
    """7 MB of caption rows as a gzip of a few KB."""
    path = tmp_path / "captions.csv"
    data = caption_csv(150_000)
    assert len(data) > 4 << 20
    path.write_bytes(gzip.compress(data, 9))
    assert path.stat().st_size < 64 << 10
    return path


def assert_refused_naming_the_limit(result, path: Path):
    assert result.exit_code == 2, result.output
    assert f"{path}" in result.output
    assert f"more than the limit on decompressed input (1M, {ENV})" in result.output
    assert f"{ENV}=16G" in result.output
    assert "Traceback" not in result.output


def test_a_gzip_caption_csv_past_the_limit_is_refused(captions_bomb):
    assert_refused_naming_the_limit(run("validate", "captions", captions_bomb, env=LOW),
                                    captions_bomb)


def test_the_same_gzip_csv_within_a_raised_limit_is_read(captions_bomb):
    result = run("validate", "captions", captions_bomb, "--format", "json", env={ENV: "64M"})
    assert result.exit_code in (0, 1), result.output
    assert '"rows": 150000' in result.output


@pytest.mark.parametrize("compress", [
    lambda data: zlib.compress(data, 9),
    lambda data: pa.compress(data, "zstd", asbytes=True),
], ids=["zlib", "zstd"])
def test_zlib_and_zstd_csv_are_measured_too(tmp_path, compress):
    path = tmp_path / "captions.dat"
    path.write_bytes(compress(caption_csv(150_000)))
    assert_refused_naming_the_limit(run("validate", "captions", path, env=LOW), path)
    ok = run("validate", "captions", path, "--format", "json", env={ENV: "64M"})
    assert '"rows": 150000' in ok.output


def test_standard_input_is_measured_as_well(captions_bomb):
    result = CliRunner().invoke(main, ["validate", "captions", "-"], env=LOW,
                                input=captions_bomb.read_bytes())
    assert result.exit_code == 2, result.output
    assert f"more than the limit on decompressed input (1M, {ENV})" in result.output


def test_a_gzip_attribute_csv_past_the_limit_is_refused(tmp_path):
    path = tmp_path / "attributes.csv"
    path.write_bytes(gzip.compress(b"image_id,Smiling\n" + b"x.jpg,1\n" * 300_000, 9))
    result = run("build", "attributes", path, "--cache-dir", tmp_path / "cache", env=LOW)
    assert_refused_naming_the_limit(result, path)


def test_a_gzip_jsonl_chunk_source_past_the_limit_is_refused(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(gzip.compress(b'{"doc_id": "a", "text": "words words"}\n' * 60_000, 9))
    result = run("build", "chunks", path, "--cache-dir", tmp_path / "cache", env=LOW)
    assert_refused_naming_the_limit(result, path)


def test_a_repeated_header_column_is_found_through_gzip(tmp_path):
    path = tmp_path / "attributes.csv"
    path.write_bytes(gzip.compress(b"image_id,Smiling,Smiling\nx.jpg,1,-1\n"))
    result = run("build", "attributes", path, "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 2, result.output
    assert "column 'Smiling' appears twice in the header" in result.output


def test_a_gzip_jsonl_nested_too_deep_is_refused_before_polars_reads_it(tmp_path):
    """polars' JSON reader crashes or stalls on an object 1,000 deep; the guard that refuses
    it read the compressed bytes and let a gzip of it through."""
    line = '{"doc_id": "a", "text": "x", "n": ' + '{"a": ' * 1000 + "1" + "}" * 1000 + "}\n"
    path = tmp_path / "deep.jsonl"
    path.write_bytes(gzip.compress(line.encode()))
    result = subprocess.run([sys.executable, "-m", "uncollapse", "build", "chunks", str(path),
                             "--cache-dir", str(tmp_path / "cache")], capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert f"{path}, line 1: JSON nested more than 64 levels deep" in result.stderr


def deflated_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez_compressed(path, **arrays)
    return path


def test_a_deflated_scene_npz_past_the_limit_is_refused_before_inflating(tmp_path):
    path = deflated_npz(tmp_path / "scenes.npz", {
        "images": np.zeros((32, 128, 128, 3), dtype=np.uint8),
        "masks": np.zeros((32, 128, 128), dtype=np.uint8),
        "num_objects": np.zeros(32, dtype=np.int8)})
    assert path.stat().st_size < 64 << 10
    result = run("validate", "scenes", path, env=LOW)
    assert_refused_naming_the_limit(result, path)
    assert "is compressed (its largest array, 'images', 1,572,992 bytes)" in result.output


def test_a_deflated_sequence_npz_past_the_limit_is_refused(tmp_path):
    path = deflated_npz(tmp_path / "seq.npz", {
        "context_sequences": np.zeros((4096, 4, 64), dtype=np.float32),
        "target_vectors": np.zeros((4096, 64), dtype=np.float32),
        "doc_ids": np.zeros(4096, dtype=np.int64),
        "target_positions": np.zeros(4096, dtype=np.int32)})
    assert_refused_naming_the_limit(run("validate", "sequences", path, env=LOW), path)
    assert_refused_naming_the_limit(run("validate", "batches", path, "--sampler", "random",
                                        "-b", "8", env=LOW), path)


def test_an_npz_member_whose_header_declares_more_than_the_zip_holds_is_refused(tmp_path):
    """numpy sizes its array by the member's .npy header: a header declaring 10**10 values in
    a member of a few bytes is refused before np.load allocates for it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (10**10, 4, 4, 3)})
    path = tmp_path / "scenes.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images.npy", header.getvalue() + bytes(64))
        for name in ("masks", "num_objects"):
            member = io.BytesIO()
            np.save(member, np.zeros(1, dtype=np.uint8))
            archive.writestr(f"{name}.npy", member.getvalue())
    result = run("validate", "scenes", path)
    assert result.exit_code == 2, result.output
    assert "array 'images' is truncated or damaged: its header says" in result.output


def test_an_npy_whose_header_declares_more_than_the_file_holds_is_refused(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**9, 384)})
    vectors = tmp_path / "vectors.npy"
    vectors.write_bytes(header.getvalue() + bytes(4 * 384))
    chunks = tmp_path / "chunks.parquet"
    pl.DataFrame({"doc_id": [0], "doc_key": ["a"], "position": [0], "text": ["t"]},
                 schema={"doc_id": pl.Int64, "doc_key": pl.String, "position": pl.Int32,
                         "text": pl.String}).write_parquet(chunks)
    result = run("build", "sequences", chunks, "--vectors", vectors, "--context", "1",
                 "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 2, result.output
    assert "its header declares a vectors of shape (1000000000, 384) float32" in result.output


def test_uncompressed_inputs_are_not_limited(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_bytes(caption_csv(150_000))
    result = run("validate", "captions", path, "--format", "json", env=LOW)
    assert '"rows": 150000' in result.output


@pytest.mark.parametrize(("value", "expected"), [
    ("", DEFAULT_LIMIT), ("1048576", 1 << 20), ("512K", 512 << 10), ("8g", 8 << 30),
    ("3GiB", 3 << 30), ("1T", 1 << 40)])
def test_the_limit_reads_bytes_with_a_unit(monkeypatch, value, expected):
    monkeypatch.setenv(ENV, value)
    assert limit() == expected


@pytest.mark.parametrize("value", ["abc", "-1", "0", "1.5G", "8X"])
def test_a_limit_that_is_not_a_size_is_a_clear_error(monkeypatch, value, captions_bomb):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(ToolError, match=f"{ENV}=.* is not a size"):
        limit()
    result = run("validate", "captions", captions_bomb, env={ENV: value})
    assert result.exit_code == 2 and "is not a size" in result.output
