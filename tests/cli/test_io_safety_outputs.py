"""Outputs onto special files: a character device or FIFO is written in place, never renamed over.

Run as root, ``-o /dev/null`` used to rename a regular file over the device. The devices here
are private nodes made with mknod under tmp_path (the same major/minor numbers as /dev/null and
/dev/full), so a failure cannot damage the machine's own /dev.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from pathlib import Path

import pytest
from io_safety_commands import invoke

from uncollapse.atomic import TEMP_MARK, atomic_copy, atomic_path
from uncollapse.errors import ToolError
from uncollapse.paths import CHAR_DEVICE, FIFO, file_kind

SCENES = ["build", "scenes", "--num", "3", "--size", "16", "--max-objects", "2", "--quiet"]


def _kind(path: Path) -> str:
    return file_kind(os.stat(path).st_mode)


@pytest.fixture
def devices(tmp_path):
    null, full = tmp_path / "null", tmp_path / "full"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    return null, full


def _scenes(tmp_path: Path, *extra: str):
    return invoke([*SCENES, "--cache-dir", str(tmp_path / "cache"), *extra])


def _entries(tmp_path: Path) -> list[str]:
    cache = tmp_path / "cache"
    return sorted(p.name for p in cache.rglob("*.npz")) if cache.exists() else []


@pytest.mark.parametrize("option", ["-o", "--json"])
def test_output_onto_a_null_device_writes_in_place(tmp_path, devices, option):
    null, _ = devices
    result, hung = _scenes(tmp_path, option, str(null))
    assert not hung and result.exit_code == 0, result.output
    assert _kind(null) == CHAR_DEVICE and os.stat(null).st_rdev == os.makedev(1, 3)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("option", ["-o", "--json"])
def test_output_onto_a_full_device_is_exit_2_naming_it(tmp_path, devices, option):
    _, full = devices
    result, hung = _scenes(tmp_path, option, str(full))
    assert not hung and result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"{full}: writing the output failed (No space left on device)" in message
    assert "Traceback" not in result.output
    assert _kind(full) == CHAR_DEVICE and os.stat(full).st_rdev == os.makedev(1, 7)


def test_validate_json_onto_a_null_device_keeps_the_device(tmp_path, devices):
    null, _ = devices
    scenes = tmp_path / "scenes.npz"
    assert _scenes(tmp_path, "-o", str(scenes))[0].exit_code == 0
    result, hung = invoke(["validate", "scenes", str(scenes), "--json", str(null)])
    assert not hung and result.exit_code == 0, result.output
    assert _kind(null) == CHAR_DEVICE and os.stat(null).st_rdev == os.makedev(1, 3)


def test_symlink_to_a_device_is_followed_and_kept(tmp_path, devices):
    null, _ = devices
    link = tmp_path / "report.json"
    link.symlink_to(null)
    with atomic_path(link) as tmp:
        tmp.write_text("{}")
    assert link.is_symlink() and _kind(link) == CHAR_DEVICE


def test_fifo_with_a_reader_gets_the_whole_output(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result, hung = _scenes(tmp_path, "--format", "json", "--json", str(fifo))
    reader.join(timeout=30)
    assert not hung and result.exit_code == 0, result.output
    assert json.loads(received[0]) == json.loads(result.stdout)
    assert _kind(fifo) == FIFO


def test_fifo_without_a_reader_is_exit_2_not_a_hang(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    result, hung = _scenes(tmp_path, "-o", str(fifo))
    assert not hung and result.exit_code == 2
    assert f"{fifo}: is a FIFO that no process is reading" in " ".join(result.output.split())
    assert _kind(fifo) == FIFO


@pytest.mark.parametrize("kind", ["directory", "socket", "block device"])
@pytest.mark.parametrize("option", ["-o", "--json"])
def test_directory_socket_or_disk_output_is_refused_before_any_work(tmp_path, kind, option):
    target = tmp_path / "target"
    server = None
    if kind == "directory":
        target.mkdir()
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(target))
    else:
        os.mknod(target, 0o600 | stat.S_IFBLK, os.makedev(7, 200))  # a loop device number
    try:
        result, hung = _scenes(tmp_path, option, str(target))
    finally:
        if server is not None:
            server.close()
    assert not hung and result.exit_code == 2
    assert f"{target}: is a {kind}" in " ".join(result.output.split()), result.output
    assert _entries(tmp_path) == []  # refused while parsing: nothing was built
    assert _kind(target) == kind


def test_atomic_copy_onto_a_full_device_raises_a_tool_error(tmp_path, devices):
    _, full = devices
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 100)
    with pytest.raises(ToolError, match="No space left on device"):
        atomic_copy(src, full)
    with pytest.raises(ToolError, match="No space left on device"):
        with atomic_path(full) as tmp:
            tmp.write_bytes(b"x")
    assert _kind(full) == CHAR_DEVICE
    assert not [p for p in tmp_path.iterdir() if TEMP_MARK in p.name]


def test_failed_block_leaves_the_device_untouched_and_no_temp(tmp_path, devices, monkeypatch):
    null, _ = devices
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(RuntimeError):
        with atomic_path(null) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("writer failed")
    assert _kind(null) == CHAR_DEVICE
    assert not [p for p in tmp_path.iterdir() if TEMP_MARK in p.name]


def test_symlink_to_a_file_is_written_through_and_kept(tmp_path):
    target = tmp_path / "real" / "report.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "report.json"
    link.symlink_to(target)
    with atomic_path(link) as tmp:
        tmp.write_text("new")
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real", "report.json"]


def test_a_stdout_like_link_to_a_redirected_file_is_not_replaced(tmp_path):
    """``--json /dev/stdout > report.json``: /dev/stdout links to /proc/self/fd/1, which names
    the redirected file; the link (in /dev, for every process) must survive the write."""
    redirected = tmp_path / "redirected.json"
    fd = os.open(redirected, os.O_WRONLY | os.O_CREAT, 0o644)
    stdout_link = tmp_path / "stdout"
    stdout_link.symlink_to(f"/proc/self/fd/{fd}")
    scenes = tmp_path / "scenes.npz"
    try:
        assert _scenes(tmp_path, "-o", str(scenes))[0].exit_code == 0
        result, hung = invoke(["validate", "scenes", str(scenes), "--json", str(stdout_link)])
    finally:
        os.close(fd)
    assert not hung and result.exit_code == 0, result.output
    assert stdout_link.is_symlink()
    assert json.loads(redirected.read_text())["ok"] is True
