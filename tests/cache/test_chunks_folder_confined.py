"""``build chunks DIR --glob`` reads only files inside DIR, and the key covers every file read.

A glob with ``..`` or an absolute pattern would read files outside the folder (``/etc/hosts``)
that the folder's digest does not cover, so editing them gave a stale cache hit; so did a
linked subfolder. Such globs are refused naming ``--glob``; a link leading out of the folder
is refused naming the link; a link to a folder inside it is followed and keyed.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cache.store import Cache
from uncollapse.cli import main
from uncollapse.errors import ToolError
from uncollapse.pipeline.sequences.corpus import read_chunks


def build_chunks(folder: Path, root: Path, out: Path, glob: str):
    return CliRunner().invoke(main, ["build", "chunks", str(folder), "--glob", glob,
                                     "--cache-dir", str(root), "-o", str(out), "--quiet"])


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "one.txt").write_text("First text.\n\nSecond paragraph.\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("Outside words.\n")
    return folder, outside


@pytest.mark.parametrize("glob", ["../outside/*.txt", "../../../../etc/host*", "a/../../outside/*",
                                  "/etc/host*", "**/../../outside/*.txt"])
def test_a_glob_leaving_the_folder_is_refused_naming_the_flag(tmp_path, corpus, glob):
    folder, _ = corpus
    result = build_chunks(folder, tmp_path / "cache", tmp_path / "out.parquet", glob)
    assert result.exit_code == 2, result.output
    assert f"--glob {glob!r}" in result.output
    assert "inside the folder" in result.output
    assert "Outside words" not in result.output
    assert not (tmp_path / "out.parquet").exists()
    assert Cache(tmp_path / "cache").entries() == []


def test_the_library_refuses_the_same_globs(corpus):
    folder, _ = corpus
    with pytest.raises(ToolError, match="glob '../outside/\\*.txt' reaches outside"):
        read_chunks(folder, glob="../outside/*.txt")


def test_a_linked_subfolder_leading_out_of_the_folder_is_refused(tmp_path, corpus):
    folder, outside = corpus
    os.symlink(outside, folder / "linked")
    result = build_chunks(folder, tmp_path / "cache", tmp_path / "out.parquet", "*/*.txt")
    assert result.exit_code == 2, result.output
    assert "linked/secret.txt" in result.output and "leads out of the folder" in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_a_linked_file_leading_out_of_the_folder_is_refused(tmp_path, corpus):
    folder, outside = corpus
    os.symlink(outside / "secret.txt", folder / "a" / "two.txt")
    result = build_chunks(folder, tmp_path / "cache", tmp_path / "out.parquet", "*/*.txt")
    assert result.exit_code == 2, result.output
    assert "two.txt" in result.output and "leads out of the folder" in result.output


def test_a_linked_subfolder_inside_the_folder_is_keyed(tmp_path):
    """Editing a file reached only through a link to a folder gives a new build, not a hit."""
    folder = tmp_path / "corpus"
    (folder / ".store" / "texts").mkdir(parents=True)
    (folder / ".store" / "texts" / "x.txt").write_text("Old text.\n")
    os.symlink(folder / ".store" / "texts", folder / "docs")
    root, out = tmp_path / "cache", tmp_path / "out.parquet"
    first = build_chunks(folder, root, out, "docs/*.txt")
    assert first.exit_code == 0, first.output
    assert pl.read_parquet(out)["text"].to_list() == ["Old text."]
    (folder / ".store" / "texts" / "x.txt").write_text("New text.\n")
    second = build_chunks(folder, root, out, "docs/*.txt")
    assert second.exit_code == 0, second.output
    assert "cache hit" not in second.output
    assert pl.read_parquet(out)["text"].to_list() == ["New text."]


def test_a_link_looping_back_into_the_folder_does_not_hang_the_digest(tmp_path, corpus):
    folder, _ = corpus
    os.symlink(folder, folder / "a" / "loop")
    result = build_chunks(folder, tmp_path / "cache", tmp_path / "out.parquet", "a/*.txt")
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(tmp_path / "out.parquet")["doc_key"].unique().to_list() == [
        "a/one.txt"]
