"""What the fuzz harness still found (issue 13, run 4), each replayed through its command.

Every case is a damaged or hostile input made here from a small valid one: a Parquet whose
footer makes polars panic, a ``--json`` FIFO nobody reads, non-UTF-8 bytes in JSON and in
Parquet columns, counts of 2**63, an attribute named twice, a damaged ``.npy`` header, a
damaged zip header in an NPZ, and a 0-d array in a sequence file. Each must exit 2 (could not
run) or 1 (read fine but invalid) with a message naming the file or option, never a raw
exception, and leave no output behind.
"""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.exceptions import PanicException

from uncollapse.data.npz import open_npz
from uncollapse.data.polars_read import read_parquet
from uncollapse.errors import InputError

HUGE = str(2**63)


def message(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def assert_named(raw_error):
    """``assert_named(result, code, *names)``: ``result`` exited ``code`` with a message naming
    each of ``names`` and nothing raw; returns the message."""

    def check(result, code: int, *names: str) -> str:
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            repr(result.exception))
        text = message(result)
        assert result.exit_code == code, text
        for name in names:
            assert name in text, (name, text)
        assert not raw_error.search(text), text
        return text

    return check


# inputs -------------------------------------------------------------------------------------
COCO = {"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in range(1, 5)],
        "annotations": [{"id": 10 * i + k, "image_id": i, "caption": f"a photo {i} number {k}"}
                        for i in range(1, 5) for k in range(2)]}
DOCS = [{"doc_id": f"doc{d}", "text": f"Document {d} part {t}.\n\nAnd more {t}."}
        for d in range(4) for t in range(3)]


