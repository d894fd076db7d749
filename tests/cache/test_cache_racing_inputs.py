"""A build commits only output made from exactly the bytes its key names.

An input is hashed for the key, then read again by the builder. Whatever happens to it in
between (replaced, written to, a file added to an input folder), the cache never stores the
output of other bytes under that key: the build refuses to commit, says which input changed,
and exits 2. The races are made deterministic with the test hooks of
``uncollapse.cache.crashpoints``: the input is changed when the build reaches a named moment.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cache import crashpoints
from uncollapse.cache.store import BuildOutput, Cache, Stage
from uncollapse.cli import main

STAGE = Stage("unit", version=1, modules=("uncollapse.cache.store",))


def tokens(path: Path, images: int, word: str = "caption") -> Path:
    path.write_text("".join(f"{i:07d}.jpg#{n}\t{word} {n} of image {i} .\n"
                            for i in range(images) for n in range(5)))
    return path


def once(action):
    done = []

    def run():
        if not done:
            done.append(True)
            action()
    return run


def replace_file(path: Path, data: bytes):
    """Put ``data`` at ``path`` as ``mv other path`` does (a new file renamed over it)."""
    def act():
        other = path.with_name(path.name + ".new")
        other.write_bytes(data)
        os.replace(other, path)
    return act


def build(*args):
    return CliRunner().invoke(main, ["build", *map(str, args)])


def test_an_input_replaced_while_the_build_holds_its_lock_is_not_committed(tmp_path):
    source = tokens(tmp_path / "captions.token.txt", 6)
    other = tokens(tmp_path / "other.token.txt", 9, word="other").read_bytes()
    root, out = tmp_path / "cache", tmp_path / "out.parquet"
    with crashpoints.acting_at("locked", once(replace_file(source, other))):
        result = build("captions", source, "--cache-dir", root, "-o", out, "--quiet")
    assert result.exit_code == 2, result.output
    assert f"{source}: the input changed while it was being built" in result.output
    assert "nothing was cached" in result.output
    assert Cache(root).entries() == []
    assert not out.exists()
    # the input as it is now gets its own key, and a correct table
    again = build("captions", source, "--cache-dir", root, "-o", out, "--quiet")
    assert again.exit_code == 0, again.output
    table = pl.read_parquet(out)
    assert table.height == 45 and table["caption"][0].startswith("other 0")


@pytest.mark.parametrize("point", ["key-computed", "locked", "tmp-created"])
def test_an_input_written_in_place_before_the_builder_reads_it_is_not_committed(tmp_path,
                                                                             point):
    source = tokens(tmp_path / "captions.token.txt", 6)
    edited = source.read_bytes().replace(b"caption 0 of image 3", b"CAPTION 0 of image 3")
    root = tmp_path / "cache"

    def write_in_place():
        with open(source, "r+b") as fh:  # same inode, same size
            fh.write(edited)

    with crashpoints.acting_at(point, once(write_in_place)):
        result = build("captions", source, "--cache-dir", root, "--quiet")
    assert result.exit_code == 2, result.output
    assert "the input changed while it was being built" in result.output
    assert Cache(root).entries() == []


def test_an_input_changed_after_the_builder_read_it_is_still_refused(tmp_path):
    """The key and the output agree here, but the input is not what it was hashed as any
    more: the cache cannot tell which bytes the builder saw, so it refuses."""
    source = tmp_path / "input.txt"
    source.write_text("first\n")
    cache = Cache(tmp_path / "c")

    def builder(out_dir: Path) -> BuildOutput:
        (out_dir / "out.txt").write_text(source.read_text())
        source.write_text("second\n")  # the race, after the read
        return BuildOutput()

    with pytest.raises(Exception, match="the input changed while it was being built"):
        cache.build(STAGE, options={}, inputs={"src": source}, builder=builder)
    assert cache.entries() == []


def test_a_file_added_to_an_input_folder_during_the_build_is_not_committed(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Alpha one.\n\nAlpha two.\n")
    root = tmp_path / "cache"
    add = once(lambda: (folder / "b.txt").write_text("Beta.\n"))
    with crashpoints.acting_at("locked", add):
        result = build("chunks", folder, "--cache-dir", root, "--quiet")
    assert result.exit_code == 2, result.output
    assert f"{folder}: the input changed while it was being built" in result.output
    assert "b.txt" in result.output
    assert Cache(root).entries() == []


def test_an_unchanged_input_still_builds_and_hits(tmp_path):
    source = tokens(tmp_path / "captions.token.txt", 6)
    root = tmp_path / "cache"
    first = build("captions", source, "--cache-dir", root, "--quiet")
    second = build("captions", source, "--cache-dir", root, "--quiet")
    assert (first.exit_code, second.exit_code) == (0, 0), first.output + second.output
    assert "built:" in first.output and "cache hit:" in second.output


def test_the_hooks_act_only_when_enabled(tmp_path):
    calls = []
    crashpoints.crash_point("locked")  # not enabled: nothing registered, nothing happens
    with crashpoints.acting_at("locked", lambda: calls.append(1)):
        crashpoints.crash_point("locked")
    crashpoints.crash_point("locked")
    assert calls == [1]
    assert not crashpoints.enabled()
    with pytest.raises(ValueError, match="not a crash point"):
        with crashpoints.acting_at("lockd", lambda: None):
            pass
