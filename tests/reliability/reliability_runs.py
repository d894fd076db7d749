"""Small training runs for the run-directory tests, through the command line as a user runs it,
in process (``invoke``) or as a real process paused at named moments (``PausedRun``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from uncollapse.cli import main

ROOT = Path(__file__).resolve().parents[2]
HOOKS = Path(__file__).resolve().parent / "train_hooks.py"
FAST = ["--device", "cpu", "--quiet", "--hidden", "32", "--warmup-steps", "2", "--log-every",
        "2", "--monitor-warmup", "1000"]
RAW = ("Traceback", "KeyError", "TypeError", "RuntimeError", "LinAlgError", "NotADirectoryError",
       "Errno", "inline_container", "Aborted!")


STARTED: list[subprocess.Popen] = []
"""Every process these helpers started; the conftest kills those still running after a test."""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def contrastive_args(data: dict, out, *extra) -> list[str]:
    return ["train", "contrastive", "--captions", str(data["table"]), "--text-features",
            str(data["text"]), "--steps", "6", "--batch-size", "20", "--out", str(out), *FAST,
            *map(str, extra)]


def contrastive(data: dict, out, *extra):
    return invoke(*contrastive_args(data, out, *extra))


def snapshot(directory: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file below ``directory`` (links as their target),
    but for the lock's owner file, which every training that locks the directory rewrites."""
    files = {}
    for path in sorted(Path(directory).rglob("*")):
        if path.name == ".run.owner":
            continue
        if path.is_symlink():
            files[str(path.relative_to(directory))] = "-> " + os.readlink(path)
        elif path.is_file():
            files[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def assert_clean(output: str) -> None:
    """No traceback and no raw exception name in a command's output."""
    for word in RAW:
        assert word not in output, (word, output)


class PausedRun:
    """``uncollapse ARGS`` in a real process that stops at each moment of ``train_hooks.py``."""

    def __init__(self, args: list[str]):
        report_r, report_w = os.pipe()
        go_r, go_w = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, str(HOOKS), str(report_w), str(go_r), *args], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, pass_fds=(report_w, go_r),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        STARTED.append(self.process)
        os.close(report_w)
        os.close(go_r)
        self.reports = os.fdopen(report_r, "r")
        self.go_fd = go_w
        self.seen: list[str] = []

    def run_to(self, moment: str) -> None:
        """Let the run go on until it pauses at ``moment`` (it is paused there on return)."""
        if self.seen and self.seen[-1] == moment:
            return
        if self.seen:
            os.write(self.go_fd, b"g")
        while True:
            line = self.reports.readline()
            if not line:
                out, err = self.process.communicate(timeout=120)
                raise AssertionError(f"the run ended before {moment}: {out}\n{err}")
            self.seen.append(line.strip())
            if self.seen[-1] == moment:
                return
            os.write(self.go_fd, b"g")

    def go_on(self, timeout: float = 300) -> tuple[int, str, str]:
        """Answer every pause until the run ends."""
        os.write(self.go_fd, b"g")
        while True:
            line = self.reports.readline()
            if not line:
                break
            self.seen.append(line.strip())
            os.write(self.go_fd, b"g")
        return self._wait(timeout)

    def signal(self, sig: int, timeout: float = 300) -> tuple[int, str, str]:
        """Send ``sig`` while the run is paused; its exit code, stdout and stderr."""
        self.process.send_signal(sig)
        return self._wait(timeout)

    def _wait(self, timeout: float) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        self.reports.close()
        if self.go_fd is not None:
            os.close(self.go_fd)
            self.go_fd = None
        return self.process.returncode, out, err


class ServerProcess:
    """``uncollapse serve RUN --port 0`` as a real process: its URL, once it listens, and every
    line it printed (stderr)."""

    def __init__(self, run_dir, *extra, env: dict | None = None, timeout: float = 300):
        import threading
        import time

        self.process = subprocess.Popen(
            [sys.executable, "-m", "uncollapse", "serve", str(run_dir), "--port", "0",
             "--device", "cpu", *map(str, extra)], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        STARTED.append(self.process)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not any("listening on http://" in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._reader.join(timeout=10)
                raise AssertionError("the server did not start:\n" + "".join(self.lines))
            time.sleep(0.05)
        url = next(line for line in self.lines if "listening on" in line).split()[2]
        port = url.rsplit(":", 1)[1]
        self.url = f"http://127.0.0.1:{port}"
        self.port = int(port)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def stop(self, sig: int = 2, timeout: float = 60) -> int:
        """Send ``sig`` (SIGINT by default); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)
