"""A cache hit serves only what its manifest promises: every hit re-checks the entry's files
(fingerprints, a full hash when they moved, links never followed); a bad entry is reported,
removed and rebuilt, and `cache verify` still reports it."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cache import integrity
from uncollapse.cache.store import BuildOutput, Cache, Stage
from uncollapse.cli import main

STAGE = Stage("unit", version=1, modules=("uncollapse.cache.store",))


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def tokens(path: Path, images: int) -> Path:
    """A Flickr8k token file of ``images`` images with 5 captions each."""
    path.write_text("".join(f"{i:07d}.jpg#{n}\tcaption {n} of image {i} .\n"
                            for i in range(images) for n in range(5)))
    return path


@pytest.fixture
def built(tmp_path):
    """A 5,005-row caption table built into a fresh cache: (cache root, source, entry file,
    the bytes a correct build gives)."""
    root, source = tmp_path / "cache", tokens(tmp_path / "big.token.txt", 1001)
    first = run("build", "captions", source, "--cache-dir", root, "-o", tmp_path / "first.parquet")
    assert first.exit_code == 0, first.output
    [entry] = Cache(root).entries()
    assert pl.read_parquet(tmp_path / "first.parquet").height == 5005
    return root, source, entry.file("captions.parquet"), (tmp_path / "first.parquet").read_bytes()


def bit_flip(path: Path, tmp_path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def replace_with_35_rows(path: Path, tmp_path: Path) -> None:
    small = run("build", "captions", tokens(tmp_path / "small.token.txt", 7),
                "--cache-dir", tmp_path / "other-cache", "-o", tmp_path / "small.parquet")
    assert small.exit_code == 0 and pl.read_parquet(tmp_path / "small.parquet").height == 35
    path.unlink()
    shutil.copyfile(tmp_path / "small.parquet", path)


def link_outside(path: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.parquet"
    pl.DataFrame({"caption": ["not from this cache"]}).write_parquet(outside)
    path.unlink()
    path.symlink_to(outside)


CORRUPTIONS = {"bit-flip": (bit_flip, "CACHE_HASH_MISMATCH", "SHA-256 differs"),
               "replaced-by-35-rows": (replace_with_35_rows, "CACHE_HASH_MISMATCH", "bytes"),
               "symlink-outside": (link_outside, "CACHE_FILE_UNSAFE", "symbolic link")}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_corrupt_entry_is_reported_removed_rebuilt_and_never_served(tmp_path, built, kind):
    root, source, cached, good = built
    corrupt, code, what = CORRUPTIONS[kind]
    corrupt(cached, tmp_path)
    outside = (tmp_path / "outside.parquet").read_bytes() if kind == "symlink-outside" else None

    verify = run("cache", "verify", "--cache-dir", root, "--format", "json")
    assert verify.exit_code == 1
    findings = json.loads(verify.stdout)["findings"]
    assert [(f["code"], f["examples"][0]["file"]) for f in findings] == [(code,
                                                                          "captions.parquet")]

    again = run("build", "captions", source, "--cache-dir", root, "-o", tmp_path / "out.parquet")
    assert again.exit_code == 0, again.output
    assert "cache hit" not in again.stderr and "built: captions" in again.stderr
    [warning] = [line for line in again.stderr.splitlines() if line.startswith("warning:")]
    assert "captions.parquet" in warning and what in warning and "building it again" in warning
    assert (tmp_path / "out.parquet").read_bytes() == good
    assert pl.read_parquet(tmp_path / "out.parquet").height == 5005
    assert run("cache", "verify", "--cache-dir", root).exit_code == 0
    if outside is not None:
        assert (tmp_path / "outside.parquet").read_bytes() == outside  # never touched

    hit = run("build", "captions", source, "--cache-dir", root, "-o", tmp_path / "hit.parquet")
    assert "cache hit" in hit.stderr and "warning" not in hit.stderr
    assert (tmp_path / "hit.parquet").read_bytes() == good


def test_entry_files_are_sealed_read_only_with_fingerprints(built):
    root, _, cached, _ = built
    assert stat.S_IMODE(cached.stat().st_mode) & 0o222 == 0
    manifest = json.loads((cached.parent / "manifest.json").read_text())
    st = cached.stat()
    assert manifest["files"]["captions.parquet"]["fingerprint"] == {
        "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
        "ctime_ns": st.st_ctime_ns}


def test_a_hit_with_unmoved_fingerprints_reads_no_file(built, monkeypatch):
    root, source, _, _ = built

    def no_hashing(path):
        raise AssertionError(f"a hit with matching fingerprints hashed {path}")

    monkeypatch.setattr(integrity, "sha256_nofollow", no_hashing)
    hit = run("build", "captions", source, "--cache-dir", root)
    assert hit.exit_code == 0 and "cache hit" in hit.stderr


def test_moved_fingerprint_with_the_same_content_is_served_and_refreshed(built, monkeypatch):
    root, source, cached, good = built
    os.utime(cached, ns=(1, 1))  # as a copied or restored cache: metadata moved, bytes did not
    hashed = []
    real = integrity.sha256_nofollow
    monkeypatch.setattr(integrity, "sha256_nofollow",
                        lambda path: hashed.append(path.name) or real(path))
    hit = run("build", "captions", source, "--cache-dir", root)
    assert hit.exit_code == 0 and "cache hit" in hit.stderr and "warning" not in hit.stderr
    assert hashed == ["captions.parquet"]
    manifest = json.loads((cached.parent / "manifest.json").read_text())
    assert manifest["files"]["captions.parquet"]["fingerprint"]["mtime_ns"] == 1
    hashed.clear()
    assert "cache hit" in run("build", "captions", source, "--cache-dir", root).stderr
    assert hashed == []  # cheap again


def test_a_linked_entry_directory_is_never_followed(tmp_path):
    cache = Cache(tmp_path / "c", warn=(warnings := []).append)

    def builder(out: Path) -> BuildOutput:
        (out / "out.txt").write_text("right")
        return BuildOutput()

    entry = cache.build(STAGE, options={}, inputs={}, builder=builder)
    entry.release()
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(entry.path, elsewhere)
    (elsewhere / "out.txt").chmod(0o644)
    (elsewhere / "out.txt").write_text("wrong")
    shutil.rmtree(entry.path)
    entry.path.symlink_to(elsewhere, target_is_directory=True)
    again = cache.build(STAGE, options={}, inputs={}, builder=builder)
    assert not again.hit and again.file("out.txt").read_text() == "right"
    assert "not a plain directory" in warnings[0]
    assert (elsewhere / "out.txt").read_text() == "wrong"  # the link went, its target stayed


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/hostname", "a/../../b"])
def test_a_manifest_naming_a_file_outside_its_entry_is_not_followed(tmp_path, name):
    cache = Cache(tmp_path / "c", warn=(warnings := []).append)

    def builder(out: Path) -> BuildOutput:
        (out / "out.txt").write_text("right")
        return BuildOutput()

    entry = cache.build(STAGE, options={}, inputs={}, builder=builder)
    entry.release()
    manifest_path = entry.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name] = manifest["files"]["out.txt"]
    manifest_path.chmod(0o644)
    manifest_path.write_text(json.dumps(manifest))
    again = cache.build(STAGE, options={}, inputs={}, builder=builder)
    assert not again.hit
    assert f"{name}: the name leaves the entry directory" in warnings[0]
