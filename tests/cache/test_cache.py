"""The content-addressed cache: hits, misses for every key input, crash safety, verify, CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from uncollapse.cache.store import BuildOutput, Cache, Stage
from uncollapse.cli import main

STAGE = Stage("unit", version=1, modules=("uncollapse.cache.store",))


def write_builder(calls: list, text: str = "hello"):
    def builder(out_dir: Path) -> BuildOutput:
        calls.append(out_dir)
        (out_dir / "out.txt").write_text(text)
        return BuildOutput(rows={"out.txt": 1}, schema={"out.txt": "text"},
                           result={"note": text})
    return builder


@pytest.fixture
def source_file(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("some input\n")
    return path


def test_second_build_is_a_hit_and_does_not_run_the_builder(tmp_path, source_file):
    cache, calls = Cache(tmp_path / "c"), []
    first = cache.build(STAGE, options={"a": 1}, inputs={"src": source_file},
                        builder=write_builder(calls))
    second = cache.build(STAGE, options={"a": 1}, inputs={"src": source_file},
                         builder=write_builder(calls))
    assert (first.hit, second.hit) == (False, True)
    assert len(calls) == 1
    assert first.key == second.key
    assert second.file("out.txt").read_text() == "hello"
    assert second.result == {"note": "hello"}


def test_manifest_lists_sha256_rows_and_schema_of_every_file(tmp_path, source_file):
    import hashlib

    entry = Cache(tmp_path / "c").build(STAGE, options={}, inputs={"src": source_file},
                                        builder=write_builder([]))
    manifest = json.loads((entry.path / "manifest.json").read_text())
    assert manifest["files"]["out.txt"]["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert manifest["rows"] == {"out.txt": 1}
    assert manifest["schema"] == {"out.txt": "text"}
    assert manifest["key_inputs"]["inputs"]["src"]["sha256"] == hashlib.sha256(
        b"some input\n").hexdigest()
    assert entry.path == tmp_path / "c" / "unit" / entry.key[:2] / entry.key


def test_option_change_is_a_miss_and_explain_names_the_option(tmp_path, source_file):
    cache = Cache(tmp_path / "c")
    a = cache.build(STAGE, options={"splits": ["train"]}, inputs={"src": source_file},
                    builder=write_builder([]))
    b = cache.build(STAGE, options={"splits": ["val"]}, inputs={"src": source_file},
                    builder=write_builder([]))
    assert a.key != b.key and not b.hit
    assert cache.explain(a.key, b.key) == [("options.splits", ["train"], ["val"])]
    result = CliRunner().invoke(main, ["cache", "explain", "--cache-dir", str(cache.root),
                                       a.key[:10], b.key[:10]])
    assert result.exit_code == 0
    assert "options.splits" in result.output and "['val']" in result.output


def test_input_content_change_is_a_miss(tmp_path, source_file):
    cache = Cache(tmp_path / "c")
    a = cache.build(STAGE, options={}, inputs={"src": source_file}, builder=write_builder([]))
    source_file.write_text("other input\n")
    b = cache.build(STAGE, options={}, inputs={"src": source_file}, builder=write_builder([]))
    assert a.key != b.key
    assert [d[0] for d in cache.explain(a.key, b.key)] == ["inputs.src.sha256"]


def test_code_change_of_the_stage_is_a_miss(tmp_path, source_file, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    module = package / "stage_code_demo.py"
    module.write_text("VERSION = 1\n")
    monkeypatch.syspath_prepend(str(package))
    stage = Stage("coded", version=1, modules=("stage_code_demo",))
    cache = Cache(tmp_path / "c")
    a = cache.build(stage, options={}, inputs={"src": source_file}, builder=write_builder([]))
    module.write_text("VERSION = 2  # a fix in the builder\n")
    b = cache.build(stage, options={}, inputs={"src": source_file}, builder=write_builder([]))
    assert a.key != b.key and not b.hit
    assert [d[0] for d in cache.explain(a.key, b.key)] == ["code"]


def test_stage_version_bump_is_a_miss(tmp_path, source_file):
    cache = Cache(tmp_path / "c")
    a = cache.build(STAGE, options={}, inputs={"src": source_file}, builder=write_builder([]))
    bumped = Stage(STAGE.name, version=2, modules=STAGE.modules)
    b = cache.build(bumped, options={}, inputs={"src": source_file}, builder=write_builder([]))
    assert [d[0] for d in cache.explain(a.key, b.key)] == ["stage_version"]


def test_rebuild_replaces_the_entry(tmp_path, source_file):
    cache, calls = Cache(tmp_path / "c"), []
    cache.build(STAGE, options={}, inputs={"src": source_file}, builder=write_builder(calls))
    again = cache.build(STAGE, options={}, inputs={"src": source_file},
                        builder=write_builder(calls, "rebuilt"), rebuild=True)
    assert len(calls) == 2 and not again.hit
    assert again.file("out.txt").read_text() == "rebuilt"
    assert len(cache.entries()) == 1


def test_builder_that_raises_leaves_no_entry(tmp_path, source_file):
    cache = Cache(tmp_path / "c")

    def crashing(out_dir: Path) -> BuildOutput:
        (out_dir / "half.txt").write_text("half written")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError):
        cache.build(STAGE, options={}, inputs={"src": source_file}, builder=crashing)
    assert cache.entries() == []
    assert list((tmp_path / "c").rglob("half.txt")) == []


def test_killed_build_leaves_no_entry_and_the_next_build_works(tmp_path, source_file):
    script = textwrap.dedent(f"""
        import os
        from uncollapse.cache.store import Cache, Stage
        def builder(out_dir):
            (out_dir / "out.txt").write_text("half")
            os._exit(9)  # the process dies mid-build, no cleanup runs
        Cache({str(tmp_path / 'c')!r}).build(
            Stage("unit", 1, ("uncollapse.cache.store",)), options={{}},
            inputs={{"src": {str(source_file)!r}}}, builder=builder)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == 9
    cache = Cache(tmp_path / "c")
    assert cache.entries() == []
    leftovers = list((tmp_path / "c" / "unit").glob("*/.tmp-*"))
    assert len(leftovers) == 1  # the dead build's scratch space, never taken for an entry
    entry = cache.build(STAGE, options={}, inputs={"src": source_file}, builder=write_builder([]))
    assert not entry.hit and entry.file("out.txt").read_text() == "hello"
    assert cache.clear_counts() == (0, 1)  # the dead build's leftover goes, the held entry stays
    assert list((tmp_path / "c" / "unit").glob("*/.tmp-*")) == []
    entry.release()
    assert cache.clear() == 1
    assert list((tmp_path / "c" / "unit").glob("*/.tmp-*")) == []


