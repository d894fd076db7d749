"""A build that replaces an entry (``--rebuild``, or a bad entry) never pulls it from under a
process that is still reading it: it waits for the reader, for a bounded time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from uncollapse.cache import store
from uncollapse.cache.store import BuildOutput, Cache, Stage

REPO = Path(__file__).resolve().parents[2]
STAGE = Stage("unit", version=1, modules=("uncollapse.cache.store",))


def writes(text: str):
    def builder(out: Path) -> BuildOutput:
        (out / "out.txt").write_text(text)
        return BuildOutput()
    return builder


READER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from uncollapse.cache.store import BuildOutput, Cache, Stage

    def builder(out):
        (out / "out.txt").write_text("old")
        return BuildOutput()

    entry = Cache(sys.argv[1]).build(Stage("unit", 1, ("uncollapse.cache.store",)),
                                     options={}, inputs={}, builder=builder)
    print("holding", flush=True)
    sys.stdin.readline()  # the test says when to read
    print(entry.file("out.txt").read_text(), flush=True)
""")


def reader(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", READER, str(root)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_a_rebuild_waits_until_another_process_has_read_the_entry(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    proc = reader(root)
    waiting = threading.Event()
    real_wait = store.wait_for_readers

    def wait(path, timeout):
        waiting.set()
        return real_wait(path, timeout)

    monkeypatch.setattr(store, "wait_for_readers", wait)
    warnings, result = [], {}

    def rebuild():
        result["entry"] = Cache(root, warn=warnings.append).build(
            STAGE, options={}, inputs={}, builder=writes("new"), rebuild=True)

    thread = threading.Thread(target=rebuild)
    thread.start()
    assert waiting.wait(60)  # the new entry is built and waits to replace the old one
    out, _ = proc.communicate("go\n", timeout=60)
    assert proc.returncode == 0 and out.strip() == "old"  # the reader read its entry whole
    thread.join(60)
    assert result["entry"].file("out.txt").read_text() == "new" and warnings == []


def test_a_reader_that_never_lets_go_delays_a_rebuild_only_boundedly(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    proc = reader(root)
    monkeypatch.setattr(store, "READERS_TIMEOUT_S", 0.2)
    warnings = []
    entry = Cache(root, warn=warnings.append).build(STAGE, options={}, inputs={},
                                                    builder=writes("new"), rebuild=True)
    assert entry.file("out.txt").read_text() == "new"
    assert warnings == [f"cache entry unit {entry.key[:16]} is still held by another process "
                        "after 0.2 s; replacing it anyway"]
    proc.communicate("go\n", timeout=60)


def test_a_rebuild_does_not_wait_for_holds_of_its_own_process(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "READERS_TIMEOUT_S", 3600.0)  # a self-wait would hang the test
    cache = Cache(tmp_path / "cache", warn=(warnings := []).append)
    first = cache.build(STAGE, options={}, inputs={}, builder=writes("old"))
    again = cache.build(STAGE, options={}, inputs={}, builder=writes("new"), rebuild=True)
    assert again.file("out.txt").read_text() == "new" and warnings == []
    assert first.key == again.key
