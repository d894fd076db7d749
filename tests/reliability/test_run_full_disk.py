"""A full disk stops a training with exit 2 saying "no space left on device" and the path; the run
resumes once there is space, dropping a torn last line of ``metrics.jsonl`` with a warning.
The disk fills by patching the writers to fail with ENOSPC (errno 28), after half a line for
``metrics.jsonl``, as a real full disk leaves it."""

from __future__ import annotations

import errno
import json

import pytest
from reliability_runs import assert_clean, contrastive

from uncollapse.trainers import checkpoints
from uncollapse.trainers import run_dir as run_dir_module
from uncollapse.trainers.run_dir import RunDir

ARGS = ("--steps", 8, "--checkpoint-every", 4)


def no_space() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_a_checkpoint_names_the_path_and_keeps_the_older(
        run_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_write, calls = checkpoints._HashingWriter.write, {"bytes": 0, "saves": set()}

    def write(self, data):
        calls["saves"].add(id(self))
        if len(calls["saves"]) == 2:  # the second checkpoint: the disk fills half way
            raise no_space()
        return real_write(self, data)

    monkeypatch.setattr(checkpoints._HashingWriter, "write", write)
    result = contrastive(run_data, run, *ARGS)
    assert result.exit_code == 2
    assert f"{run / 'checkpoints' / 'step-00000008.pt'}: no space left on device while " \
           "writing a checkpoint" in result.output
    assert "continue with --resume" in result.output
    assert_clean(result.output)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000004.pt", "step-00000004.pt.sha256"]  # no temporary file, no half digest
    monkeypatch.undo()
    resumed = contrastive(run_data, run, *ARGS, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["step"] == 8


def test_a_full_disk_in_metrics_leaves_a_torn_line_that_resume_drops(run_data, tmp_path,
                                                                     monkeypatch):
    run = tmp_path / "run"
    lines = {"n": 0}

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            lines["n"] += 1
            if lines["n"] == 3:  # step 6, after the checkpoint of step 4
                self.fh.write(text[:len(text) // 2])
                self.fh.flush()
                raise no_space()
            return self.fh.write(text)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(run_dir_module, "open",
                        lambda *a, **k: HalfWriter(open(*a, **k)), raising=False)
    result = contrastive(run_data, run, *ARGS)
    assert result.exit_code == 2
    assert f"{run / 'metrics.jsonl'}: no space left on device while writing the metrics of " \
           "step 6" in result.output
    assert_clean(result.output)
    text = (run / "metrics.jsonl").read_text()
    assert not text.endswith("\n")  # the torn line is there, as a full disk leaves it
    monkeypatch.undo()

    with pytest.warns(RuntimeWarning, match=r"metrics.jsonl, line 3: dropped a torn last line"):
        assert [r["step"] for r in RunDir(run).read_metrics()] == [2, 4]
    resumed = contrastive(run_data, run, *ARGS, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "warning:" in resumed.stderr and "dropped a torn last line" in resumed.stderr
    assert [r["step"] for r in RunDir(run).read_metrics()] == [2, 4, 6, 8]
    assert (run / "metrics.jsonl").read_text().endswith("\n")


def test_a_bad_line_that_is_not_the_last_is_still_an_error(run_data, tmp_path):
    run = tmp_path / "run"
    assert contrastive(run_data, run, *ARGS).exit_code == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for cut in ("step-00000008.pt", "step-00000008.pt.sha256"):
        (run / "checkpoints" / cut).unlink()
    result = contrastive(run_data, run, *ARGS, "--resume")
    assert result.exit_code == 2
    assert "metrics.jsonl, line 2: not a JSON line" in result.output


def test_a_full_disk_for_config_json_names_it(run_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_write_text = type(run).write_text

    def write_text(self, *args, **kwargs):
        if ".config.json" in self.name:
            raise no_space()
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(type(run), "write_text", write_text)
    result = contrastive(run_data, run, *ARGS)
    assert result.exit_code == 2
    assert f"{run / 'config.json'}: writing the output failed (No space left on device)" \
        in result.output
    assert_clean(result.output.replace("(No space left on device)", ""))
