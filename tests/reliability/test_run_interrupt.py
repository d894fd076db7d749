"""Ctrl-C stops a training with exit 130 and says what it left: a resumable run (after a
checkpoint) or nothing (before the first one), so the same command, or ``--resume``, runs next.
The signal is sent while the process is paused at a named moment (``train_hooks.py``)."""

from __future__ import annotations

import json
import signal

from reliability_runs import PausedRun, assert_clean, contrastive, contrastive_args

from uncollapse.trainers.run_dir import RunDir


def test_ctrl_c_before_the_first_checkpoint_leaves_nothing_and_the_rerun_works(run_data,
                                                                               tmp_path):
    out = tmp_path / "runs" / "run"
    paused = PausedRun(contrastive_args(run_data, out, "--steps", 8, "--checkpoint-every", 4))
    paused.run_to("metrics-2")
    assert (out / "config.json").exists()
    code, stdout, stderr = paused.signal(signal.SIGINT)
    assert code == 130, stderr
    assert "interrupted at step 2, before the first checkpoint: nothing to resume" in stderr
    assert "removed it" in stderr
    assert_clean(stderr)
    assert not out.exists() and (tmp_path / "runs").is_dir()
    again = contrastive(run_data, out, "--steps", 8, "--checkpoint-every", 4)
    assert again.exit_code == 0, again.output


def test_ctrl_c_in_a_directory_the_user_made_leaves_it_empty(run_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    paused = PausedRun(contrastive_args(run_data, out, "--steps", 8, "--checkpoint-every", 4))
    paused.run_to("metrics-2")
    code, _, stderr = paused.signal(signal.SIGINT)
    assert code == 130 and "left it as it was" in stderr
    assert list(out.iterdir()) == []


def test_ctrl_c_after_a_checkpoint_leaves_a_resumable_run(run_data, tmp_path):
    out = tmp_path / "run"
    args = ["--steps", 8, "--checkpoint-every", 4]
    paused = PausedRun(contrastive_args(run_data, out, *args))
    paused.run_to("metrics-6")
    code, stdout, stderr = paused.signal(signal.SIGINT)
    assert code == 130, stderr
    assert stdout == ""
    assert ("interrupted at step 6: " in stderr and "holds a resumable run (newest checkpoint "
            "step-00000004.pt); continue it with --resume" in stderr)
    assert_clean(stderr)
    resumed = contrastive(run_data, out, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["step"] == 8
    assert [r["step"] for r in RunDir(out).read_metrics()] == [2, 4, 6, 8]


def test_ctrl_c_of_a_resumed_run_keeps_it_resumable(run_data, tmp_path):
    out = tmp_path / "run"
    args = ["--steps", 8, "--checkpoint-every", 4]
    first = PausedRun(contrastive_args(run_data, out, *args))
    first.run_to("checkpoint-4")
    assert first.signal(signal.SIGKILL)[0] == -signal.SIGKILL
    resumed = PausedRun(contrastive_args(run_data, out, *args, "--resume"))
    resumed.run_to("metrics-6")
    code, _, stderr = resumed.signal(signal.SIGINT)
    assert code == 130 and "holds a resumable run (newest checkpoint step-00000004.pt)" in stderr
    assert RunDir(out).load_checkpoint()[0]["step"] == 4


def test_a_run_killed_before_its_first_checkpoint_does_not_block_the_rerun(run_data, tmp_path):
    out = tmp_path / "run"
    paused = PausedRun(contrastive_args(run_data, out, "--steps", 8, "--checkpoint-every", 4))
    paused.run_to("metrics-2")
    assert paused.signal(signal.SIGKILL)[0] == -signal.SIGKILL  # no cleanup: a power cut
    assert (out / "config.json").exists() and not RunDir(out).checkpoint_paths()
    resume = contrastive(run_data, out, "--steps", 8, "--checkpoint-every", 4, "--resume")
    assert resume.exit_code == 2
    assert "stopped before its first checkpoint, so there is nothing to resume" in resume.output
    again = contrastive(run_data, out, "--steps", 8, "--checkpoint-every", 4)
    assert again.exit_code == 0, again.output
    assert [r["step"] for r in RunDir(out).read_metrics()] == [2, 4, 6, 8]
