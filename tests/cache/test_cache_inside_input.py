"""A cache directory inside an input folder is refused, as an ``-o`` inside it is.

Its own files (entries, locks, the digest memo) would be part of the folder's digest, so every
build made a new key and never hit (4 runs made 4 entries), and a reader of the folder
(``--glob '**/*'``, a saved dataset's ``*.parquet``) could take cached outputs for input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from uncollapse.cache.store import BuildOutput, Cache, Stage
from uncollapse.cli import main
from uncollapse.errors import ToolError

STAGE = Stage("unit", version=1, modules=("uncollapse.cache.store",))


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("Alpha one.\n\nAlpha two.\n")
    return folder


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


@pytest.mark.parametrize("where", ["cache", "deep/er/cache", "."])
def test_a_cache_dir_inside_the_input_folder_is_refused_every_time(tmp_path, folder, where):
    root = folder / where
    results = [run("build", "chunks", folder, "--cache-dir", root, "--quiet") for _ in range(2)]
    for result in results:
        assert result.exit_code == 2, result.output
        assert f"the cache directory {root} lies inside the input folder {folder}" in \
            result.output
        assert "--cache-dir" in result.output
    assert Cache(root).entries() == []


def test_the_cache_from_the_environment_inside_the_folder_is_refused_too(tmp_path, folder):
    result = run("build", "chunks", folder, "--quiet",
                 env={"UNCOLLAPSE_CACHE": str(folder / ".cache")})
    assert result.exit_code == 2, result.output
    assert "lies inside the input folder" in result.output and "UNCOLLAPSE_CACHE" in result.output


def test_a_cache_beside_the_folder_hits_on_the_second_run(tmp_path, folder):
    root = tmp_path / "cache"
    first = run("build", "chunks", folder, "--cache-dir", root, "--quiet")
    second = run("build", "chunks", folder, "--cache-dir", root, "--quiet")
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert "cache hit" in second.output
    assert len(Cache(root).entries()) == 1


def test_the_library_refuses_before_hashing_anything(folder):
    cache = Cache(folder / "c")
    with pytest.raises(ToolError, match="lies inside the input folder"):
        cache.build(STAGE, options={}, inputs={"src": folder},
                    builder=lambda out: (out / "x.txt").write_text("x") and BuildOutput())
    assert not (folder / "c" / ".digests.sqlite").exists()


def test_an_input_file_inside_the_cache_is_still_fine(tmp_path, folder):
    """``build sequences`` reads a chunk table straight out of its cache entry."""
    root = tmp_path / "cache"
    first = run("build", "chunks", folder, "--cache-dir", root, "--quiet")
    assert first.exit_code == 0
    [entry] = Cache(root).entries()
    cache = Cache(root)
    key = cache.key(cache.key_inputs(STAGE, options={}, inputs={"t": entry.file(
        "chunks.parquet")}))
    assert len(key) == 64 and Path(entry.path).is_dir()
