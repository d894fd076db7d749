"""The package's layers and its import rules, checked from its imports.

The layers are import-linter contracts in ``pyproject.toml`` (``lint-imports``, also run by
``make test``): the command line on top, then ``trainers``, then ``pipeline``, ``validators``,
``samplers`` and ``cache`` side by side (builds are cached: pipeline -> cache; the batch audit
replays samplers: validators.batches -> samplers), then ``data``, then the ground floor
(``errors``, ``report``, ``atomic``, ``paths``, ``extras``, ``progress``, ``families``); and no
import cycle between the modules of any package.

Outside command-line modules, imports sit at the top of a module, except the heavy optional ones in
``LAZY_ALLOWED`` (kept lazy so ``uncollapse --help`` and table validation stay fast and lean).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "uncollapse"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LAZY_ALLOWED = {"torch", "pandera", "datasets", "sentence_transformers", "transformers", "sklearn",
                "matplotlib", "rich", "tqdm", "lightning", "accelerate", "fastapi", "uvicorn",
                "tensorboard", "ray",
                # absent on GPU hosts: modules the training path imports read tables with it lazily
                "polars"}
# package modules that pull one of those in (pandera), imported lazily where they are optional:
# the trainers' pre-flight runs every caption rule where pandera is installed, and only the
# grouping check on a GPU host without it
LAZY_PACKAGE_MODULES = {"uncollapse.validators.captions", "uncollapse.data.captions.table"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_cli(module: str) -> bool:
    last = module.split(".")[-1]
    return last in ("cli", "__main__") or last.endswith("_cli") or last.startswith("cli_")


def imported_modules(tree: ast.AST, module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at top level) for every import in a module's tree."""
    body = getattr(tree, "body", [])
    # an optional dependency guarded by a top-level ``try: import ... except ImportError`` is
    # imported at the top too
    top_level = {id(node) for node in body} | {
        id(node) for guard in body if isinstance(guard, ast.Try) for node in guard.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")[: -node.level] if node.level else []
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        else:
            continue
        found += [(name, node.lineno, id(node) in top_level) for name in names]
    return found


def _type_checking_block(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(child) for child in ast.walk(node)}
    return inside


def late_import_violations(package_root: Path) -> list[str]:
    """Every import inside a function that should sit at the top, as ``file:line: why``."""
    problems = []
    for path in sorted(package_root.rglob("*.py")):
        module = module_name(path, package_root.parent)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = _type_checking_block(tree)
        guarded_lines = {n.lineno for n in ast.walk(tree) if id(n) in guarded and
                         hasattr(n, "lineno")}
        for target, line, top in imported_modules(tree, module):
            if top or is_cli(module) or line in guarded_lines:
                continue
            where = f"{path.relative_to(package_root.parent)}:{line}"
            first = target.split(".")[0]
            if first != PACKAGE and first not in LAZY_ALLOWED:
                problems.append(f"{where}: imports {target} inside a function (move it to the "
                                f"top, or list it in LAZY_ALLOWED if it is heavy and optional)")
            elif first == PACKAGE and target not in LAZY_PACKAGE_MODULES:
                problems.append(f"{where}: imports {target} inside a function; package "
                                "imports belong at the top of the module")
    return problems


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the package and the contracts of ``root`` (its pyproject.toml)."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(root)})


def planted_copy(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package and its contracts with ``line`` appended to ``module``."""
    shutil.copytree(ROOT / PACKAGE, tmp_path / PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}\n")
    return tmp_path


def test_package_keeps_its_import_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_planted_upward_import_breaks_the_layers(tmp_path):
    root = planted_copy(tmp_path, "uncollapse.data.spec",
                        "from uncollapse.pipeline.scenes import generate_scenes")
    result = lint_imports(root)
    assert result.returncode == 1
    assert "uncollapse.data is not allowed to import uncollapse.pipeline" in result.stdout
    assert "uncollapse.data.spec -> uncollapse.pipeline.scenes" in result.stdout


def test_a_planted_sideways_import_breaks_the_layers(tmp_path):
    root = planted_copy(tmp_path, "uncollapse.samplers.planner",
                        "from uncollapse.validators.captions import match_ids")
    result = lint_imports(root)
    assert result.returncode == 1
    assert "uncollapse.samplers is not allowed to import uncollapse.validators" in result.stdout


def test_library_code_may_not_import_the_command_line(tmp_path):
    root = planted_copy(tmp_path, "uncollapse.pipeline.result",
                        "from uncollapse.cli_report import emit_report")
    result = lint_imports(root)
    assert result.returncode == 1
    assert "uncollapse.pipeline is not allowed to import uncollapse.cli_report" in result.stdout


def test_a_planted_cycle_is_caught(tmp_path):
    # the cycle the command-line glue once had, hidden by a function-level import
    root = planted_copy(tmp_path, "uncollapse.cli_paths",
                        "def _late():\n    from uncollapse.cli_report import FORMAT_KEY")
    result = lint_imports(root)
    assert result.returncode == 1
    assert "no import cycles" in result.stdout and "BROKEN" in result.stdout


def test_package_keeps_its_imports_at_the_top():
    assert late_import_violations(ROOT / PACKAGE) == []


def test_a_planted_late_import_is_caught(tmp_path):
    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    planner = copy / "samplers" / "planner.py"
    planner.write_text(planner.read_text() + "\n\ndef _late():\n    import json\n"
                       "    from uncollapse.data import spec\n")
    problems = sorted(set(late_import_violations(copy)) -
                      set(late_import_violations(ROOT / PACKAGE)))
    assert len(problems) == 2
    assert any("imports json inside a function" in p for p in problems)
    assert any("imports uncollapse.data inside a function" in p for p in problems)
    assert all(p.startswith("uncollapse/samplers/planner.py:") for p in problems)


def test_training_path_imports_with_torch_numpy_and_pyarrow_only():
    # GPU hosts have torch, numpy and pyarrow but no polars, pandera or datasets
    import subprocess
    import sys

    code = ("import sys\n"
            "for name in ('polars', 'pandera', 'datasets'): sys.modules[name] = None\n"
            "import uncollapse.samplers, uncollapse.trainers.engine, uncollapse.trainers.serve\n"
            "import uncollapse.trainers.cli, uncollapse.validators.captions.match_ids\n"
            "import uncollapse.validators.sequences.rules\n"
            "print('imported')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"


def test_no_file_of_the_package_cites_a_document_users_do_not_have():
    cited = [str(p.relative_to(ROOT)) for p in (ROOT / PACKAGE).rglob("*.py")
             if "DESIGN.md" in p.read_text(encoding="utf-8")]
    assert cited == []
