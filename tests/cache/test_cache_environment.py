"""The cache in the environments it meets: odd variables, no home, stray test hooks, pipes.

- ``XDG_CACHE_HOME=`` (set but empty) put the cache in the current directory; the XDG spec says
  an empty or relative value is ignored.
- No ``HOME`` and a uid without a passwd entry failed with ``RuntimeError: Could not determine
  home directory`` even with ``XDG_CACHE_HOME`` set; without both, and for
  ``UNCOLLAPSE_CACHE='~nouser/x'``, the error must say what to set.
- A stray ``UNCOLLAPSE_TEST_CRASH_AT`` made every build SIGKILL itself with no message.
- ``cache clear`` left ``.lock`` and ``.use`` files; ``--stage captionz`` removed 0 entries and
  exited 0; ``uncollapse cache ls | head -1`` failed with BrokenPipeError and exit 2.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from uncollapse.cache.store import BuildOutput, Cache, Stage, default_root
from uncollapse.cli import main
from uncollapse.errors import ToolError

REPO = Path(__file__).resolve().parents[2]
STAGE = Stage("unit", version=1, modules=("uncollapse.cache.store",))


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


@pytest.fixture
def no_passwd_entry(monkeypatch):
    """This process as a uid without a passwd entry and without HOME."""
    def getpwuid(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("UNCOLLAPSE_CACHE", raising=False)


@pytest.mark.parametrize("value", ["", "relative/dir", "  "])
def test_an_empty_or_relative_xdg_cache_home_is_ignored(tmp_path, monkeypatch, value):
    monkeypatch.delenv("UNCOLLAPSE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    monkeypatch.chdir(tmp_path)
    assert default_root() == tmp_path / "home" / ".cache" / "uncollapse"
    result = run("cache", "path")
    assert result.output.strip() == str(tmp_path / "home" / ".cache" / "uncollapse")


def test_an_absolute_xdg_cache_home_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("UNCOLLAPSE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "uncollapse"


def test_xdg_cache_home_works_without_home_or_a_passwd_entry(tmp_path, monkeypatch,
                                                             no_passwd_entry):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    result = run("cache", "path")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(tmp_path / "xdg" / "uncollapse")
    source = tmp_path / "in.txt"
    source.write_text("x")
    entry = Cache().build(STAGE, options={}, inputs={"src": source},
                          builder=lambda out: (out / "o.txt").write_text("o") and BuildOutput())
    assert entry.path.is_relative_to(tmp_path / "xdg" / "uncollapse")


def test_no_home_no_passwd_entry_and_no_xdg_is_a_clear_error(monkeypatch, no_passwd_entry):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    with pytest.raises(ToolError, match="no home directory"):
        default_root()
    result = run("cache", "path")
    assert result.exit_code == 2, result.output
    assert "UNCOLLAPSE_CACHE=DIR" in result.output and "--cache-dir" in result.output
    assert "RuntimeError" not in result.output


@pytest.mark.parametrize("value", ["~nouser-uncollapse-test/x", "~/cache"])
def test_a_cache_path_whose_home_cannot_be_found_is_a_clear_error(monkeypatch, no_passwd_entry,
                                                                  value):
    monkeypatch.setenv("UNCOLLAPSE_CACHE", value)
    result = run("cache", "path")
    assert result.exit_code == 2, result.output
    assert f"UNCOLLAPSE_CACHE={value!r}" in result.output
    assert "RuntimeError" not in result.output


def test_a_stray_crash_variable_does_nothing_outside_the_test_hooks(tmp_path):
    source = tmp_path / "c.token.txt"
    source.write_text("".join(f"{i}.jpg#{n}\tcaption {n} of {i}\n" for i in range(3)
                              for n in range(2)))
    env = {**os.environ, "UNCOLLAPSE_TEST_CRASH_AT": "returned",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "uncollapse", "build", "captions",
                             str(source), "--cache-dir", str(tmp_path / "cache"), "-o",
                             str(tmp_path / "out.parquet"), "--quiet"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.parquet").exists()


def build_two(root: Path, tmp_path: Path) -> Cache:
    cache = Cache(root)
    for text in ("a", "b"):
        source = tmp_path / f"{text}.txt"
        source.write_text(text)
        cache.build(STAGE, options={}, inputs={"src": source},
                    builder=lambda out: (out / "o.txt").write_text("o") and BuildOutput()
                    ).release()
    return cache


def test_cache_clear_leaves_no_lock_or_use_files(tmp_path):
    root = tmp_path / "cache"
    build_two(root, tmp_path)
    assert len(list(root.rglob("*.lock"))) == 2 and len(list(root.rglob("*.use"))) == 2
    result = run("cache", "clear", "--cache-dir", root)
    assert result.exit_code == 0, result.output
    assert "removed 2 entries" in result.output
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert left == [".digests.sqlite"]


def test_cache_clear_keeps_the_locks_of_an_entry_a_build_holds(tmp_path):
    root = tmp_path / "cache"
    cache = build_two(root, tmp_path)
    source = tmp_path / "a.txt"
    held = cache.build(STAGE, options={}, inputs={"src": source},
                       builder=lambda out: BuildOutput())
    assert Cache(root).clear_counts() == (1, 1)
    assert sorted(p.name for p in held.path.parent.iterdir()) == sorted(
        [held.key, f"{held.key}.lock", f"{held.key}.use"])
    held.release()
    assert Cache(root).clear_counts() == (1, 0)
    assert [p.name for p in root.iterdir()] == [".digests.sqlite"]


def test_a_build_after_a_clear_that_removed_its_lock_files_works(tmp_path):
    root = tmp_path / "cache"
    cache = build_two(root, tmp_path)
    cache.clear()
    again = build_two(root, tmp_path)
    assert len(again.entries()) == 2


@pytest.mark.parametrize("command", ["clear", "ls"])
def test_an_unknown_stage_name_is_refused_listing_the_known_ones(tmp_path, command):
    root = tmp_path / "cache"
    build_two(root, tmp_path)
    result = run("cache", command, "--cache-dir", root, "--stage", "captionz")
    assert result.exit_code == 2, result.output
    assert "no stage 'captionz'" in result.output
    for name in ("captions", "chunks", "sequences", "attributes", "scenes", "unit"):
        assert name in result.output
    assert len(Cache(root).entries()) == 2


def test_a_known_stage_without_entries_is_not_refused(tmp_path):
    result = run("cache", "clear", "--cache-dir", tmp_path / "cache", "--stage", "captions")
    assert result.exit_code == 0, result.output
    assert "removed 0 entries" in result.output


def test_the_built_in_stage_list_names_every_stage_of_the_package():
    import importlib
    import pkgutil

    import uncollapse.pipeline
    from uncollapse.cache.cli import BUILT_IN_STAGES

    defined = set()
    for info in pkgutil.walk_packages(uncollapse.pipeline.__path__, "uncollapse.pipeline."):
        module = importlib.import_module(info.name)
        defined |= {v.name for v in vars(module).values() if isinstance(v, Stage)}
    assert set(BUILT_IN_STAGES) == defined


@pytest.mark.parametrize("args", [["cache", "ls"], ["cache", "path"], ["--help"]])
def test_a_reader_that_leaves_early_is_not_an_error(tmp_path, args):
    """``uncollapse cache ls | head -1``: the reader is gone before the output is written."""
    root = tmp_path / "cache"
    build_two(root, tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head -0`: every write meets a closed pipe
    env = {**os.environ, "UNCOLLAPSE_CACHE": str(root),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    try:
        result = subprocess.run([sys.executable, "-m", "uncollapse", *args], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
