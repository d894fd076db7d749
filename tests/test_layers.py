"""The package's layers, checked from its imports (every import, at the top or inside a function).

Ground floor: ``errors``, ``report``, ``atomic``, ``progress``, ``extras`` and ``data`` (one package
per data family). ``pipeline``, ``validators``, ``samplers`` and ``cache`` stand on it and do not
import each other sideways, except that builds are cached (pipeline -> cache) and the batch audit
replays samplers (validators -> samplers). ``trainers`` may use everything below it.
Command-line modules (``cli.py``, ``*_cli.py``, ``uncollapse/cli_*.py``, ``__main__``) sit on
top and nothing else imports them.

Outside command-line modules, imports sit at the top of a module, except the heavy optional ones in
``LAZY_ALLOWED`` (kept lazy so ``uncollapse --help`` and table validation stay fast and lean).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "uncollapse"

GROUND = {"errors", "report", "atomic", "paths", "progress", "extras", "data"}
MIDDLE = {"pipeline", "validators", "samplers", "cache"}
ALLOWED_SIDEWAYS = {("pipeline", "cache"), ("validators", "samplers")}
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


def area(module: str) -> str:
    """``uncollapse.pipeline.captions.build`` -> ``pipeline``; the package root -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


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


def layer_violations(package_root: Path) -> list[str]:
    """Every import that breaks the layers or the top-of-module rule, as ``file:line: why``."""
    problems = []
    for path in sorted(package_root.rglob("*.py")):
        module = module_name(path, package_root.parent)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = _type_checking_block(tree)
        guarded_lines = {n.lineno for n in ast.walk(tree) if id(n) in guarded and
                         hasattr(n, "lineno")}
        here = area(module)
        for target, line, top in imported_modules(tree, module):
            where = f"{path.relative_to(package_root.parent)}:{line}"
            first = target.split(".")[0]
            if not top and not is_cli(module) and first != PACKAGE and \
                    first not in LAZY_ALLOWED and line not in guarded_lines:
                problems.append(f"{where}: imports {target} inside a function (move it to the "
                                f"top, or list it in LAZY_ALLOWED if it is heavy and optional)")
            if first != PACKAGE:
                continue
            if not top and not is_cli(module) and line not in guarded_lines and \
                    target not in LAZY_PACKAGE_MODULES:
                problems.append(f"{where}: imports {target} inside a function; package "
                                "imports belong at the top of the module")
            if is_cli(module):
                continue
            if is_cli(target):
                problems.append(f"{where}: {module} imports the command-line module {target}")
                continue
            there = area(target)
            if there in ("", here) or (there in GROUND and here in GROUND | MIDDLE | {"trainers"}):
                if here in GROUND and there in GROUND and here != "data" and there == "data":
                    problems.append(f"{where}: {module} (ground floor) imports {target}")
                continue
            if (here, there) in ALLOWED_SIDEWAYS:
                continue
            if here == "trainers" and there in MIDDLE:
                continue
            problems.append(f"{where}: {module} ({here or 'root'}) may not import {target} "
                            f"({there}): layers are ground (errors, report, atomic, progress, "
                            "extras, data) < pipeline/validators/samplers/cache < trainers < cli")
    return problems


def test_package_keeps_its_layers_and_top_level_imports():
    assert layer_violations(ROOT / PACKAGE) == []


def test_a_planted_upward_import_is_caught(tmp_path):
    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    spec = copy / "data" / "spec.py"
    spec.write_text(spec.read_text() + "\nfrom uncollapse.pipeline.scenes import generate_scenes\n")
    problems = sorted(set(layer_violations(copy)) - set(layer_violations(ROOT / PACKAGE)))
    assert len(problems) == 1
    assert problems[0].startswith("uncollapse/data/spec.py:")
    assert "may not import uncollapse.pipeline.scenes" in problems[0]


def test_a_planted_sideways_and_lazy_import_are_caught(tmp_path):
    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    planner = copy / "samplers" / "planner.py"
    planner.write_text(planner.read_text() + "\n\ndef _late():\n    import json\n"
                       "    from uncollapse.validators import batches\n")
    problems = sorted(set(layer_violations(copy)) - set(layer_violations(ROOT / PACKAGE)))
    assert len(problems) == 3
    assert any("imports json inside a function" in p for p in problems)
    assert any("may not import uncollapse.validators" in p for p in problems)
    assert all(p.startswith("uncollapse/samplers/planner.py:") for p in problems)


def test_training_path_imports_with_torch_numpy_and_pyarrow_only():
    # GPU hosts have torch, numpy and pyarrow but no polars, pandera or datasets
    import subprocess
    import sys

    code = ("import sys\n"
            "for name in ('polars', 'pandera', 'datasets'): sys.modules[name] = None\n"
            "import uncollapse.samplers, uncollapse.trainers.engine, uncollapse.trainers.serve\n"
            "import uncollapse.trainers.cli, uncollapse.validators.match_ids\n"
            "print('imported')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"


def test_no_file_of_the_package_cites_a_document_users_do_not_have():
    cited = [str(p.relative_to(ROOT)) for p in (ROOT / PACKAGE).rglob("*.py")
             if "DESIGN.md" in p.read_text(encoding="utf-8")]
    assert cited == []
