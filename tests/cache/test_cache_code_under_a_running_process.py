"""A build keys the code that runs, not code edited on disk after the process loaded it.

The key holds a digest of the stage's source files as they are on disk. A process that had
imported a builder (a notebook kernel, a server) kept running the old code after the file was
fixed: its next build keyed the old code's output by the fixed code, and every later process
running the fixed code was served that stale output as a cache hit ("a fixed builder can never
be served a stale result" did not hold).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from uncollapse.cache import hashing
from uncollapse.cache.store import Cache, Stage
from uncollapse.errors import ToolError

REPO = Path(__file__).resolve().parents[2]
BUILDER = textwrap.dedent("""
    from uncollapse.cache.store import BuildOutput

    def builder(out):
        (out / "o.txt").write_text("{text}")
        return BuildOutput()
""")


@pytest.fixture
def stage_package(tmp_path, monkeypatch):
    package = tmp_path / "src" / "livestage_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(BUILDER.format(text="old code"))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    yield package
    sys.modules.pop("livestage_pkg", None)


def build(root: Path, source: Path):
    module = importlib.import_module("livestage_pkg")
    return Cache(root).build(Stage("live", 1, ("livestage_pkg",)), options={},
                             inputs={"src": source}, builder=module.builder)


def test_a_builder_edited_after_the_process_loaded_it_is_refused(tmp_path, stage_package):
    source = tmp_path / "in.txt"
    source.write_text("x")
    root = tmp_path / "cache"
    first = build(root, source)
    assert first.file("o.txt").read_text() == "old code"
    (stage_package / "__init__.py").write_text(BUILDER.format(text="NEW code"))  # the fix
    with pytest.raises(ToolError, match="changed after this process loaded it"):
        build(root, source)
    assert [e.key for e in Cache(root).entries()] == [first.key]
    # a new process runs the fixed code, and is not served the old code's output
    script = (f"import sys; sys.path.insert(0, {str(stage_package.parent)!r}); "
              f"sys.path.insert(0, {str(REPO)!r})\n"
              "from pathlib import Path\nimport livestage_pkg\n"
              "from uncollapse.cache.store import Cache, Stage\n"
              f"e = Cache({str(root)!r}).build(Stage('live', 1, ('livestage_pkg',)), "
              f"options={{}}, inputs={{'src': Path({str(source)!r})}}, "
              "builder=livestage_pkg.builder)\n"
              "print(e.hit, e.file('o.txt').read_text())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False NEW code"


def test_a_package_file_changed_since_the_cache_was_imported_is_refused(tmp_path,
                                                                         monkeypatch):
    """The package's own builders are checked from the moment the cache was imported."""
    file = Path(hashing.__file__).resolve()
    first = hashing._FIRST_SEEN[str(file)]
    monkeypatch.setitem(hashing._FIRST_SEEN, str(file), (first[0], first[1] + 1, *first[2:]))
    with pytest.raises(ToolError, match="uncollapse.cache.hashing changed after this process"):
        hashing.source_digest(("uncollapse.cache.store",))


def test_modules_that_are_not_loaded_may_change_between_builds(tmp_path, stage_package):
    """An edit to a file no module of this process was loaded from is simply a new key."""
    helper = stage_package / "helper.py"
    helper.write_text("X = 1\n")
    (stage_package / "__init__.py").write_text(BUILDER.format(text="old code") +
                                               "\ndef later():\n    from livestage_pkg import "
                                               "helper\n")
    source = tmp_path / "in.txt"
    source.write_text("x")
    first = build(tmp_path / "cache", source)
    helper.write_text("X = 2\n")
    second = build(tmp_path / "cache", source)
    assert first.key != second.key and not second.hit


def test_a_builder_edited_while_it_builds_is_not_committed(tmp_path, stage_package):
    source = tmp_path / "in.txt"
    source.write_text("x")
    module = importlib.import_module("livestage_pkg")

    def builder(out):
        (stage_package / "__init__.py").write_text(BUILDER.format(text="edited meanwhile"))
        return module.builder(out)

    with pytest.raises(ToolError, match="changed while it was being built"):
        Cache(tmp_path / "cache").build(Stage("live", 1, ("livestage_pkg",)), options={},
                                        inputs={"src": source}, builder=builder)
    assert Cache(tmp_path / "cache").entries() == []
