"""One training at a time writes a run directory: a second one is refused with exit 2 naming the
first (pid and host), and a run killed with SIGKILL leaves no lock behind."""

from __future__ import annotations

import json
import os
import signal
import socket

from reliability_runs import PausedRun, assert_clean, contrastive, contrastive_args, snapshot

from uncollapse.trainers.run_dir import RunDir
from uncollapse.trainers.run_lock import RunLock


def test_a_second_training_into_a_running_directory_is_refused_naming_the_first(run_data,
                                                                                tmp_path):
    out = tmp_path / "run"
    first = PausedRun(contrastive_args(run_data, out, "--steps", 8, "--checkpoint-every", 4))
    first.run_to("checkpoint-4")
    during = snapshot(out)
    for extra in ((), ("--resume",)):
        second = contrastive(run_data, out, *extra)
        assert second.exit_code == 2, second.output
        assert "another training is writing this run directory" in second.output
        assert f"pid {first.process.pid} on {socket.gethostname()}" in second.output
        assert_clean(second.output)
    assert snapshot(out) == during  # the refused runs wrote nothing
    code, stdout, stderr = first.go_on()
    assert code == 0, stderr
    assert json.loads(stdout)["step"] == 8
    steps = [r["step"] for r in RunDir(out).read_metrics()]
    assert steps == [2, 4, 6, 8]  # one writer: no step twice
    assert [p.name for p in RunDir(out).checkpoint_paths()] == ["step-00000008.pt",
                                                                  "step-00000004.pt"]


def test_the_lock_of_a_killed_run_does_not_stay(run_data, tmp_path):
    out = tmp_path / "run"
    first = PausedRun(contrastive_args(run_data, out, "--steps", 8, "--checkpoint-every", 4))
    first.run_to("checkpoint-4")
    code, _, _ = first.signal(signal.SIGKILL)
    assert code == -signal.SIGKILL
    owner = json.loads((out / ".run.owner").read_text())
    assert owner["pid"] == first.process.pid  # the dead run's record is still there ...
    resumed = contrastive(run_data, out, "--steps", 8, "--checkpoint-every", 4, "--resume")
    assert resumed.exit_code == 0, resumed.output  # ... and does not stop the next one
    assert json.loads(resumed.stdout)["step"] == 8


def test_a_held_lock_refuses_a_new_directory_run_too(run_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = RunLock(out)
    holder.acquire()
    try:
        result = contrastive(run_data, out)
        assert result.exit_code == 2
        assert f"pid {os.getpid()}" in result.output
        assert sorted(p.name for p in out.iterdir()) == [".run.lock", ".run.owner"]
    finally:
        holder.release()
    assert contrastive(run_data, out).exit_code == 0
