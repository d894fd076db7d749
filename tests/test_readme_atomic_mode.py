"""Files written through atomic_path get the permissions of a plain write, not mkstemp's 0600."""

from __future__ import annotations

import os
import stat

from uncollapse.atomic import atomic_copy, atomic_path


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_the_umask_mode_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"x")
        (tmp_path / "plain.bin").write_bytes(b"x")
        atomic_copy(tmp_path / "plain.bin", tmp_path / "copy.bin")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "plain.bin") == 0o644
    assert _mode(tmp_path / "out.bin") == 0o644
    assert _mode(tmp_path / "copy.bin") == 0o644


def test_replacing_a_file_keeps_its_mode(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    dest.chmod(0o640)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new" and _mode(dest) == 0o640
