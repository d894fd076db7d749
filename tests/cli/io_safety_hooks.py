"""Run an output write with a pause before each of its steps, so a test can SIGKILL it there.

    python tests/cli/io_safety_hooks.py REPORT_FD GO_FD copy SRC DEST
    python tests/cli/io_safety_hooks.py REPORT_FD GO_FD cli build scenes ... -o DEST

Before each step of writing an output through ``uncollapse.atomic`` (creating the temporary
file, each of ``CHUNKS`` parts of the copy, chmod, fsync, the rename, and just after it) the
process writes the step's name to REPORT_FD and waits for a byte on GO_FD. The test answers
until the step it wants, then kills the process with SIGKILL: a real kill at a known moment,
with no timing involved. The copy is split into parts only for the pauses; every other step is
the code the ``-o`` option runs.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

CHUNKS = 24


def install(report_fd: int, go_fd: int) -> None:
    import uncollapse.atomic as atomic

    writing = {"on": False}

    def pause(step: str) -> None:
        os.write(report_fd, step.encode() + b"\n")
        if os.read(go_fd, 1) != b"g":
            os._exit(3)

    real_create = atomic._create_temp

    def create_temp(directory, dest, suffix):
        pause("create-temp")
        path = real_create(directory, dest, suffix)
        writing["on"] = True
        pause("temp-created")
        return path

    real_copyfile = shutil.copyfile

    def copyfile(src, dst, **kwargs):
        if atomic.TEMP_MARK not in Path(dst).name:
            return real_copyfile(src, dst, **kwargs)
        step = max(1, -(-os.path.getsize(src) // CHUNKS))
        with open(src, "rb") as source, open(dst, "wb") as target:
            part = 0
            while chunk := source.read(step):
                target.write(chunk)
                target.flush()
                part += 1
                pause(f"copied-part-{part}")
        return dst

    def paused(name):
        real = getattr(os, name)

        def call(*args, **kwargs):
            if writing["on"]:
                pause(name)
            result = real(*args, **kwargs)
            if writing["on"] and name == "replace":
                writing["on"] = False
                pause("replaced")
            return result

        return call

    atomic._create_temp = create_temp
    shutil.copyfile = copyfile
    for name in ("chmod", "fsync", "replace"):
        setattr(os, name, paused(name))


def main(argv: list[str]) -> None:
    report_fd, go_fd, mode, *rest = argv
    install(int(report_fd), int(go_fd))
    if mode == "copy":
        from uncollapse.atomic import atomic_copy

        atomic_copy(*rest)
    else:
        from uncollapse.cli import main as cli

        cli(rest, prog_name="uncollapse")


if __name__ == "__main__":
    main(sys.argv[1:])
