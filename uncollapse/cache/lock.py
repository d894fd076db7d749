"""Inter-process file locks (POSIX ``flock``) that keep builds and ``cache clear`` apart.

Each entry key has two lock files beside its entry: ``<key>.lock``, held exclusively while the
entry is checked, built or replaced, and ``<key>.use``, held shared by every process that still
reads the entry (a build that got it, until it has copied its output). ``cache clear`` takes
both without waiting and skips the entry when either is held, so it never removes the
temporary directory of a build in progress nor an entry someone is reading.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive lock on ``path`` for the block; other processes wait."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class SharedHold:
    """A shared lock on a file, held until ``release()`` or until the object is collected."""

    def __init__(self, path: str | os.PathLike):
        self.fd: int | None = _open(path)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self):
        self.release()


@contextlib.contextmanager
def try_exclusive(*paths: str | os.PathLike):
    """Yield True holding exclusive locks on all ``paths``, or False (holding none) when any
    of them is held by someone else. Never waits."""
    fds: list[int] = []
    try:
        for path in paths:
            fd = _open(path)
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        yield True
    finally:
        for fd in fds:
            os.close(fd)


def _open(path: str | os.PathLike) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
