"""One writer per run directory: a lock held for the whole of a training run.

The lock is an operating-system file lock (``filelock``: ``flock`` on Unix, ``msvcrt`` on
Windows) on ``RUN/.run.lock``. The system releases it when its process ends however it ends,
so a run killed with SIGKILL or by a power cut never leaves the directory locked. Beside it,
``RUN/.run.owner`` says who holds it (pid, host, start time, command), so a second training
that is refused can name the first.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout

from uncollapse.atomic import atomic_path
from uncollapse.errors import ToolError

LOCK_NAME = ".run.lock"
OWNER_NAME = ".run.owner"


class RunLocked(ToolError):
    """Another process is writing the run directory."""


class RunLock:
    """The writer's lock of one run directory (which must exist)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.owner = self.directory / OWNER_NAME
        self._lock = FileLock(str(self.path))
        self.made_files = False  # whether acquire created the lock file (a new directory)

    def acquire(self) -> None:
        """Take the lock now, or raise RunLocked naming the process that holds it."""
        self.made_files = not self.path.exists()
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise RunLocked(f"{self.directory}: another training is writing this run directory "
                            f"({self.describe_holder()}); wait for it to finish, stop it, or "
                            "choose another --out") from None
        except OSError as exc:
            raise ToolError(f"{self.directory}: cannot lock the run directory "
                            f"({exc.strerror or exc}); it must be a writable folder") from exc
        with contextlib.suppress(ToolError):  # who holds it is a courtesy, not a condition
            with atomic_path(self.owner) as tmp:
                tmp.write_text(json.dumps({
                    "pid": os.getpid(), "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
                    if sys.argv else "python"}) + "\n")

    def release(self) -> None:
        """Let go (the lock file stays: removing it would let a waiter lock a deleted file)."""
        if self._lock.is_locked:
            self._lock.release()

    def remove_files(self) -> None:
        """Release, then delete the lock and owner files if this lock made them (a run that
        leaves nothing behind); those of an earlier run stay."""
        self.release()
        if self.made_files:
            for path in (self.owner, self.path):
                path.unlink(missing_ok=True)

    def describe_holder(self) -> str:
        try:
            owner = json.loads(self.owner.read_text(encoding="utf-8"))
            return (f"pid {owner['pid']} on {owner['host']}, since {owner['started']}: "
                    f"{owner['command']}")
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that has not yet said who it is"

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
