"""The key holds everything that decides how an input is read, a changed input is never
served stale, and only outputs that passed their checks are ever committed."""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cache.store import BuildOutput, Cache, Stage
from uncollapse.cli import main
from uncollapse.errors import ToolError

STAGE = Stage("unit", version=1, modules=("uncollapse.cache.store",))


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def content_builder(source: Path):
    def builder(out: Path) -> BuildOutput:
        (out / "copy.txt").write_bytes(source.read_bytes())
        return BuildOutput()
    return builder


def test_an_edit_in_place_with_size_and_mtime_restored_is_never_served_stale(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("old content\n")
    cache = Cache(tmp_path / "c")
    first = cache.build(STAGE, options={}, inputs={"src": source}, builder=content_builder(source))
    before = source.stat()
    with open(source, "r+b") as fh:  # same inode, same size, new bytes
        fh.write(b"new")
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    while source.stat().st_ctime_ns == before.st_ctime_ns:  # a clock tick must pass
        os.chmod(source, source.stat().st_mode)  # moves only the ctime
    after = source.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)
    second = cache.build(STAGE, options={}, inputs={"src": source},
                         builder=content_builder(source))
    assert not second.hit and second.key != first.key
    assert second.file("copy.txt").read_text() == "new content\n"


def test_a_damaged_digest_memo_is_started_afresh(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("content\n")
    root = tmp_path / "c"
    root.mkdir()
    (root / ".digests.sqlite").write_bytes(b"not a database at all" * 100)
    entry = Cache(root).build(STAGE, options={}, inputs={"src": source},
                              builder=content_builder(source))
    assert entry.file("copy.txt").read_text() == "content\n"
    assert Cache(root).digests.file(source) == entry.manifest["key_inputs"]["inputs"]["src"][
        "sha256"]


def chunks_of(root: Path, source: Path, tmp_path: Path):
    out = tmp_path / f"{source.name}.{root.name}.parquet"
    result = run("build", "chunks", source, "--cache-dir", root, "-o", out, "--quiet")
    return result, out


def test_the_format_a_suffix_implies_is_in_the_chunks_key(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps({"doc_id": d, "text": f"part {p} of {d}"}) + "\n"
                             for d in ("a", "b") for p in range(3)))
    txt = tmp_path / "d.txt"
    shutil.copyfile(jsonl, txt)
    alone, _ = chunks_of(tmp_path / "fresh", txt, tmp_path)
    first, _ = chunks_of(tmp_path / "shared", jsonl, tmp_path)
    assert first.exit_code == 0, first.output
    second, second_out = chunks_of(tmp_path / "shared", txt, tmp_path)
    assert alone.exit_code == 2 and "no line matches the document pattern" in alone.output
    assert "cache hit" not in second.stderr
    assert (second.exit_code, second.output) == (alone.exit_code, alone.output)
    assert not second_out.exists()
    kinds = [e.manifest["key_inputs"]["options"]["kind"]
             for e in Cache(tmp_path / "shared").entries()]
    assert kinds == ["jsonl"]