@pytest.fixture(scope="module")
def inputs(run, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    cache = root / "cache"
    files = {"root": root, "cache": cache}
    coco = files["coco"] = root / "captions_val2017.json"
    coco.write_text(json.dumps(COCO))
    flickr = files["flickr"] = root / "flickr30k.parquet"
    pl.DataFrame({"caption": [["a dog", "a brown dog"], ["a cat", "a grey cat"]],
                  "filename": ["1.jpg", "2.jpg"], "split": ["train", "test"]}).write_parquet(
        flickr)
    captions = files["captions"] = root / "captions.parquet"
    assert run("build", "captions", coco, "-o", captions, "--cache-dir", cache,
               "--quiet").exit_code == 0
    attrs_csv = files["attrs_csv"] = root / "attrs.csv"
    attrs_csv.write_text("image_id,Smiling,Male\n" + "".join(
        f"{i:06d}.jpg,{i % 2},{i // 2 % 2}\n" for i in range(1, 13)))
    attrs = files["attrs"] = root / "attrs.parquet"
    assert run("build", "attributes", attrs_csv, "-o", attrs, "--cache-dir", cache,
               "--quiet").exit_code == 0
    docs = files["docs"] = root / "docs.parquet"
    pl.DataFrame(DOCS).write_parquet(docs)
    chunks = files["chunks"] = root / "chunks.parquet"
    assert run("build", "chunks", docs, "-o", chunks, "--cache-dir", cache,
               "--quiet").exit_code == 0
    rows = pl.read_parquet(chunks).height
    vectors = files["vectors"] = root / "vectors.npy"
    np.save(vectors, np.random.default_rng(0).normal(size=(rows, 8)).astype(np.float32))
    for name, extra in (("dense", []), ("compact", ["--compact"])):
        files[name] = root / f"{name}.npz"
        assert run("build", "sequences", chunks, "--vectors", vectors, "--context", 2, *extra,
                   "-o", files[name], "--cache-dir", cache, "--quiet").exit_code == 0
    scenes = files["scenes"] = root / "scenes.npz"
    assert run("build", "scenes", "--num", 4, "--size", 16, "-o", scenes, "--cache-dir", cache,
               "--quiet").exit_code == 0
    features = files["features"] = root / "features.npy"
    np.save(features, np.ones((pl.read_parquet(captions).height, 4), np.float32))
    embeddings = files["embeddings"] = root / "embeddings.npy"
    np.save(embeddings, np.ones((12, 4), np.float32))
    return files


# 1. a Parquet footer that panics polars -----------------------------------------------------
def _footer_flips(data: bytes, bits=range(8)):
    """Every flip of one of ``bits`` in each byte of the footer (the Thrift metadata before
    the last 8 bytes)."""
    length = int.from_bytes(data[-8:-4], "little")
    for position in range(len(data) - 8 - length, len(data) - 8):
        for bit in bits:
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            yield bytes(flipped)


def _panics(data: bytes) -> bool:
    """Whether reading the metadata alone panics (as the fuzz input did), so that every reader
    meets the panic whichever columns it reads."""
    try:
        pl.read_parquet_schema(io.BytesIO(data))
    except PanicException:
        return True
    except Exception:
        return False
    return False


def panicking_copy(source: Path, dest: Path) -> Path:
    """``source`` with the first footer bit flip that makes polars panic (asserted to exist,
    so the cases below really replay a panic)."""
    flipped = next((d for d in _footer_flips(source.read_bytes()) if _panics(d)), None)
    assert flipped is not None, f"no footer bit flip of {source} panics polars any more"
    dest.write_bytes(flipped)
    return dest


PANIC_COMMANDS = {
    "validate attributes": ("attrs", ["validate", "attributes", "{path}"]),
    "validate flips": ("attrs", ["validate", "flips", "--table", "{path}"]),
    "build attributes": ("attrs", ["build", "attributes", "{path}", "--cache-dir", "{cache}"]),
    "validate captions": ("captions", ["validate", "captions", "{path}"]),
    "diagnose match-ids": ("captions", ["diagnose", "match-ids", "{path}", "-b", "8"]),
    "validate batches": ("captions", ["validate", "batches", "{path}", "--sampler", "random",
                                      "-b", "4"]),
    "build captions": ("flickr", ["build", "captions", "{path}", "--cache-dir", "{cache}"]),
    "build chunks": ("docs", ["build", "chunks", "{path}", "--cache-dir", "{cache}"]),
    "build sequences": ("chunks", ["build", "sequences", "{path}", "--vectors", "{vectors}",
                                   "--context", "2", "--cache-dir", "{cache}"]),
}


@pytest.mark.parametrize("name", list(PANIC_COMMANDS))
def test_a_footer_that_panics_polars_is_exit_2_naming_the_file(assert_named, run, tmp_path,
                                                               inputs, name):
    seed, template = PANIC_COMMANDS[name]
    path = panicking_copy(inputs[seed], tmp_path / f"damaged-{seed}.parquet")
    args = [a.format(path=path, cache=tmp_path / "cache", vectors=inputs["vectors"])
            for a in template]
    result = run(*args, "-o" if args[0] == "build" else "--json", tmp_path / "out")
    assert_named(result, 2, str(path))
    assert not (tmp_path / "out").exists() or args[0] != "build"


def test_footer_bit_flips_read_or_are_an_input_error(tmp_path):
    table = tmp_path / "t.parquet"
    pl.DataFrame({"image_id": ["a", "b", "c"], "Smiling": [1, 0, 1]}).write_parquet(table)
    outcomes = {"read": 0, "refused": 0, "panic": 0}
    damaged = tmp_path / "damaged.parquet"
    for data in _footer_flips(table.read_bytes(), bits=(0, 5)):
        damaged.write_bytes(data)
        outcomes["panic"] += _panics(data)
        try:
            read_parquet(damaged)
        except InputError as exc:
            assert str(exc).startswith(f"{damaged}: not a readable Parquet file"), exc
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    footer = int.from_bytes(table.read_bytes()[-8:-4], "little")
    assert outcomes["panic"] > 0 and outcomes["refused"] >= outcomes["panic"], outcomes
    assert outcomes["read"] + outcomes["refused"] == 2 * footer


def test_a_panic_the_readers_miss_is_still_exit_2_not_a_traceback(run, tmp_path, monkeypatch):
    import uncollapse.validators.attributes.rules as attributes

    def panic(*_, **__):
        raise PanicException("called `Option::unwrap()` on a `None` value")

    monkeypatch.setattr(attributes, "read_attribute_table", panic)
    result = run("validate", "attributes", tmp_path / "missing.parquet")
    assert result.exit_code == 2, result.output
    assert "PanicException" in result.output  # the last-resort handler names what it caught


# 2. a --json FIFO nobody reads ---------------------------------------------------------------
FIFO_COMMANDS = {
    "build captions (coco)": ["build", "captions", "{coco}"],
    "build captions (flickr30k)": ["build", "captions", "{flickr}"],
    "build chunks": ["build", "chunks", "{docs}"],
    "build sequences": ["build", "sequences", "{chunks}", "--vectors", "{vectors}",
                        "--context", "2"],
    "build attributes": ["build", "attributes", "{attrs_csv}"],
    "build scenes": ["build", "scenes", "--num", "4", "--size", "16"],
}


@pytest.mark.parametrize("name", list(FIFO_COMMANDS))
def test_a_json_fifo_without_reader_stops_the_run_before_o_is_written(assert_named, run,
                                                                      tmp_path, inputs, name):
    fifo = tmp_path / "special.out"
    os.mkfifo(fifo)
    out = tmp_path / "result.out"
    args = [a.format(**inputs) for a in FIFO_COMMANDS[name]]
    result = run(*args, "-o", out, "--json", fifo, "--cache-dir", tmp_path / "cache", "--quiet")
    assert_named(result, 2, f"{fifo}: is a FIFO that no process is reading")
    assert not out.exists()
    assert not (tmp_path / "cache").exists()  # stopped before any work


def test_an_o_fifo_without_reader_is_refused_before_the_json_report(assert_named, run, tmp_path,
                                                                    inputs):
    fifo, report = tmp_path / "out.fifo", tmp_path / "report.json"
    os.mkfifo(fifo)
    result = run("build", "chunks", inputs["docs"], "-o", fifo, "--json", report,
                 "--cache-dir", tmp_path / "cache")
    assert_named(result, 2, f"{fifo}: is a FIFO that no process is reading")
    assert not (tmp_path / "cache").exists()
    assert json.loads(report.read_text())["ok"] is False  # the could-not-run answer


def test_a_fifo_reader_that_opens_just_after_the_start_gets_the_report(run, tmp_path, inputs):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Timer(0.1, lambda: received.append(fifo.read_bytes()))
    reader.daemon = True
    reader.start()
    result = run("build", "chunks", inputs["docs"], "-o", tmp_path / "chunks.parquet",
                 "--json", fifo, "--cache-dir", tmp_path / "cache", "--quiet")
    reader.join(timeout=30)
    if reader.is_alive():  # never written: let the reader see end-of-file instead of hanging
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert result.exit_code == 0, result.output
    assert json.loads(received[0])["kind"] == "build chunks"
    assert (tmp_path / "chunks.parquet").exists()


# 3. raw exceptions --------------------------------------------------------------------------
def _non_utf8_coco(inputs, tmp):
    path = tmp / "captions_val2017.json"
    data = bytearray(inputs["coco"].read_bytes())
    data[data.index(b"a photo 2")] = 0xB1
    path.write_bytes(bytes(data))
    return ["build", "captions", path], 2, [f"{path}, line 1: not UTF-8 text", "re-encode"]


def _flickr_column_as(column: str, expected: str):
    def make(inputs, tmp):
        path = tmp / "flickr30k.parquet"
        frame = pl.read_parquet(inputs["flickr"])
        if column == "caption":
            frame = frame.with_columns(caption=pl.Series([b"\xffa dog", b"a cat"]))
        else:
            frame = frame.with_columns(pl.col(column).cast(pl.Binary))
        frame.write_parquet(path)
        return (["build", "captions", path], 2,
                [f"{path}: column {column!r} is Binary, expected {expected}"])
    return make


def _binary_doc_ids(inputs, tmp):
    path = tmp / "docs.parquet"
    pl.DataFrame({"doc_id": [b"a", b"\xff\xfe", b"c"], "text": ["x", "y", "z"]}).write_parquet(
        path)
    return (["build", "chunks", path], 2,
            [f"{path}: row 1: field 'doc_id' holds bytes that are not UTF-8 text"])


def _huge_context(inputs, tmp):
    return (["build", "sequences", inputs["chunks"], "--vectors", inputs["vectors"],
             "--context", HUGE], 2, [f"--context must be at most {2**31 - 1}", HUGE])


def _huge_slots(inputs, tmp):
    return (["train", "slots", "--scenes", inputs["scenes"], "--slots", HUGE, "--steps", "1",
             "--device", "cpu", "--out", tmp / "run"], 2, [f"--slots must be at most {2**31 - 1}"])


def _repeated(command: list[str]):
    def make(inputs, tmp):
        args = [a.format(**inputs) for a in command]
        return args, 2, ["--attributes: names 'Smiling' more than once"]
    return make


def _damaged_npy_header(seed: str, command: list[str]):
    def make(inputs, tmp):
        path = tmp / f"damaged-{seed}.npy"
        data = bytearray(inputs[seed].read_bytes())
        data[data.index(b"}")] = ord("x")  # the header dict never closes: a tokenizer error
        path.write_bytes(bytes(data))
        args = [a.format(path=path, out=tmp / "run", **inputs) for a in command]
        return args, 2, [f"{path}: is not a readable .npy", "header is damaged"]
    return make


def _central_directory_offset(data: bytes) -> int:
    """Where the first central-directory record's zip64 local-header offset lies."""
    record = data.index(b"PK\x01\x02")
    name_length, extra_length = struct.unpack("<HH", data[record + 28:record + 32])
    extra = record + 46 + name_length
    assert struct.unpack("<HH", data[extra:extra + 4]) == (1, 24)
    return extra + 4 + 16


def _damaged_zip_header(seed: str, command: list[str]):
    def make(inputs, tmp):
        path = tmp / f"damaged-{seed}.npz"
        data = bytearray(inputs[seed].read_bytes())
        data[_central_directory_offset(data) + 7] ^= 0xFF  # a member offset past any file
        path.write_bytes(bytes(data))
        args = [a.format(path=path, out=tmp / "run") for a in command]
        return args, 2, [f"{path}: array", "damaged NPZ/zip", "rebuild"]
    return make


def _zero_d(array: str, command: list[str], code: int, *extra: str):
    def make(inputs, tmp):
        seed = "dense" if array in ("context_sequences", "doc_ids", "concept_texts_offsets") \
            else "compact"
        with np.load(inputs[seed]) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays[array] = np.array(arrays[array].ravel()[0])
        path = tmp / f"zero-d-{array}.npz"
        np.savez(path, **arrays)
        args = [a.format(path=path, out=tmp / "run") for a in command]
        return args, code, [f"{array} has shape ()", *extra]
    return make


TRAIN_LVM = ["train", "lvm", "--sequences", "{path}", "--steps", "1", "--device", "cpu",
             "--out", "{out}"]
CASES = {
    "coco json with a non-UTF-8 byte": _non_utf8_coco,
    "flickr30k caption column binary": _flickr_column_as("caption", "text or a list of text"),
    "flickr30k filename column binary": _flickr_column_as("filename", "text"),
    "build chunks doc ids binary, not UTF-8": _binary_doc_ids,
    "build sequences --context 2**63": _huge_context,
    "train slots --slots 2**63": _huge_slots,
    "build attributes --attributes twice": _repeated(
        ["build", "attributes", "{attrs_csv}", "--attributes", "Smiling,Smiling",
         "--cache-dir", "{cache}"]),
    "validate attributes --attributes twice": _repeated(
        ["validate", "attributes", "{attrs}", "--attributes", "Smiling,Smiling"]),
    "validate flips --attributes twice": _repeated(
        ["validate", "flips", "--table", "{attrs}", "--attributes", "Smiling,Male,Smiling"]),
    "build sequences --vectors damaged header": _damaged_npy_header(
        "vectors", ["build", "sequences", "{chunks}", "--vectors", "{path}", "--context", "2",
                    "--cache-dir", "{cache}"]),
    "diagnose embeddings damaged header": _damaged_npy_header(
        "features", ["diagnose", "embeddings", "{path}"]),
    "train contrastive --text-features damaged header": _damaged_npy_header(
        "features", ["train", "contrastive", "--captions", "{captions}", "--text-features",
                     "{path}", "--steps", "1", "--device", "cpu", "--out", "{out}"]),
    "train flow --embeddings damaged header": _damaged_npy_header(
        "embeddings", ["train", "flow", "--attributes", "{attrs}", "--embeddings", "{path}",
                       "--steps", "1", "--device", "cpu", "--out", "{out}"]),
    "validate sequences dense, damaged zip header": _damaged_zip_header(
        "dense", ["validate", "sequences", "{path}"]),
    "validate sequences compact, damaged zip header": _damaged_zip_header(
        "compact", ["validate", "sequences", "{path}"]),
    "train lvm compact, damaged zip header": _damaged_zip_header("compact", TRAIN_LVM),
    "train lvm texts_offsets 0-d": _zero_d("texts_offsets", TRAIN_LVM, 1, "ARRAY_SHAPE"),
    "train lvm vectors 0-d --force": _zero_d("vectors", [*TRAIN_LVM, "--force"], 1,
                                             "ARRAY_SHAPE"),
    "train lvm doc_ids 0-d --force": _zero_d("doc_ids", [*TRAIN_LVM, "--force"], 1),
    "validate sequences doc_keys_offsets 0-d": _zero_d(
        "doc_keys_offsets", ["validate", "sequences", "{path}"], 1, "ARRAY_SHAPE"),
    "validate sequences concept_texts_offsets 0-d": _zero_d(
        "concept_texts_offsets", ["validate", "sequences", "{path}"], 1, "ARRAY_SHAPE"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_raw_exception_case_is_a_named_error(assert_named, run, tmp_path, inputs, name):
    args, code, names = CASES[name](inputs, tmp_path)
    args = [str(a).replace(str(inputs["cache"]), str(tmp_path / "cache")) for a in args]
    result = run(*args)
    assert_named(result, code, *names)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_every_one_byte_change_of_an_npz_directory_opens_or_is_an_input_error(tmp_path,
                                                                           inputs):
    data = inputs["compact"].read_bytes()
    start = data.index(b"PK\x01\x02")
    damaged, refused = tmp_path / "damaged.npz", 0
    for position in range(start, len(data)):
        for value in (data[position] ^ 0xFF, data[position] ^ 0x01):
            changed = bytearray(data)
            changed[position] = value
            damaged.write_bytes(bytes(changed))
            try:
                open_npz(damaged)
            except InputError as exc:
                assert str(exc).startswith(str(damaged)), exc
                refused += 1
    assert refused > 100


def test_the_damaged_zip_header_really_fails_raw_zipfile(inputs, tmp_path):
    data = bytearray(inputs["compact"].read_bytes())
    data[_central_directory_offset(data) + 7] ^= 0xFF
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(data))
    with pytest.raises((OSError, ValueError, OverflowError)), zipfile.ZipFile(path) as archive:
        archive.read(archive.infolist()[0])
