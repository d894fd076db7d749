"""``--out`` is a new or empty directory, or a run: a folder of the user's files, a link to one
(an ``/etc``), a path below a file, a config that is not a run's or a run of another recipe is
refused with exit 2 naming what is there, and nothing is written anywhere."""

from __future__ import annotations

import os

import pytest
from reliability_runs import assert_clean, contrastive, snapshot

from uncollapse.errors import ToolError
from uncollapse.trainers.contrastive.config import ContrastiveConfig
from uncollapse.trainers.contrastive.recipe import ContrastiveRecipe
from uncollapse.trainers.engine import train


def users_folder(path):
    """A folder like /etc, or a user's own: files uncollapse did not write."""
    path.mkdir()
    (path / "hosts").write_text("127.0.0.1 localhost\n")
    (path / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return path


def test_a_folder_holding_the_users_metrics_jsonl_is_refused(run_data, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "accuracy": 0.93}\n')
    before = snapshot(out)
    result = contrastive(run_data, out)
    assert result.exit_code == 2
    assert "holds files that are not an uncollapse run's (metrics.jsonl)" in result.output
    assert_clean(result.output)
    assert snapshot(out) == before and sorted(os.listdir(out)) == ["metrics.jsonl"]


def test_a_link_to_an_etc_like_folder_is_refused_and_nothing_is_written_there(run_data,
                                                                              tmp_path):
    etc = users_folder(tmp_path / "etc")
    link = tmp_path / "out"
    link.symlink_to(etc)
    result = contrastive(run_data, link)
    assert result.exit_code == 2
    assert f"{link} (a link to {etc}): holds files that are not an uncollapse run's (hosts, " \
           "passwd)" in result.output
    assert sorted(os.listdir(etc)) == ["hosts", "passwd"]
    assert link.is_symlink()


def test_a_link_to_an_empty_folder_is_a_run_directory(run_data, tmp_path):
    target = tmp_path / "big-disk" / "run"
    target.mkdir(parents=True)
    link = tmp_path / "run"
    link.symlink_to(target)
    result = contrastive(run_data, link)
    assert result.exit_code == 0, result.output
    assert (target / "config.json").exists() and link.is_symlink()


def test_a_path_below_a_file_is_refused_naming_the_file(run_data, tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    result = contrastive(run_data, tmp_path / "notes.txt" / "run")
    assert result.exit_code == 2
    assert f"{tmp_path / 'notes.txt'} is a regular file" in result.output
    assert_clean(result.output)
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_a_dangling_link_is_refused(run_data, tmp_path):
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "nowhere")
    result = contrastive(run_data, link)
    assert result.exit_code == 2
    assert "which does not exist" in result.output
    assert not (tmp_path / "nowhere").exists()


def test_a_users_config_json_is_not_a_run(run_data, tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text('{"name": "my project"}\n')
    result = contrastive(run_data, out)
    assert result.exit_code == 2
    assert "config.json: is not the config of an uncollapse run" in result.output
    assert sorted(os.listdir(out)) == ["config.json"]


def test_a_run_of_another_recipe_is_refused_on_resume(run_data, tmp_path):
    from reliability_runs import FAST, invoke

    out = tmp_path / "run"
    assert contrastive(run_data, out).exit_code == 0
    before = snapshot(out)
    result = invoke("train", "lvm", "--sequences", run_data["sequences"], "--steps", 2,
                    "--batch-size", 16, "--out", out, "--resume", *FAST)
    assert result.exit_code == 2
    assert "holds a run of the contrastive recipe, not of lvm" in result.output
    assert snapshot(out) == before


def test_the_python_api_refuses_before_creating_anything(run_data, tmp_path):
    etc = users_folder(tmp_path / "etc")
    config = ContrastiveConfig(out=str(etc), captions=str(run_data["table"]),
                               text_features=str(run_data["text"]), steps=2, batch_size=20,
                               device="cpu", quiet=True)
    with pytest.raises(ToolError, match="holds files that are not an uncollapse run's"):
        train(ContrastiveRecipe, config)
    assert sorted(os.listdir(etc)) == ["hosts", "passwd"]
