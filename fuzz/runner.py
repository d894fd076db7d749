"""Run a fuzz case in-process (click's CliRunner, fast) or as a real process (hangs, kills).

In-process runs are bounded by a SIGALRM watchdog that raises an exception the command cannot
catch; a command blocked inside native code (a FIFO opened by a reader written in Rust) would
not see it, so inputs that can block run as subprocesses, killed with their process group at
the timeout and limited in memory so that a hostile size cannot exhaust the machine.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from fuzz.invariants import SYSTEM_TEMP, Case, Outcome

# A RUST_BACKTRACE=1 in the environment makes polars print a Rust backtrace beside our message
# when it panics on a damaged Parquet file; the invariants judge what a user sees by default.
os.environ.pop("RUST_BACKTRACE", None)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = float(os.environ.get("FUZZ_TIMEOUT", "45"))
MEMORY_LIMIT = int(float(os.environ.get("FUZZ_MEMORY_GB", "6")) * 2**30)
# below what the compressed bombs of fuzz.mutations expand to, so they must be refused
DECOMPRESSED_LIMIT = os.environ.get("FUZZ_MAX_DECOMPRESSED", "32M")


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so that no ``except Exception`` swallows it."""


def _environment(case: Case) -> dict[str, str]:
    """The run's cache and TMPDIR live in its folder, where leftovers are looked for."""
    (case.work / SYSTEM_TEMP).mkdir(exist_ok=True)
    return {"UNCOLLAPSE_CACHE": str(case.work / "cache"), "NO_COLOR": "1", "COLUMNS": "200",
            "TQDM_DISABLE": "1", "TMPDIR": str(case.work / SYSTEM_TEMP),
            "UNCOLLAPSE_MAX_DECOMPRESSED": DECOMPRESSED_LIMIT}


def run_in_process(case: Case, timeout: float = TIMEOUT) -> Outcome:
    from click.testing import CliRunner

    from uncollapse.cli import main

    def alarm(signum, frame):
        raise Hang()

    env = _environment(case)
    previous = signal.signal(signal.SIGALRM, alarm)
    previous_tempdir, tempfile.tempdir = tempfile.tempdir, env["TMPDIR"]
    signal.setitimer(signal.ITIMER_REAL, timeout)
    start = time.monotonic()
    cwd = os.getcwd()
    try:
        os.chdir(case.work)
        result = CliRunner(env=env).invoke(main, case.args)
    except Hang:
        return Outcome(None, "", timed_out=True, seconds=time.monotonic() - start)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a BaseException (a Rust panic from polars) escaped the CLI
        return Outcome(1, "", escaped="".join(traceback.format_exception(exc)),
                       seconds=time.monotonic() - start)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        tempfile.tempdir = previous_tempdir
        os.chdir(cwd)
    escaped = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        escaped = "".join(traceback.format_exception(result.exception))
    return Outcome(result.exit_code, result.output, escaped=escaped,
                   seconds=time.monotonic() - start)


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_subprocess(case: Case, timeout: float = TIMEOUT) -> Outcome:
    env = {**os.environ, **_environment(case),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "uncollapse", *case.args], cwd=case.work,
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=_limits)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return Outcome(None, "", timed_out=True, seconds=time.monotonic() - start)
    return Outcome(process.returncode, out.decode("utf-8", "replace"),
                   seconds=time.monotonic() - start)


def run(case: Case) -> Outcome:
    return run_subprocess(case) if case.subprocess else run_in_process(case)
