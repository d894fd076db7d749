"""`cache clear`, `ls` and `verify` on hostile caches: stage names that leave the root, links,
broken manifests, builds in progress, a cache directory that cannot be written."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from uncollapse.cache.store import BuildOutput, Cache, Stage
from uncollapse.cli import main

STAGE = Stage("unit", version=1, modules=("uncollapse.cache.store",))


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def builder(out: Path) -> BuildOutput:
    (out / "out.txt").write_text("content")
    return BuildOutput(rows={"out.txt": 1})


def one_entry(root: Path):
    entry = Cache(root).build(STAGE, options={}, inputs={}, builder=builder)
    entry.release()
    return entry


@pytest.fixture
def victim(tmp_path):
    folder = tmp_path / "victim"
    (folder / "ab" / ("a" * 64)).mkdir(parents=True)
    (folder / "ab" / ("a" * 64) / "precious.txt").write_text("keep me")
    (folder / "precious.txt").write_text("keep me")
    return folder


def untouched(victim: Path) -> bool:
    return ((victim / "precious.txt").read_text() == "keep me"
            and (victim / "ab" / ("a" * 64) / "precious.txt").read_text() == "keep me")


@pytest.mark.parametrize("stage", ["../victim", "{victim}", "unit/../../victim", "..", ".",
                                   "", "a/b", "unit\n"])
@pytest.mark.parametrize("command", ["clear", "ls"])
def test_a_stage_that_is_not_a_plain_name_exits_2_and_touches_nothing(tmp_path, victim, stage,
                                                                       command):
    root = tmp_path / "cache"
    one_entry(root)
    result = run("cache", command, "--cache-dir", root, "--stage", stage.format(victim=victim))
    assert result.exit_code == 2
    assert "is not a stage name" in result.output
    assert untouched(victim) and len(Cache(root).entries()) == 1


def test_links_inside_the_root_are_removed_never_followed(tmp_path, victim):
    root = tmp_path / "cache"
    entry = one_entry(root)
    (root / "captions").symlink_to(victim, target_is_directory=True)  # a linked stage
    (entry.path.parent.parent / "ab").symlink_to(victim / "ab")  # a linked bucket
    linked_entry = entry.path.parent / ("b" * 64)  # a linked entry
    linked_entry.symlink_to(victim / "ab" / ("a" * 64), target_is_directory=True)
    assert run("cache", "clear", "--cache-dir", root, "--stage", "captions").exit_code == 0
    result = run("cache", "clear", "--cache-dir", root)
    assert result.exit_code == 0 and result.output.strip() == "removed 2 entries"
    assert untouched(victim)
    assert not os.path.lexists(linked_entry)


BROKEN = {"not json": "{", "a list": "[]", "no files": None, "files not a dict": "files",
          "another key": "key", "key inputs edited": "key_inputs"}


def break_manifest(entry, how: str) -> None:
    path = entry.path / "manifest.json"
    manifest = json.loads(path.read_text())
    text = BROKEN[how]
    if how == "no files":
        del manifest["files"]
        text = json.dumps(manifest)
    elif how == "files not a dict":
        text = json.dumps({**manifest, "files": ["out.txt"]})
    elif how == "another key":
        text = json.dumps({**manifest, "key": "f" * 64})
    elif how == "key inputs edited":
        text = json.dumps({**manifest, "key_inputs": {**manifest["key_inputs"], "options": {
            "splits": ["train"]}}})
    path.chmod(0o644)
    path.write_text(text)


@pytest.mark.parametrize("how", BROKEN)
def test_a_broken_manifest_is_listed_verified_as_corruption_cleared_and_rebuilt(tmp_path, how):
    root = tmp_path / "cache"
    entry = one_entry(root)
    break_manifest(entry, how)
    listing = run("cache", "ls", "--cache-dir", root)
    assert listing.exit_code == 0
    assert f"{entry.key[:16]}  BROKEN: " in listing.output and "cache clear" in listing.output
    verify = run("cache", "verify", "--cache-dir", root, "--format", "json")
    assert verify.exit_code == 1
    assert [f["code"] for f in json.loads(verify.stdout)["findings"]] == ["CACHE_MANIFEST_BROKEN"]
    assert "KeyError" not in listing.output + verify.output
    explain = run("cache", "explain", "--cache-dir", root, entry.key[:8], entry.key[:8])
    assert explain.exit_code == 2 and "manifest.json" in explain.output
    warnings = []
    again = Cache(root, warn=warnings.append).build(STAGE, options={}, inputs={},
                                                    builder=builder)
    assert not again.hit and again.file("out.txt").read_text() == "content"
    assert "manifest" in warnings[0]
    again.release()
    break_manifest(again, how)
    cleared = run("cache", "clear", "--cache-dir", root)
    assert cleared.exit_code == 0 and cleared.output.strip() == "removed 1 entry"
    assert Cache(root).entries() == []


def test_clear_during_a_build_keeps_its_temporary_directory(tmp_path):
    root = tmp_path / "cache"
    inside, release = threading.Event(), threading.Event()
    result = {}

    def slow(out: Path) -> BuildOutput:
        (out / "out.txt").write_text("content")
        inside.set()
        assert release.wait(30)
        return BuildOutput(rows={"out.txt": 1})

    def build():
        result["entry"] = Cache(root).build(STAGE, options={}, inputs={}, builder=slow)

    thread = threading.Thread(target=build)
    thread.start()
    assert inside.wait(30)
    [tmp] = list(root.rglob(".tmp-*"))
    cleared = run("cache", "clear", "--cache-dir", root)
    assert cleared.exit_code == 0 and cleared.output.strip() == "removed 0 entries"
    assert (tmp / "out.txt").read_text() == "content"
    release.set()
    thread.join(30)
    assert result["entry"].file("out.txt").read_text() == "content"
    assert run("cache", "verify", "--cache-dir", root).exit_code == 0


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` unwritable, for root too (which ignores permission bits): mode 555,
    and the immutable attribute when the mode alone does not stop this user."""
    folder.chmod(0o555)
    immutable = os.access(folder, os.W_OK)
    if immutable:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        with pytest.raises(OSError):
            (folder / "probe").write_text("x")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_a_read_only_cache_directory_is_named_with_the_fix(tmp_path):
    source = tmp_path / "t.token.txt"
    source.write_text("a.jpg#0\ta caption .\n")
    root = tmp_path / "cache"
    root.mkdir()
    with read_only(root):
        path = run("cache", "path", "--cache-dir", root)
        assert path.exit_code == 0 and path.output.strip() == str(root)
        assert run("cache", "ls", "--cache-dir", root).output.strip() == "no entries"
        assert run("cache", "verify", "--cache-dir", root).exit_code == 0
        built = run("build", "captions", source, "--cache-dir", root)
        assert built.exit_code == 2
        assert f"the cache directory {root} cannot be written" in built.output
        assert "--cache-dir DIR or UNCOLLAPSE_CACHE=DIR" in built.output
        assert "OperationalError" not in built.output and "Traceback" not in built.output


def test_a_cache_root_that_is_a_link_lists_and_clears_its_entries(tmp_path):
    one_entry(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert len(Cache(tmp_path / "link").entries()) == 1
    assert run("cache", "clear", "--cache-dir", tmp_path / "link").output.strip() == (
        "removed 1 entry")


def test_a_cache_root_below_a_file_is_named_with_the_fix(tmp_path):
    source = tmp_path / "t.token.txt"
    source.write_text("a.jpg#0\ta caption .\n")
    root = source / "cache"
    assert run("cache", "path", "--cache-dir", root).output.strip() == str(root)
    built = run("build", "captions", source, "--cache-dir", root)
    assert built.exit_code == 2
    assert f"the cache directory {root} cannot be written" in built.output