def _concurrent_build(root: str, source: str, log: str) -> str:
    def builder(out_dir: Path) -> BuildOutput:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        (out_dir / "out.txt").write_text("x")
        return BuildOutput()

    return Cache(root).build(STAGE, options={}, inputs={"src": source}, builder=builder).key


def test_concurrent_builds_of_one_key_build_once(tmp_path, source_file):
    log = tmp_path / "builds.log"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        keys = pool.starmap(_concurrent_build, [(str(tmp_path / "c"), str(source_file),
                                                 str(log))] * 2)
    assert keys[0] == keys[1]
    assert len(log.read_text().splitlines()) == 1


def test_unchanged_input_is_hashed_once(tmp_path, source_file):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20))
    cache = Cache(tmp_path / "c")
    cache.key_inputs(STAGE, options={}, inputs={"src": big})
    assert cache.digests.hashed_bytes == 1 << 20
    again = Cache(tmp_path / "c")  # a new process sees the remembered digest too
    again.key_inputs(STAGE, options={}, inputs={"src": big})
    assert again.digests.hashed_bytes == 0
    big.write_bytes(os.urandom(1 << 20))  # same size, new content and mtime: hashed again
    os.utime(big, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    again.key_inputs(STAGE, options={}, inputs={"src": big})
    assert again.digests.hashed_bytes == 1 << 20


def test_directory_inputs_are_hashed_by_content(tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "a.arrow").write_bytes(b"one")
    cache = Cache(tmp_path / "c")
    first = cache.key(cache.key_inputs(STAGE, options={}, inputs={"src": folder}))
    (folder / "a.arrow").write_bytes(b"two")
    second = cache.key(cache.key_inputs(STAGE, options={}, inputs={"src": folder}))
    assert first != second


def test_verify_catches_a_flipped_byte_and_a_missing_file(tmp_path, source_file):
    cache = Cache(tmp_path / "c")
    entry = cache.build(STAGE, options={}, inputs={"src": source_file}, builder=write_builder([]))
    runner = CliRunner()
    ok = runner.invoke(main, ["cache", "verify", "--cache-dir", str(cache.root)])
    assert ok.exit_code == 0, ok.output
    data = bytearray(entry.file("out.txt").read_bytes())
    data[0] ^= 0x01
    entry.file("out.txt").chmod(0o644)  # sealed read-only at commit
    entry.file("out.txt").write_bytes(bytes(data))
    bad = runner.invoke(main, ["cache", "verify", "--cache-dir", str(cache.root),
                               entry.key[:8], "--format", "json"])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert [f["code"] for f in report["findings"]] == ["CACHE_HASH_MISMATCH"]
    assert report["findings"][0]["examples"][0]["file"] == "out.txt"
    entry.file("out.txt").unlink()
    gone = runner.invoke(main, ["cache", "verify", "--cache-dir", str(cache.root),
                                "--format", "json"])
    assert gone.exit_code == 1
    assert json.loads(gone.output)["findings"][0]["code"] == "CACHE_FILE_MISSING"


def test_cache_cli_ls_path_clear(tmp_path, source_file, monkeypatch):
    monkeypatch.setenv("UNCOLLAPSE_CACHE", str(tmp_path / "env-cache"))
    cache = Cache()
    assert cache.root == tmp_path / "env-cache"
    a = cache.build(STAGE, options={}, inputs={"src": source_file}, builder=write_builder([]))
    other = Stage("other", 1, STAGE.modules)
    cache.build(other, options={}, inputs={"src": source_file}, builder=write_builder([]))
    runner = CliRunner()
    assert runner.invoke(main, ["cache", "path"]).output.strip() == str(tmp_path / "env-cache")
    listing = runner.invoke(main, ["cache", "ls"]).output
    assert a.key[:16] in listing and "other" in listing
    held = runner.invoke(main, ["cache", "clear", "--stage", "unit"])
    assert held.output.strip() == "removed 0 entries; kept 1 in use by a running build"
    a.release()
    cleared = runner.invoke(main, ["cache", "clear", "--stage", "unit"])
    assert cleared.output.strip() == "removed 1 entry"
    assert [e.stage for e in Cache().entries()] == ["other"]


def test_unknown_key_is_a_tool_error(tmp_path):
    result = CliRunner().invoke(main, ["cache", "verify", "--cache-dir", str(tmp_path), "beef"])
    assert result.exit_code == 2
    assert "no cache entry with key 'beef'" in result.output


def test_missing_input_is_a_tool_error(tmp_path):
    from uncollapse.errors import ToolError

    with pytest.raises(ToolError, match="input does not exist"):
        Cache(tmp_path / "c").key_inputs(STAGE, options={}, inputs={"src": tmp_path / "nope"})


def test_build_output_rows_must_be_a_dict_by_file():
    with pytest.raises(TypeError, match="rows must be a dict keyed by output file name"):
        BuildOutput(rows=1000)


def test_code_change_in_a_module_the_stage_imports_is_a_miss(tmp_path, source_file, monkeypatch):
    package = tmp_path / "src" / "demo_stagepkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stage.py").write_text("def build():\n    from demo_stagepkg.helper import f\n")
    (package / "helper.py").write_text("def f():\n    return 1\n")
    (package / "unrelated.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    stage = Stage("transitive", version=1, modules=("demo_stagepkg.stage",))
    cache = Cache(tmp_path / "c")
    a = cache.build(stage, options={}, inputs={"src": source_file}, builder=write_builder([]))
    (package / "unrelated.py").write_text("X = 2\n")
    same = cache.build(stage, options={}, inputs={"src": source_file}, builder=write_builder([]))
    assert same.hit and same.key == a.key
    (package / "helper.py").write_text("def f():\n    return 2  # a fix in a helper\n")
    b = cache.build(stage, options={}, inputs={"src": source_file}, builder=write_builder([]))
    assert not b.hit and [d[0] for d in cache.explain(a.key, b.key)] == ["code"]
