"""Inter-process file locks that keep builds and ``cache clear`` apart.

Exclusive locks are ``filelock``'s descriptor locks (``flock`` on Unix, ``LockFileEx`` on
Windows); a shared lock is ``flock(LOCK_SH)`` where ``fcntl`` exists, and elsewhere an exclusive
lock that the holds of one process share (readers in other processes then take turns). Every
one is an operating-system lock, released when its process ends however it ends, so a crashed
build or reader never leaves an entry locked.

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
import os
import time
from collections import Counter
from pathlib import Path

from filelock import lock_descriptor

try:
    import fcntl
except ImportError:  # Windows: no shared flock; see SharedHold
    fcntl = None

_HELD_HERE: Counter = Counter()  # use-lock paths this process holds, with how many holds
_SHARED_FDS: dict[str, int] = {}  # without fcntl: the one locked descriptor of each held path
_EXCLUSIVE, _SHARED = "exclusive", "shared"
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive lock on ``path`` for the block; other processes wait."""
    fd = _lock(path, _EXCLUSIVE)
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class SharedHold:
    """A shared lock on a file, held until ``release()`` or until the object is collected.

    Without ``fcntl`` (Windows) the lock is exclusive between processes, and the holds of one
    process share its descriptor, released with the last of them.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(Path(path).absolute())
        if fcntl is not None:
            self.fd: int | None = _lock(path, _SHARED)
        else:
            if self.path not in _SHARED_FDS:
                _SHARED_FDS[self.path] = _lock(path, _EXCLUSIVE)
            self.fd = _SHARED_FDS[self.path]
        _HELD_HERE[self.path] += 1

    def release(self) -> None:
        if self.fd is not None:
            _HELD_HERE[self.path] -= 1
            if fcntl is not None:
                os.close(self.fd)
            elif _HELD_HERE[self.path] == 0:
                os.close(_SHARED_FDS.pop(self.path))
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
            fd = _lock(path, _EXCLUSIVE, blocking=False)
            if fd is None:
                yield False
                return
            fds.append(fd)
        yield True
    finally:
        for fd in fds:
            os.close(fd)


def _lock(path: str | os.PathLike, mode: str, *, blocking: bool = True) -> int | None:
    """A descriptor of ``path`` locked in ``mode`` (exclusive or shared), the path still naming
    the locked file; None when not ``blocking`` and someone else holds it."""
    while True:
        fd = _open(path)
        try:
            if mode == _SHARED:
                fcntl.flock(fd, fcntl.LOCK_SH)
            elif not lock_descriptor(fd, blocking=blocking):
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
            return os.open(path, _OPEN_FLAGS, 0o666)
        except FileNotFoundError:
            attempts += 1
            if attempts >= 100:
                raise
