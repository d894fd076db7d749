"""Write outputs so that a crash never leaves a half-written file at the destination.

A regular destination is written through a temporary file beside it, renamed over it only when
the write succeeded. The temporary file is named ``.<name>.uncollapse-tmp-<pid>-<host>-<random>``
(``<host>``: 8 hex digits of the host name's hash), so a process killed mid-write (SIGKILL, power
loss) leaves something recognisable, and the next write to the same destination removes it once
its owner is gone (or it is older than a day). The pid is only checked on its own host: on a
shared file system, another machine's writer keeps its temp until it is a day old.
A character device (``/dev/null``) or a FIFO is written in place, never renamed over: renaming
would replace the device with a regular file. A directory, block device or socket is refused.
A symlink is written through: the file it names is replaced and the link stays.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

from uncollapse.errors import ToolError
from uncollapse.paths import CHAR_DEVICE, FIFO, check_output, file_kind

__all__ = [
    "HOST_TAG", "STALE_AFTER_S", "TEMP_MARK", "atomic_copy", "atomic_path", "hold_fifo",
    "release_held", "remove_stale_temps", "temp_prefix", "write_in_place",
]

TEMP_MARK = ".uncollapse-tmp-"
STALE_AFTER_S = 24 * 3600
"""A temporary file whose owner process still runs is left alone for this long (a pid can be
reused by an unrelated process); one whose owner is gone is removed at once."""
_NAME_KEEP = 120  # characters of the destination's name kept in a temp name (NAME_MAX is 255)
_CHUNK = 1 << 20
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
"""This host in temp names: a pid is only meaningful on the host that wrote it."""
_WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
"""Errors that say the destination's file system cannot take the output (not a bad input)."""


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path to write; put its content at ``dest`` only if the block succeeds.

    For a regular (or missing) destination the temporary file lives in the destination's
    directory so the final ``os.replace`` is an atomic rename on the same file system. For a
    character device or FIFO the content is written into it in place once the block succeeds.
    ``suffix`` ends the temporary name, for writers (like ``np.savez``) that append an
    extension when it is missing.
    """
    dest = Path(dest)
    kind = check_output(dest)
    if kind in (CHAR_DEVICE, FIFO):
        tmp = _create_temp(Path(tempfile.gettempdir()), dest, suffix)
        try:
            yield tmp
            write_in_place(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return
    # rename over what a symlink names, never over the link: /dev/stdout redirected to a file
    # is a link in /dev, and replacing it would break /dev/stdout for every process
    dest = Path(os.path.realpath(dest))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolError(f"{dest}: cannot create its folder {dest.parent} ({exc.strerror}); "
                        "give a path in a writable folder") from exc
    remove_stale_temps(dest)
    tmp = _create_temp(dest.parent, dest, suffix)
    try:
        yield tmp
        # a new temp is 0600; give the result the mode a plain write would (or the old file's)
        os.chmod(tmp, _mode_for(dest))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        if exc.errno not in _WRITE_FAILURES:
            raise
        raise ToolError(f"{dest}: writing the output failed ({exc.strerror}); the file there "
                        "is unchanged. Free space or give another path") from exc
    finally:
        tmp.unlink(missing_ok=True)


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dest`` atomically (the destination is complete or untouched); a
    character device or FIFO destination is written in place."""
    if check_output(dest) in (CHAR_DEVICE, FIFO):
        write_in_place(src, dest)
        return Path(dest)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


def temp_prefix(dest: str | os.PathLike) -> str:
    """The start of every temporary file name this module uses for ``dest``."""
    return f".{Path(dest).name[:_NAME_KEEP]}{TEMP_MARK}"


def remove_stale_temps(dest: str | os.PathLike, *, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove temporary files left beside ``dest`` by writers that died; return them.

    A temp is stale when the process named in it no longer runs on this host, or when it has
    not been modified for ``max_age_s`` seconds. Files of live writers, and fresh ones of
    other hosts (whose processes this one cannot see), are kept.
    """
    dest = Path(dest)
    prefix = temp_prefix(dest)
    removed = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = re.match(r"(\d+)-([0-9a-f]{8})-", entry.name[len(prefix):]) \
            if entry.name.startswith(prefix) else None
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        owner_may_run = match.group(2) != HOST_TAG or _process_alive(int(match.group(1)))
        if owner_may_run and now - info.st_mtime < max_age_s:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def write_in_place(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Write the bytes of ``src`` into the character device or FIFO ``dest``.

    The device is opened without creating or truncating anything, and checked again after
    opening, so a path that became a regular file meanwhile is not written. A FIFO with no
    reader is refused at once instead of waiting for one. Errors (``/dev/full``: no space
    left) become a ToolError naming ``dest``.
    """
    fd = _take_held(dest)
    if fd is None:
        fd = _open_in_place(dest)
    try:
        kind = file_kind(os.fstat(fd).st_mode)
        if kind not in (CHAR_DEVICE, FIFO):
            raise ToolError(f"{dest}: became a {kind} while the output was written; nothing "
                            "was written there, run again")
        os.set_blocking(fd, True)
        with open(src, "rb") as source:
            while chunk := source.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
    except OSError as exc:
        raise ToolError(f"{dest}: writing the output failed ({exc.strerror or exc}); give "
                        "another path") from exc
    finally:
        os.close(fd)


def _open_in_place(dest: str | os.PathLike) -> int:
    """A write descriptor on the device or FIFO ``dest``; a FIFO nobody reads is refused."""
    try:
        return os.open(dest, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise ToolError(f"{dest}: is a FIFO that no process is reading; start the reader "
                            "first or give a file path") from exc
        raise ToolError(f"{dest}: cannot be opened for writing ({exc.strerror})") from exc


_HELD: dict[tuple[int, int], int] = {}
"""FIFOs opened by :func:`hold_fifo`, by (device, inode), waiting for their output."""


def hold_fifo(dest: str | os.PathLike, *, wait_s: float = 1.0) -> None:
    """Open the FIFO ``dest`` for writing now and keep it open for :func:`write_in_place`.

    A command checks its FIFO outputs before any work, so a run whose ``--json`` FIFO has no
    reader stops before it writes ``-o``. Opening and closing again would not do: the reader
    would see end-of-file and leave. A reader started together with the command (``cmd & cat
    fifo``) gets ``wait_s`` seconds to open its end. Release with :func:`release_held`.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = _open_in_place(dest)
            break
        except ToolError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
    key = _identity(os.fstat(fd))
    if key in _HELD:
        os.close(fd)
    else:
        _HELD[key] = fd


def release_held() -> None:
    """Close the FIFOs held but not written (the run stopped first); their readers see EOF."""
    while _HELD:
        os.close(_HELD.popitem()[1])


def _take_held(dest: str | os.PathLike) -> int | None:
    try:
        return _HELD.pop(_identity(os.stat(dest)), None)
    except OSError:
        return None


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _create_temp(directory: Path, dest: Path, suffix: str | None) -> Path:
    for _ in range(100):
        name = f"{temp_prefix(dest)}{os.getpid()}-{HOST_TAG}-{secrets.token_hex(4)}{suffix or ''}"
        path = directory / name
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        except OSError as exc:
            raise ToolError(f"{dest}: cannot write a file in {directory} ({exc.strerror}); "
                            "give a path in a writable folder") from exc
        return path
    raise ToolError(f"{directory}: could not create a temporary file for {dest.name}")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):
        return False
    return pid > 0


def _mode_for(dest: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(dest).st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask
