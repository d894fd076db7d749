"""Logged metrics of any framework read into curves: JSON lines, CSV, TensorBoard directories,
and ``--map`` naming a run's own columns."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from uncollapse.errors import InputError, ToolError
from uncollapse.validators.doctor.metrics_io import (
    is_loss_term,
    parse_map,
    read_metrics,
    resolve,
)


def test_json_lines_keep_non_finite_strings_and_skip_values_that_are_not_numbers(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 10, "loss": 0.5, "note": "warm-up", "monitor/findings": ["X"]},
            {"step": 20, "loss": "nan", "lr": 1e-3},
            {"step": 30, "loss": "inf", "flag": True}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    curves = read_metrics(path)
    assert sorted(curves) == ["loss", "lr"]
    loss = curves["loss"]
    assert loss.steps.tolist() == [10.0, 20.0, 30.0]
    assert loss.values[0] == 0.5 and math.isnan(loss.values[1]) and loss.values[2] == math.inf
    assert curves["lr"].steps.tolist() == [20.0]


def test_json_lines_without_a_step_number_their_rows(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"loss": 3}\n{"loss": 2}\n{"loss": 1}\n')
    assert read_metrics(path)["loss"].steps.tolist() == [0.0, 1.0, 2.0]


def test_a_line_that_is_not_json_is_refused_with_its_line_number(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2}\n{"step": 2, "loss": \n')
    with pytest.raises(InputError, match=r"metrics.jsonl, line 2: not a JSON object per line"):
        read_metrics(path)


def test_csv_empty_cells_are_not_logged_but_nan_text_is(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,train/loss,val/loss,comment\n0,1.0,,start\n1,0.8,0.9,x\n"
                    "2,nan,,y\n3,0.5,1.1,z\n")
    curves = read_metrics(path)
    assert sorted(curves) == ["train/loss", "val/loss"]  # text column skipped
    assert curves["val/loss"].steps.tolist() == [1.0, 3.0]
    assert curves["val/loss"].values.tolist() == [0.9, 1.1]
    train = curves["train/loss"]
    assert train.steps.tolist() == [0.0, 1.0, 2.0, 3.0] and math.isnan(train.values[2])


def test_csv_step_column_named_by_map_must_exist(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("it,loss\n5,1.0\n6,0.5\n")
    assert read_metrics(path, step="it")["loss"].steps.tolist() == [5.0, 6.0]
    with pytest.raises(InputError, match="no column 'iteration'.*columns are it, loss"):
        read_metrics(path, step="iteration")


def test_tensorboard_folders_become_tag_prefixes_and_resolve_to_loss_and_val_loss(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    for folder, values in (("train", [1.0, 0.5, 0.25]), ("validation", [1.1, 0.9, 1.3])):
        writer = SummaryWriter(str(tmp_path / "logs" / folder))
        for step, value in enumerate(values):
            writer.add_scalar("epoch_loss", value, step)
        writer.close()
    curves = read_metrics(tmp_path / "logs")
    assert sorted(curves) == ["train/epoch_loss", "validation/epoch_loss"]
    assert np.allclose(curves["validation/epoch_loss"].values, [1.1, 0.9, 1.3])
    assert resolve(curves, {}, "logs") == {"loss": "train/epoch_loss",
                                           "val_loss": "validation/epoch_loss"}


def test_a_directory_without_event_files_is_refused(tmp_path):
    with pytest.raises(InputError, match="without TensorBoard event files"):
        read_metrics(tmp_path)


def test_a_file_without_numbers_is_refused(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text('{"note": "nothing"}\n')
    with pytest.raises(InputError, match="holds no numeric metric"):
        read_metrics(path)


def test_map_entries_are_parsed_and_bad_ones_refused():
    assert parse_map(["loss=train/loss,val_loss=valid/loss", "step=it"]) == {
        "loss": "train/loss", "val_loss": "valid/loss", "step": "it"}
    with pytest.raises(ToolError, match="not NAME=COLUMN"):
        parse_map("loss")
    with pytest.raises(ToolError, match="names 'loss' twice"):
        parse_map("loss=a,loss=b")


def test_a_mapped_column_that_was_not_logged_names_the_metrics_that_were(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,trn,val\n0,1,1\n")
    curves = read_metrics(path)
    assert resolve(curves, {"loss": "trn"}, "log.csv")["loss"] == "trn"
    with pytest.raises(InputError, match=r"--map val_loss=valid: no metric 'valid'.*trn, val"):
        resolve(curves, {"val_loss": "valid"}, "log.csv")


@pytest.mark.parametrize("name, judged", [
    ("loss", True), ("train/loss", True), ("loss/diversity", True), ("infonce", True),
    ("reconstruction", True), ("monitor/uniformity", False), ("monitor/similarity_gap", False),
    ("lr", False), ("slot_cosine", False), ("temperature", False), ("samples_per_s", False)])
def test_loss_terms_are_the_columns_that_must_stay_at_or_above_zero(name, judged):
    assert is_loss_term(name) is judged
