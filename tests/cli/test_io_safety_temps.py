"""Temporary files are recognisable, and the next write to a destination removes stale ones.

A SIGKILL during ``-o`` used to leave anonymous ``.tmp`` files of tens of MB that nothing
removed. Temps are now ``.<name>.uncollapse-tmp-<pid>-<host>-<random>``: one whose process
is gone, or that nobody touched for a day, is removed by the next write to the same
destination; a live writer's is kept.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uncollapse.atomic import (
    HOST_TAG,
    STALE_AFTER_S,
    atomic_copy,
    atomic_path,
    remove_stale_temps,
)
from uncollapse.errors import ToolError


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_temp_name_says_what_it_is_for_and_whose_it_is(tmp_path):
    dest = tmp_path / "captions.parquet"
    with atomic_path(dest) as tmp:
        assert tmp.parent == tmp_path
        assert re.fullmatch(rf"\.captions\.parquet\.uncollapse-tmp-{os.getpid()}-{HOST_TAG}-"
                            r"[0-9a-f]{8}", tmp.name)
        tmp.write_bytes(b"x")
    with atomic_path(tmp_path / "s.npz", suffix=".npz") as tmp:
        assert tmp.name.endswith(".npz")
        tmp.write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["captions.parquet", "s.npz"]


def test_next_write_removes_temps_of_dead_writers_only(tmp_path, live_pid):
    dest = tmp_path / "out.bin"
    dead = _dead_pid()
    stale = tmp_path / f".out.bin.uncollapse-tmp-{dead}-{HOST_TAG}-0badf00d"
    live = tmp_path / f".out.bin.uncollapse-tmp-{live_pid}-{HOST_TAG}-0000beef"
    others = [tmp_path / f".other.bin.uncollapse-tmp-{dead}-{HOST_TAG}-12345678",  # not ours
              tmp_path / ".out.bin.uncollapse-tmp-notapid", tmp_path / "out.bin.bak",
              tmp_path / ".out.bin.1a2b3c.bin.tmp"]
    for path in (stale, live, *others):
        path.write_bytes(b"x" * 1000)
    (tmp_path / "src").write_bytes(b"new")
    atomic_copy(tmp_path / "src", dest)
    assert dest.read_bytes() == b"new"
    assert not stale.exists()
    assert live.exists() and all(p.exists() for p in others)


def test_a_live_pid_does_not_keep_a_temp_older_than_a_day(tmp_path, live_pid):
    dest = tmp_path / "out.bin"
    old = tmp_path / f".out.bin.uncollapse-tmp-{live_pid}-{HOST_TAG}-0000beef"
    old.write_bytes(b"x")
    day_ago = time.time() - STALE_AFTER_S - 60
    os.utime(old, (day_ago, day_ago))
    assert remove_stale_temps(dest) == [old]
    assert not old.exists()


def test_cleanup_runs_even_when_the_new_write_fails(tmp_path):
    dest = tmp_path / "out.bin"
    stale = tmp_path / f".out.bin.uncollapse-tmp-{_dead_pid()}-{HOST_TAG}-0badf00d"
    stale.write_bytes(b"x")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_symlink_named_like_a_temp_is_left_alone(tmp_path):
    target = tmp_path / "keep.me"
    target.write_bytes(b"x")
    link = tmp_path / f".out.bin.uncollapse-tmp-{_dead_pid()}-{HOST_TAG}-0badf00d"
    link.symlink_to(target)
    assert remove_stale_temps(tmp_path / "out.bin") == []
    assert link.is_symlink() and target.read_bytes() == b"x"


def test_a_destination_name_of_250_characters_still_gets_a_temp(tmp_path):
    dest = tmp_path / ("n" * 250)
    with atomic_path(dest) as tmp:
        assert len(tmp.name) < 255
        tmp.write_bytes(b"x")
    assert dest.read_bytes() == b"x"


def test_an_unwritable_folder_is_a_tool_error_naming_the_destination(tmp_path):
    (tmp_path / "file").write_text("x")
    dest = tmp_path / "file" / "out.bin"  # its folder is a file: cannot be created
    with pytest.raises(ToolError, match=f"{dest}: cannot create its folder"):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"x")
    with pytest.raises(ToolError, match=r"/proc/\d+/out.bin: cannot write a file in /proc/\d+ "):
        atomic_copy(tmp_path / "file", Path("/proc/self") / "out.bin")  # not writable, even as root


def test_another_hosts_temp_waits_a_day_whatever_its_pid(tmp_path):
    """On a shared file system a pid means nothing here: another machine's writer may be alive."""
    dest = tmp_path / "out.bin"
    other_host = "ffffffff" if HOST_TAG != "ffffffff" else "00000000"
    theirs = tmp_path / f".out.bin.uncollapse-tmp-{_dead_pid()}-{other_host}-0badf00d"
    theirs.write_bytes(b"x")
    assert remove_stale_temps(dest) == []
    day_ago = time.time() - STALE_AFTER_S - 60
    os.utime(theirs, (day_ago, day_ago))
    assert remove_stale_temps(dest) == [theirs]