def test_attributes_csv_and_txt_of_the_same_bytes_are_two_entries_each_naming_its_source(
        tmp_path):
    csv = tmp_path / "at.csv"
    csv.write_text("image_id,Smiling,Male\na.jpg,1,0\nb.jpg,0,1\nc.jpg,1,1\n")
    txt = tmp_path / "at.txt"
    shutil.copyfile(csv, txt)
    root = tmp_path / "cache"
    alone = run("build", "attributes", txt, "--cache-dir", tmp_path / "fresh", "--format", "json")
    first = run("build", "attributes", csv, "--cache-dir", root, "--format", "json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["stats"]["source"] == str(csv)
    second = run("build", "attributes", txt, "--cache-dir", root, "--format", "json")
    assert alone.exit_code == 2 and "no valid attribute rows" in alone.output
    assert "cache hit" not in second.stderr
    assert second.exit_code == 2 and "at.txt: no valid attribute rows" in second.output
    assert str(csv) not in second.output
    copy = tmp_path / "copy.csv"  # same bytes, same reader, another name
    shutil.copyfile(csv, copy)
    third = run("build", "attributes", copy, "--cache-dir", root, "--format", "json")
    assert third.exit_code == 0
    report = json.loads(third.stdout)
    assert report["target"] == str(copy) and report["stats"]["source"] == str(copy)


def test_a_builder_that_raises_or_fails_its_check_commits_nothing(tmp_path):
    cache = Cache(tmp_path / "c")

    def builder(out: Path) -> BuildOutput:
        (out / "t.txt").write_text("x")
        return BuildOutput()

    def refuse(out: Path, output: BuildOutput) -> None:
        raise ToolError("the output is not fit to keep")

    with pytest.raises(ToolError, match="not fit to keep"):
        cache.build(STAGE, options={}, inputs={}, builder=builder, check=refuse)
    assert cache.entries() == [] and not list(cache.root.rglob(".tmp-*"))
    assert not cache.build(STAGE, options={}, inputs={}, builder=builder).hit


def write_nothing(out: Path) -> BuildOutput:
    return BuildOutput()


def rows_that_lie(out: Path) -> BuildOutput:
    pl.DataFrame({"a": [1, 2, 3]}).write_parquet(out / "t.parquet")
    return BuildOutput(rows={"t.parquet": 5})


def npy_that_lies(out: Path) -> BuildOutput:
    np.save(out / "v.npy", np.zeros((0, 4), dtype=np.float32))
    return BuildOutput(rows={"v.npy": 10})


def a_link(out: Path) -> BuildOutput:
    (out / "t.txt").symlink_to("/etc/hostname")
    return BuildOutput()


def a_manifest(out: Path) -> BuildOutput:
    (out / "manifest.json").write_text("{}")
    return BuildOutput()


@pytest.mark.parametrize(("builder", "message"), [
    (write_nothing, "wrote no file"), (rows_that_lie, "holds 3 rows but the build reports 5"),
    (a_manifest, "the name the cache keeps for its own record"),
    (npy_that_lies, "holds 0 rows but the build reports 10"),
    (a_link, "not a regular file")])
def test_outputs_that_fail_the_common_checks_are_never_committed(tmp_path, builder, message):
    cache = Cache(tmp_path / "c")
    with pytest.raises(ToolError, match=message):
        cache.build(STAGE, options={}, inputs={}, builder=builder)
    assert cache.entries() == [] and not list(cache.root.rglob(".tmp-*"))


class EmptyEncoder:
    """A sentence-transformers stand-in; with ``broken`` it returns no vectors at all."""

    broken = False

    def __init__(self, path, device=None, local_files_only=False):
        pass

    def encode(self, texts, batch_size, convert_to_numpy, show_progress_bar):
        rows = 0 if EmptyEncoder.broken else len(texts)
        return np.ones((rows, 3), dtype=np.float32)

    def get_sentence_embedding_dimension(self):
        return 3


def test_an_empty_chunk_vectors_output_is_never_committed(tmp_path, monkeypatch):
    module = types.ModuleType("sentence_transformers")
    module.SentenceTransformer = EmptyEncoder
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    model = tmp_path / "model"
    model.mkdir()
    (model / "modules.json").write_text("[]")
    chunks = tmp_path / "chunks.parquet"
    pl.DataFrame({"doc_id": [0, 0, 0, 1, 1, 1], "doc_key": ["a"] * 3 + ["b"] * 3,
                  "position": pl.Series([0, 1, 2, 0, 1, 2], dtype=pl.Int32),
                  "text": [f"t{i}" for i in range(6)]}).write_parquet(chunks)
    root = tmp_path / "cache"
    args = ["build", "sequences", chunks, "--encoder", model, "--context", "2", "--quiet",
            "--cache-dir", root, "-o", tmp_path / "seq.npz"]
    monkeypatch.setattr(EmptyEncoder, "broken", True)
    poisoned = run(*args)
    assert poisoned.exit_code == 2
    assert "gave vectors of shape (0, 3) for 6 chunk rows" in poisoned.output
    assert "nothing was cached" in poisoned.output
    assert Cache(root).entries("chunk-vectors") == []
    monkeypatch.setattr(EmptyEncoder, "broken", False)
    healthy = run(*args)
    assert healthy.exit_code == 0, healthy.output
    with np.load(tmp_path / "seq.npz", allow_pickle=False) as npz:
        assert npz["context_sequences"].shape == (2, 2, 3)
