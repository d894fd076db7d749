"""The plain install, without extras, is enough for table validation in CI.

A fresh virtual environment gets the wheel that the documented commands build
(docs/install.md, "From a wheel": `pip wheel --no-deps . -w dist`, then `pip install
dist/uncollapse-...whl`) with its core dependencies only (no torch, no Hugging Face datasets);
table validation runs there, and a command that needs torch exits 2 naming the extra in the
install forms the README gives. Wheels come from pip's cache (or the index), so this takes
seconds.
"""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse import __version__
from uncollapse.cli import main
from uncollapse.errors import ToolError
from uncollapse.extras import (
    EXTRA_OF_MODULE,
    WHEEL,
    MissingExtra,
    install_command,
    missing_extra,
    require,
)

ROOT = Path(__file__).resolve().parents[1]
COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")


# Nothing on PYTHONPATH, and (below) no working directory holding the checkout's package:
# every import, and pip's view of what is installed, comes from the virtual environment.
CLEAN_ENV = {key: value for key, value in os.environ.items()
             if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


class LeanEnv:
    """A virtual environment holding uncollapse and its core dependencies, and nothing else."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "venv" / "bin"

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / program), *args], capture_output=True, text=True,
                              cwd=self.root, env=CLEAN_ENV, timeout=300)

    def python(self, code: str, *args: str) -> subprocess.CompletedProcess:
        return self.run("python", "-c", code, *args)


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, timeout=600, cwd=cwd, env=CLEAN_ENV)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stderr}"


def documented_wheel_commands() -> list[str]:
    """The commands of docs/install.md's "From a wheel" block, comments removed."""
    page = (ROOT / "docs" / "install.md").read_text()
    block = page.split("## From a wheel", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def lean(tmp_path_factory) -> LeanEnv:
    root = tmp_path_factory.mktemp("lean")
    # build from a copy: a build in the checkout would leave build/ and egg-info behind
    source = root / "source"
    source.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "uncollapse", source / "uncollapse",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build, install = documented_wheel_commands()[:2]
    assert build == "pip wheel --no-deps . -w dist" and install == f"pip install dist/{WHEEL}"
    _pip(*shlex.split(build)[1:], "--quiet", cwd=source)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")],
                   check=True, timeout=120)
    # the running pip installs into the new environment (--python): no pip bootstrap there
    _pip("--python", str(root / "venv" / "bin" / "python"), *shlex.split(install)[1:],
         "--quiet", cwd=source)
    return LeanEnv(root)


def test_the_readme_and_every_install_hint_give_the_documented_forms():
    readme = (ROOT / "README.md").read_text()
    assert "pip wheel --no-deps . -w dist" in readme
    assert f"pip install 'dist/{WHEEL}[torch]'" in readme
    assert install_command("torch") == (f"pip install -e '.[torch]' in a checkout of uncollapse, "
                                        f"or pip install 'dist/{WHEEL}[torch]' with its wheel")
    # no message, page or recipe tells anyone to install a release that does not exist
    sources = [*(ROOT / "uncollapse").rglob("*.py"), ROOT / "README.md",
               *(ROOT / "docs").rglob("*.md"), *(ROOT / "docs").rglob("*.yml")]
    for path in sources:
        text = path.read_text()
        for stale in ("pip install uncollapse", "pip install 'uncollapse[",
                      'pip install "uncollapse['):
            assert stale not in text, f"{path.relative_to(ROOT)}: {stale}"


@pytest.fixture(scope="module")
def tables(lean, tmp_path_factory) -> dict[str, Path]:
    """The bundled COCO captions as a caption table, and a copy whose match_id is the row."""
    folder = tmp_path_factory.mktemp("tables")
    good = folder / "captions.parquet"
    result = CliRunner().invoke(main, ["build", "captions", str(COCO), "-o", str(good),
                                       "--cache-dir", str(folder / "cache"), "--quiet"])
    assert result.exit_code == 0, result.output
    broken = folder / "row_number_match_ids.parquet"
    (pl.read_parquet(good)
     .with_columns(match_id=pl.int_range(pl.len(), dtype=pl.Int64))
     .write_parquet(broken))
    return {"good": good, "broken": broken}


def test_the_lean_install_has_uncollapse_but_neither_torch_nor_datasets(lean):
    code = ("import importlib.util, uncollapse; print(uncollapse.__file__); "
            "print([m for m in ('torch', 'datasets', 'polars', 'pandera', 'pyarrow') "
            "if importlib.util.find_spec(m) is None])")
    result = lean.python(code)
    assert result.returncode == 0, result.stderr
    location, missing = result.stdout.splitlines()
    assert Path(location).is_relative_to(lean.root / "venv")
    assert missing == "['torch', 'datasets']"


def test_help_runs_in_the_lean_install(lean):
    result = lean.run("uncollapse", "--help")
    assert result.returncode == 0, result.stderr
    assert "validate" in result.stdout and "build" in result.stdout


def test_validate_captions_passes_on_the_coco_table_without_torch(lean, tables):
    result = lean.run("uncollapse", "validate", "captions", str(tables["good"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout and "5005" in result.stdout


def test_validate_captions_fails_on_row_number_match_ids_without_torch(lean, tables):
    result = lean.run("uncollapse", "validate", "captions", str(tables["broken"]))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "GROUPS_ALL_UNIQUE" in result.stdout


PANDERA_MODEL = """
import sys
import pandera.errors
import polars as pl
from uncollapse.validators.captions import CaptionTable

frame = pl.read_parquet(sys.argv[1])
try:
    checked = CaptionTable.validate(frame, lazy=True)
except pandera.errors.SchemaErrors as exc:
    print("failures", len(exc.schema_errors))
else:
    print("valid", checked.height)
"""


def test_the_pandera_caption_model_runs_without_torch(lean, tables):
    good = lean.python(PANDERA_MODEL, str(tables["good"]))
    assert good.returncode == 0, good.stderr
    assert good.stdout.split() == ["valid", "5005"]
    broken = lean.python(PANDERA_MODEL, str(tables["broken"]))
    assert broken.returncode == 0, broken.stderr
    word, count = broken.stdout.split()
    # every match_id is a singleton and each image spans several match_ids: two rules fail,
    # and lazy validation reports them together
    assert word == "failures" and int(count) >= 2


def test_a_command_that_needs_torch_exits_2_naming_the_torch_extra(lean, tables):
    result = lean.run("uncollapse", "validate", "batches", str(tables["good"]),
                      "--sampler", "grouped", "--batch-size", "10", "--per-group", "5")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install -e '.[torch]' in a checkout of uncollapse" in result.stderr
    assert "Traceback" not in result.stderr


def test_importing_the_collapse_diagnostics_without_torch_names_the_torch_extra(lean):
    code = ("from uncollapse.extras import MissingExtra\n"
            "try:\n"
            "    from uncollapse.validators.collapse import diagnose_embeddings\n"
            "except MissingExtra as exc:\n"
            "    print(exc)\n")
    result = lean.python(code)
    assert result.returncode == 0, result.stderr
    assert "pip install -e '.[torch]' in a checkout of uncollapse" in result.stdout


def _declared_extras() -> set[str]:
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as handle:
        return set(tomllib.load(handle)["project"]["optional-dependencies"])


def test_every_extra_the_code_names_is_declared():
    named = set(EXTRA_OF_MODULE.values())
    for path in (ROOT / "uncollapse").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require":
                extra = node.args[1]
                assert isinstance(extra, ast.Constant), f"{path}:{node.lineno}: name the extra"
                named.add(extra.value)
    assert {"torch", "hf", "encoders"} <= named
    assert named - _declared_extras() == set()


def test_require_names_the_extra_and_what_needs_it():
    with pytest.raises(MissingExtra) as caught:
        require("uncollapse_no_such_module", "torch", "the samplers and datasets")
    assert isinstance(caught.value, ToolError) and isinstance(caught.value, ImportError)
    assert str(caught.value) == (
        "uncollapse_no_such_module is not installed (needed for the samplers and datasets): "
        "pip install -e '.[torch]' in a checkout of uncollapse, or "
        f"pip install 'dist/uncollapse-{__version__}-py3-none-any.whl[torch]' with its wheel")


def test_an_import_error_of_an_optional_module_becomes_its_install_hint():
    hint = missing_extra(ModuleNotFoundError("No module named 'datasets'", name="datasets.arrow"))
    assert hint == ("datasets is not installed (needed for this command): "
                    "pip install -e '.[hf]' in a checkout of uncollapse, or "
                    f"pip install 'dist/uncollapse-{__version__}-py3-none-any.whl[hf]' with its "
                    "wheel")
    assert missing_extra(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None
