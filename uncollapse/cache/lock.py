"""Inter-process file locks (POSIX ``flock``) that keep builds and ``cache clear`` apart.

Each entry key has two lock files beside its entry: ``<key>.lock``, held exclusively while the
entry is checked, built or replaced, and ``<key>.use``, held shared by every process that still
reads the entry (a build that got it, until it has copied its output). ``cache clear`` takes
both without waiting and skips the entry when either is held, so it never removes the
temporary directory of a build in progress nor an entry someone is reading. A build that must
replace an entry (``--rebuild``, or a bad entry) waits, for a bounded time, until no other
process reads it; a use lock is only ever taken under the build lock, so no new reader can
appear while it waits.

``cache clear`` deletes the lock files of the entries it removes, while it holds them. A
process that opened a lock file just before it was deleted would then lock a file nobody else
can find, so every lock is taken the same way: lock the open file, then check that the path
still names that very file; if not, open the path again and retry.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections import Counter
from pathlib import Path

_HELD_HERE: Counter = Counter()  # use-lock paths this process holds, with how many holds


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive lock on ``path`` for the block; other processes wait."""
    fd = _lock(path, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class SharedHold:
    """A shared lock on a file, held until ``release()`` or until the object is collected."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(Path(path).absolute())
        self.fd: int | None = _lock(path, fcntl.LOCK_SH)
        _HELD_HERE[self.path] += 1

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            _HELD_HERE[self.path] -= 1

    def __del__(self):
        self.release()


@contextlib.contextmanager
def try_exclusive(*paths: str | os.PathLike):
    """Yield True holding exclusive locks on all ``paths``, or False (holding none) when any
    of them is held by someone else. Never waits."""
    fds: list[int] = []
    try:
        for path in paths:
            fd = _lock(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if fd is None:
                yield False
                return
            fds.append(fd)
        yield True
    finally:
        for fd in fds:
            os.close(fd)


def _lock(path: str | os.PathLike, operation: int) -> int | None:
    """A descriptor of ``path`` locked with ``operation``, the path still naming the locked
    file; None when ``LOCK_NB`` is given and someone else holds it."""
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _names(path, fd):
            return fd
        os.close(fd)  # deleted (or replaced) after it was opened: lock what the path names now


def _names(path: str | os.PathLike, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (held.st_ino, held.st_dev)


def remove_lock_file(path: str | os.PathLike) -> None:
    """Delete a lock file that this process holds exclusively (a process waiting on it finds
    it gone and locks the path afresh)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def wait_for_readers(path: str | os.PathLike, timeout: float) -> bool:
    """Wait until no other process holds a shared lock on ``path`` (True), or ``timeout``
    seconds (False). Holds of this very process are not waited for: they could never end."""
    if _HELD_HERE[str(Path(path).absolute())] > 0:
        return True
    deadline = time.monotonic() + timeout
    while True:
        with try_exclusive(path) as free:
            if free:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _open(path: str | os.PathLike) -> int:
    """Open (create) a lock file, and its folders. ``cache clear`` removes the folders it
    leaves empty, and may do so between our mkdir and open: then both are tried again."""
    path = Path(path)
    attempts = 0
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:
            attempts += 1
            if attempts >= 100:
                raise
