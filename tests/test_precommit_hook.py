"""The pre-commit recipes of docs/ci.md and the README, run by the real pre-commit in scratch
git repositories, and the GitHub Actions workflow of docs/ci.md, checked against a schema and
run step by step.

The local-hook recipe runs exactly as written (it calls the installed `uncollapse`). The hook
repository for the other recipe is a throwaway git repository holding this checkout's working
tree (the package, pyproject.toml and the hook file, committed there), so uncommitted changes
are what is tested; the documented `repo` and `rev` placeholders are replaced by its path and
commit. pre-commit installs the package into its own environment from the package index: the
core install, without torch.
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
from readme_blocks import readme_blocks

ROOT = Path(__file__).resolve().parents[1]
COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"
HOOK_REPO_FILES = ("uncollapse", "pyproject.toml", "README.md", "LICENSE",
                   ".pre-commit-hooks.yaml")
WORKFLOW = ROOT / "docs" / "examples" / "validate-datasets.yml"
CI_PAGE = ROOT / "docs" / "ci.md"
REPO_PLACEHOLDER = "https://github.com/OWNER/uncollapse"
REV_PLACEHOLDER = "FULL_COMMIT_SHA"
BIN = Path(sys.executable).parent


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
    config = {"repos": [{"repo": str(repo), "rev": rev, "hooks": hooks}]}
    return _run_config(tmp_path, pre_commit_home, yaml.safe_dump(config), files)


def _run_config(tmp_path: Path, pre_commit_home: Path, config: str,
                files: dict[str, Path]) -> subprocess.CompletedProcess:
    """Commit ``files`` to a new project with ``config`` as its .pre-commit-config.yaml and
    run pre-commit on every file. The installed `uncollapse` (this checkout's) is on PATH."""
    project = tmp_path / "project"
    project.mkdir(parents=True)
    _git(project, "init", "-q")
    for name, source in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, project / name)
    (project / ".pre-commit-config.yaml").write_text(config)
    _git(project, "add", "-A")
    env = {**os.environ, "PRE_COMMIT_HOME": str(pre_commit_home), "PRE_COMMIT_COLOR": "never",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
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
    docs = CI_PAGE.read_text()
    assert '```yaml\n--8<-- "docs/examples/validate-datasets.yml"\n```' in docs
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


# The recipes of docs/ci.md and the README --------------------------------------------------

def _documented_configs(page: Path) -> list[str]:
    """The complete .pre-commit-config.yaml files a page shows (those that start with a
    `repos:` key), as written."""
    return [b.text for b in readme_blocks(page)
            if b.lang == "yaml" and "repos" in (yaml.safe_load(b.text) or {})]


def _invisible_scenes(folder: Path) -> Path:
    """A scene file whose second scene claims two objects but shows one."""
    path = folder / "scenes.npz"
    masks = np.zeros((2, 8, 8), dtype=np.uint8)
    masks[:, :4, :4] = 1
    np.savez(path, images=np.zeros((2, 8, 8, 3), dtype=np.uint8), masks=masks,
             num_objects=np.array([1, 2], dtype=np.int8))
    return path


def test_the_docs_show_a_local_config_and_a_config_of_this_repository():
    local, remote = _documented_configs(CI_PAGE)
    assert yaml.safe_load(local)["repos"][0]["repo"] == "local"
    entry = yaml.safe_load(remote)["repos"][0]
    # the only two values a user sets; everything else runs as written
    assert (entry["repo"], entry["rev"]) == (REPO_PLACEHOLDER, REV_PLACEHOLDER)
    (readme,) = _documented_configs(ROOT / "README.md")
    assert yaml.safe_load(readme)["repos"][0]["repo"] == "local"


@pytest.mark.parametrize("page", ["docs/ci.md", "README.md"])
def test_local_hooks_run_as_written(page, tmp_path, pre_commit_home, tables):
    config = _documented_configs(ROOT / page)[0]
    broken = _run_config(tmp_path / "broken", pre_commit_home, config,
                         {"data/captions.parquet": tables["broken"],
                          "data/scenes.npz": _invisible_scenes(tmp_path)})
    output = broken.stdout + broken.stderr
    assert broken.returncode == 1, output
    assert "::error file=data/captions.parquet,title=GROUPS_ALL_UNIQUE::" in output
    assert ("::error file=data/scenes.npz,title=SCENE_OBJECT_INVISIBLE::" in output) == (
        page == "docs/ci.md")
    good = _run_config(tmp_path / "good", pre_commit_home, config,
                       {"data/captions.parquet": tables["good"]})
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Passed" in good.stdout and "::error" not in good.stdout


def test_hooks_of_this_repository_run_at_a_commit(tmp_path, hook_repo, pre_commit_home, tables):
    repo, rev = hook_repo
    config = _documented_configs(CI_PAGE)[1]
    config = config.replace(REPO_PLACEHOLDER, str(repo)).replace(REV_PLACEHOLDER, rev)
    result = _run_config(tmp_path, pre_commit_home, config,
                         {"captions.parquet": tables["broken"],
                          "data/scenes.npz": _invisible_scenes(tmp_path)})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "::error file=captions.parquet,title=GROUPS_ALL_UNIQUE::" in output
    assert "::error file=data/scenes.npz,title=SCENE_OBJECT_INVISIBLE::" in output


# The workflow against a schema of GitHub's workflow syntax ----------------------------------

# Written from GitHub's documentation of the workflow syntax (not the full schema): the keys a
# workflow, a job and a step may have, the events `on` may name, `runs-on` and `steps`
# required, every step either `uses` an action (owner/repo@ref) or `run`s a command, never both.
_STEP_KEYS = ["id", "if", "name", "uses", "run", "with", "env", "shell", "working-directory",
              "continue-on-error", "timeout-minutes"]
_EVENTS = ["push", "pull_request", "pull_request_target", "workflow_dispatch", "schedule",
           "release", "workflow_call", "merge_group"]
_SCALAR = {"type": ["string", "number", "boolean"]}
WORKFLOW_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["on", "jobs"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "run-name": {"type": "string"},
        "on": {"oneOf": [
            {"type": "string", "enum": _EVENTS},
            {"type": "array", "items": {"type": "string", "enum": _EVENTS}},
            {"type": "object", "propertyNames": {"enum": _EVENTS},
             "additionalProperties": {"type": ["object", "null", "array"]}}]},
        "env": {"type": "object", "additionalProperties": _SCALAR},
        "permissions": {"type": ["string", "object"]},
        "concurrency": {"type": ["string", "object"]},
        "jobs": {
            "type": "object", "minProperties": 1,
            "propertyNames": {"pattern": "^[_a-zA-Z][a-zA-Z0-9_-]*$"},
            "additionalProperties": {
                "type": "object",
                "required": ["runs-on", "steps"],
                "properties": {
                    "name": {"type": "string"},
                    "runs-on": {"type": ["string", "array"]},
                    "needs": {"type": ["string", "array"]},
                    "if": {"type": "string"},
                    "env": {"type": "object", "additionalProperties": _SCALAR},
                    "timeout-minutes": {"type": "number"},
                    "strategy": {"type": "object"},
                    "steps": {"type": "array", "minItems": 1, "items": {
                        "type": "object",
                        "propertyNames": {"enum": _STEP_KEYS},
                        "oneOf": [{"required": ["uses"], "not": {"required": ["run"]}},
                                  {"required": ["run"], "not": {"required": ["uses"]}}],
                        "properties": {
                            "uses": {"type": "string",
                                     "pattern": r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[\w./-]+$"},
                            "run": {"type": "string", "minLength": 1},
                            "with": {"type": "object", "additionalProperties": _SCALAR},
                            "name": {"type": "string"},
                        }}},
                },
                "additionalProperties": False,
            }},
    },
}


def _load_workflow(text: str) -> dict:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as the string "on"
    loaded = yaml.safe_load(text)
    if True in loaded:
        loaded["on"] = loaded.pop(True)
    return loaded


def test_workflow_passes_the_workflow_schema():
    import jsonschema

    jsonschema.validate(_load_workflow(WORKFLOW.read_text()), WORKFLOW_SCHEMA)


@pytest.mark.parametrize("mistake", [
    "      - run: pip install x\n        uses: actions/checkout@v4\n",   # both kinds in a step
    "      - uses: actions/checkout\n",                                 # no @ref
    "      - run: x\n        shel: bash\n",                             # a misspelt key
])
def test_the_workflow_schema_rejects_a_broken_step(mistake):
    import jsonschema

    text = WORKFLOW.read_text().rstrip("\n") + "\n" + mistake
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_load_workflow(text), WORKFLOW_SCHEMA)


def test_workflow_install_step_installs_a_working_uncollapse(tmp_path):
    """The checkout of this repository that the workflow makes (at `path`), and its install
    step run as written, in a fresh virtual environment."""
    steps = _load_workflow(WORKFLOW.read_text())["jobs"]["validate"]["steps"]
    (checkout,) = [s for s in steps if s.get("uses", "").startswith("actions/checkout@")
                   and "path" in s.get("with", {})]
    (install,) = [s["run"] for s in steps if "pip install" in s.get("run", "")]
    assert install == f"pip install ./{checkout['with']['path']}"
    source = tmp_path / checkout["with"]["path"]
    source.mkdir()
    for name in ("uncollapse", "pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # the core dependencies come from this environment (no download); uncollapse does not
    import sysconfig

    site = next(venv.glob("lib/python*/site-packages"))
    (site / "core_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    result = subprocess.run(["bash", "-e", "-c", install], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    where = subprocess.run([str(venv / "bin" / "uncollapse"), "--version"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip() == "uncollapse, version 0.1.0"
    located = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import uncollapse; print(uncollapse.__file__)"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, check=True)
    assert Path(located.stdout.strip()).is_relative_to(site)
