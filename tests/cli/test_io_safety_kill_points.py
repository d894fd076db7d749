"""SIGKILL during an ``-o`` write: the destination is the old or the new file, never a mix, and
the next write to it removes what the killed process left behind.

A real subprocess writes the output with a pause before each step (tests/cli/io_safety_hooks.py);
the test kills it with SIGKILL at one step per run, checks the destination, then writes again
and checks that no temporary file remains. The fast tests kill at a subset of the steps; the
``fuzz`` ones at every step (30 of them) of an atomic copy and of ``uncollapse build ... -o``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from uncollapse.atomic import atomic_copy, temp_prefix
from uncollapse.cli import main

ROOT = Path(__file__).resolve().parents[2]
HOOKS = Path(__file__).with_name("io_safety_hooks.py")
SCENES = ["build", "scenes", "--size", "64", "--no-compress", "--quiet"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(temp_prefix(dest)))


def run_until(argv: list[str], kill_at: int | str | None,
              log: Path) -> tuple[list[str], int, int]:
    """Run the hooked writer; SIGKILL it at step ``kill_at`` (its index or name; None: let it
    finish).

    Returns the steps it reached, its exit status and its pid.
    """
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(HOOKS), str(report_w), str(go_r), *argv],
                                pass_fds=(report_w, go_r), env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
    os.close(report_w)
    os.close(go_r)
    steps: list[str] = []
    with os.fdopen(report_r) as reports:
        for line in reports:
            steps.append(line.strip())
            if kill_at in (len(steps) - 1, steps[-1]):
                os.kill(proc.pid, signal.SIGKILL)
                break
            os.write(go_w, b"g")
    os.close(go_w)
    proc.wait(timeout=120)
    return steps, proc.returncode, proc.pid


def kill_and_recover(argv, dest: Path, old: bytes, new_digest: str, kill_at: int | str,
                     log: Path, next_write) -> dict:
    """One kill point: the invariants, and what the killed process left (for the report)."""
    dest.write_bytes(old)
    steps, code, pid = run_until(argv, kill_at, log)
    assert code == -signal.SIGKILL, (steps, log.read_text())
    left = _leftovers(dest)
    state = {hashlib.sha256(old).hexdigest(): "old", new_digest: "new"}.get(_digest(dest))
    assert state is not None, f"killed at {steps[-1]}: the destination is neither file"
    # whatever is left is recognisable: the destination's name, the mark and the dead pid
    assert all(name.startswith(f"{temp_prefix(dest)}{pid}-") for name in left), left
    next_write()
    assert _leftovers(dest) == []
    assert _digest(dest) == new_digest
    return {"step": steps[-1], "left": len(left), "dest": state}


def _copy_case(tmp_path: Path):
    src = tmp_path / "new.bin"
    src.write_bytes(os.urandom(3 << 20))
    dest = tmp_path / "out.bin"
    argv = ["copy", str(src), str(dest)]
    steps, code, _ = run_until(argv, None, tmp_path / "log")
    assert code == 0 and _digest(dest) == _digest(src)
    return argv, dest, _digest(src), steps, lambda: atomic_copy(src, dest)


def test_copy_steps_are_the_ones_an_o_write_takes(tmp_path):
    _, _, _, steps, _ = _copy_case(tmp_path)
    assert steps[:2] == ["create-temp", "temp-created"]
    assert steps[2:-4] == [f"copied-part-{i}" for i in range(1, 25)]
    assert steps[-4:] == ["chmod", "fsync", "replace", "replaced"]


@pytest.mark.parametrize("step", ["create-temp", "temp-created", "copied-part-1",
                                  "copied-part-12", "fsync", "replace", "replaced"])
def test_kill_during_copy_leaves_old_or_new_and_next_write_cleans(tmp_path, step):
    argv, dest, new, steps, again = _copy_case(tmp_path)
    outcome = kill_and_recover(argv, dest, b"old complete file\n" * 1000, new, steps.index(step),
                               tmp_path / "log", again)
    expected_left = 0 if step in ("create-temp", "replaced") else 1
    assert outcome == {"step": step, "left": expected_left,
                       "dest": "new" if step == "replaced" else "old"}


def _cli_case(tmp_path: Path, num: int):
    dest = tmp_path / "scenes.npz"
    argv = [*SCENES, "--num", str(num), "--cache-dir", str(tmp_path / "cache"), "-o", str(dest)]
    first = CliRunner().invoke(main, argv)  # builds the entry (the new file); kills hit the copy
    assert first.exit_code == 0, first.output
    new = _digest(dest)

    def again():
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 0, result.output

    return ["cli", *argv], dest, new, again


def test_kill_during_build_o_copy_leaves_old_or_new_and_next_run_cleans(tmp_path):
    argv, dest, new, again = _cli_case(tmp_path, 40)
    outcome = kill_and_recover(argv, dest, b"old", new, "copied-part-12", tmp_path / "log",
                               again)
    assert outcome == {"step": "copied-part-12", "left": 1, "dest": "old"}


def _summary(what: str, outcomes: list[dict]) -> None:
    """One line for RELIABILITY.md (pytest -s shows it)."""
    print(f"\n{what}: {len(outcomes)} kill points, "
          f"{sum(o['left'] > 0 for o in outcomes)} left a temp, "
          f"destination old {sum(o['dest'] == 'old' for o in outcomes)} / "
          f"new {sum(o['dest'] == 'new' for o in outcomes)}, 0 mixed, 0 temps after the next run")


@pytest.mark.fuzz
def test_fuzz_kill_at_every_step_of_an_atomic_copy(tmp_path):
    argv, dest, new, steps, again = _copy_case(tmp_path)
    outcomes = [kill_and_recover(argv, dest, b"old" * 5000, new, i, tmp_path / "log", again)
                for i in range(len(steps))]
    _summary("atomic copy of 3 MiB", outcomes)
    assert len(outcomes) == 30
    assert [o["step"] for o in outcomes] == steps
    assert sum(o["left"] for o in outcomes) == 28  # every step between creating and renaming


@pytest.mark.fuzz
def test_fuzz_kill_at_every_step_of_build_o_on_a_16_mb_output(tmp_path):
    argv, dest, new, again = _cli_case(tmp_path, 1000)
    assert dest.stat().st_size > 16_000_000
    steps, code, _ = run_until(argv, None, tmp_path / "log")
    assert code == 0, (tmp_path / "log").read_text()
    outcomes = [kill_and_recover(argv, dest, b"old" * 5000, new, i, tmp_path / "log", again)
                for i in range(len(steps))]
    _summary("build scenes -o (16 MB)", outcomes)
    assert len(outcomes) >= 30
    assert {o["dest"] for o in outcomes} == {"old", "new"}


def test_a_full_disk_during_o_is_exit_2_with_the_old_file_kept_and_no_temp(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes the copy fail with EFBIG, as a full disk fails
    with ENOSPC: the command says so naming the destination and leaves the old file."""
    _, dest, _, _ = _cli_case(tmp_path, 40)
    dest.write_bytes(b"old")

    def limit():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    argv = [*SCENES, "--num", "40", "--cache-dir", str(tmp_path / "cache"), "-o", str(dest)]
    done = subprocess.run([sys.executable, "-m", "uncollapse", *argv], preexec_fn=limit,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"{dest}: writing the output failed (File too large); the file there is unchanged" \
        in " ".join(done.stderr.split())
    assert dest.read_bytes() == b"old" and _leftovers(dest) == []
