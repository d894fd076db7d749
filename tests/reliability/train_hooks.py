"""Run ``uncollapse`` with a pause at named moments of a training, so a test can signal it there.

    python tests/reliability/train_hooks.py REPORT_FD GO_FD train contrastive ... --out RUN

Before each line of ``metrics.jsonl`` is written (``metrics-<step>``) and after each checkpoint
is in place (``checkpoint-<step>``), the process writes the moment's name to REPORT_FD and waits
for a byte on GO_FD. The test answers until the moment it wants, then sends SIGINT or SIGKILL:
a real signal at a known point of the run, with no timing involved.
"""

from __future__ import annotations

import os
import select
import signal
import sys


def install(report_fd: int, go_fd: int) -> None:
    from uncollapse.trainers.run_dir import RunDir

    def pause(moment: str) -> None:
        os.write(report_fd, moment.encode() + b"\n")
        # wait in short selects, not one blocking read: the kernel may hand a signal to any of
        # torch's threads, and Python runs its handler only when the main thread runs again
        while not select.select([go_fd], [], [], 0.05)[0]:
            pass
        if os.read(go_fd, 1) != b"g":
            os._exit(3)

    real_append, real_save = RunDir.append_metrics, RunDir.save_checkpoint

    def append_metrics(self, record):
        pause(f"metrics-{record.get('step')}")
        return real_append(self, record)

    def save_checkpoint(self, step, state):
        path = real_save(self, step, state)
        pause(f"checkpoint-{step}")
        return path

    RunDir.append_metrics = append_metrics
    RunDir.save_checkpoint = save_checkpoint


def main(argv: list[str]) -> None:
    report_fd, go_fd, *args = argv
    # a child of a test runner may inherit SIGINT ignored; a user's shell never does that
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install(int(report_fd), int(go_fd))
    from uncollapse.cli import main as cli

    cli(args, prog_name="uncollapse")


if __name__ == "__main__":
    main(sys.argv[1:])
