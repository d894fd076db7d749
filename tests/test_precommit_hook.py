"""The pre-commit hooks of .pre-commit-hooks.yaml, run by the real pre-commit in scratch git
repositories, and the GitHub Actions workflow of docs/ci.md, run step by step.

The hook repository is a throwaway git repository holding this checkout's working tree (the
package, pyproject.toml and the hook file, committed there), so uncommitted changes are what
is tested. pre-commit installs the package into its own environment from PyPI: the core
install, without torch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"
HOOK_REPO_FILES = ("uncollapse", "pyproject.toml", "README.md", "LICENSE",
                   ".pre-commit-hooks.yaml")
WORKFLOW = ROOT / "docs" / "examples" / "validate-datasets.yml"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com",
                           "-c", "commit.gpgsign=false", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory) -> tuple[Path, str]:
    """A git repository of this checkout's working tree; returns its path and commit."""
    repo = tmp_path_factory.mktemp("hook-repo")
    for name in HOOK_REPO_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, repo / name)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "hooks")
    return repo, _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory) -> Path:
    """pre-commit's environments, shared by this module's runs (installed once)."""
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    """The bundled COCO table built through the CLI, and a copy whose match_id is the row."""
    root = tmp_path_factory.mktemp("tables")
    good = root / "good.parquet"
    subprocess.run([sys.executable, "-m", "uncollapse", "build", "captions", str(COCO),
                    "--cache-dir", str(root / "cache"), "--quiet", "-o", str(good)],
                   check=True, capture_output=True)
    broken = root / "broken.parquet"
    table = pl.read_parquet(good)
    table.with_columns(match_id=pl.int_range(pl.len(), dtype=pl.Int64)).write_parquet(broken)
    return {"good": good, "broken": broken}


def _run_hooks(tmp_path: Path, hook_repo, pre_commit_home: Path, hooks: list[dict],
               files: dict[str, Path]) -> subprocess.CompletedProcess:
    """Commit ``files`` (name in the project -> source) to a new project whose
    .pre-commit-config.yaml uses ``hooks`` of the hook repository, and run them."""
    repo, rev = hook_repo
    project = tmp_path / "project"
    project.mkdir()
    _git(project, "init", "-q")
    for name, source in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, project / name)
    config = {"repos": [{"repo": str(repo), "rev": rev, "hooks": hooks}]}
    (project / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    _git(project, "add", "-A")
    env = {**os.environ, "PRE_COMMIT_HOME": str(pre_commit_home), "PRE_COMMIT_COLOR": "never"}
    return subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=900)


def test_caption_hook_fails_with_annotations_on_row_number_match_ids(
        tmp_path, hook_repo, pre_commit_home, tables):
    result = _run_hooks(tmp_path, hook_repo, pre_commit_home,
                        [{"id": "uncollapse-validate-captions"}],
                        {"data/captions.parquet": tables["broken"]})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "uncollapse validate captions" in output and "Failed" in output
    assert "::error file=data/captions.parquet,title=GROUPS_ALL_UNIQUE::" in output
    assert "exit code: 1" in output


def test_caption_hook_passes_on_the_bundled_coco_table(tmp_path, hook_repo, pre_commit_home,
                                                       tables):
    result = _run_hooks(tmp_path, hook_repo, pre_commit_home,
                        [{"id": "uncollapse-validate-captions"}],
                        {"data/captions.parquet": tables["good"]})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "uncollapse validate captions" in output and "Passed" in output
    assert "::error" not in output


def test_caption_hook_checks_each_table_with_the_options_given(tmp_path, hook_repo,
                                                               pre_commit_home, tables):
    # COCO has images with 6 captions, so --group-size 5 --strict fails on the good table
    # too; the broken table fails for its own reason; a table whose name does not match the
    # hook's file pattern is not read
    hook = {"id": "uncollapse-validate-captions", "args": ["--group-size", "5", "--strict"]}
    result = _run_hooks(tmp_path, hook_repo, pre_commit_home, [hook],
                        {"captions_train.parquet": tables["good"],
                         "val/captions_val.parquet": tables["broken"],
                         "other.parquet": tables["broken"]})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    # --strict makes warnings failures, annotated as errors
    assert "::error file=captions_train.parquet,title=GROUP_SIZE_OUT_OF_RANGE::" in output
    assert "::error file=val/captions_val.parquet,title=GROUPS_ALL_UNIQUE::" in output
    assert "other.parquet" not in output


def test_generic_hook_runs_a_validate_command_on_a_dataset_path(tmp_path, hook_repo,
                                                                pre_commit_home):
    broken = tmp_path / "scenes.npz"
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    masks = np.zeros((2, 8, 8), dtype=np.uint8)
    masks[:, :4, :4] = 1
    np.savez(broken, images=images, masks=masks, num_objects=np.array([1, 2], dtype=np.int8))
    hook = {"id": "uncollapse", "files": r"^data/scenes\.npz$",
            "args": ["validate", "scenes", "data/scenes.npz", "--format", "github"]}
    result = _run_hooks(tmp_path, hook_repo, pre_commit_home, [hook],
                        {"data/scenes.npz": broken})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "::error file=data/scenes.npz,title=SCENE_OBJECT_INVISIBLE::" in output


def _workflow_commands() -> list[str]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["validate"]["steps"]
    return [step["run"] for step in steps if "uncollapse validate" in step.get("run", "")]


def test_docs_show_the_workflow_file_as_it_is():
    docs = (ROOT / "docs" / "ci.md").read_text()
    assert WORKFLOW.read_text() in docs
    assert (ROOT / ".pre-commit-hooks.yaml").exists()


@pytest.mark.parametrize(("table", "exit_code"), [("good", 0), ("broken", 1)])
def test_workflow_validate_step_annotates_a_broken_table(tmp_path, tables, table, exit_code):
    (tmp_path / "data").mkdir()
    shutil.copy2(tables[table], tmp_path / "data" / "captions.parquet")
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    commands = _workflow_commands()
    assert commands, "the workflow has no uncollapse validate step"
    for command in commands:
        result = subprocess.run(["bash", "-e", "-c", command], cwd=tmp_path, env=env,
                                capture_output=True, text=True)
        assert result.returncode == exit_code, result.stdout + result.stderr
        assert ("::error file=data/captions.parquet,title=GROUPS_ALL_UNIQUE::" in
                result.stdout) == (exit_code == 1)
