"""The written naming rule of the Python API (docs/python-api.md, "Names"), checked."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIXES = ("validate_", "audit_", "diagnose_")


def public_functions_returning(annotation: str):
    for path in sorted((ROOT / "uncollapse").rglob("*.py")):
        if path.stem.endswith("cli") or path.stem.startswith("cli"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and \
                    node.returns is not None and ast.unparse(node.returns) == annotation:
                yield f"{path.relative_to(ROOT)}:{node.name}", node.name


def test_every_public_check_that_returns_a_report_is_named_by_the_rule():
    checks = dict(public_functions_returning("Report"))
    assert "uncollapse/validators/captions/rules.py:validate_captions" in checks
    wrong = [where for where, name in checks.items() if not name.startswith(PREFIXES)]
    assert wrong == []


def test_no_click_command_function_shares_a_library_function_name():
    library = {name for path in (ROOT / "uncollapse").rglob("*.py")
               if not (path.stem.endswith("cli") or path.stem.startswith("cli"))
               for name in (n.name for n in ast.parse(path.read_text()).body
                            if isinstance(n, ast.FunctionDef))}
    commands = []
    for path in (ROOT / "uncollapse").rglob("*cli*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any(
                    "command" in ast.unparse(d) or "group" in ast.unparse(d)
                    for d in node.decorator_list):
                commands.append(node.name)
    assert commands and sorted(set(commands) & library) == []


# the areas whose modules declare their public names (``__all__``); the other packages follow
# as they are reworked
DECLARED = ("uncollapse/data", "uncollapse/pipeline", "uncollapse/*.py")
# ``uncollapse.samplers`` also exports the datasets its samplers are used with, and each
# validators package (``uncollapse.validators.captions``, ...) the public names of its modules,
# imported on first use (docs/python-api.md, "Names"); every other class has one public import
# path
REEXPORTERS = {"uncollapse.samplers"} | {
    f"uncollapse.validators.{p.parent.name}"
    for p in (ROOT / "uncollapse" / "validators").glob("*/__init__.py")
    if "lazy_names(__name__" in p.read_text(encoding="utf-8")}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _declared(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return list(ast.literal_eval(node.value))
    return None


def test_every_module_of_data_pipeline_and_the_root_declares_its_public_names():
    import importlib

    paths = sorted({p for pattern in DECLARED for p in ROOT.glob(
        pattern if pattern.endswith(".py") else f"{pattern}/**/*.py")})
    missing, unknown = [], []
    for path in paths:
        if path.name == "__main__.py":
            continue
        names = _declared(ast.parse(path.read_text(encoding="utf-8")))
        if names is None:
            missing.append(str(path.relative_to(ROOT)))
            continue
        module = importlib.import_module(_module(path))
        unknown += [f"{module.__name__}.{n}" for n in names if not hasattr(module, n)]
    assert len(paths) > 60
    assert missing == []
    assert unknown == []


def test_each_class_has_one_public_import_path():
    classes = {node.name for path in (ROOT / "uncollapse").rglob("*.py")
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.ClassDef)}
    exported: dict[str, list[str]] = {}
    for path in sorted((ROOT / "uncollapse").rglob("*.py")):
        module = _module(path)
        for name in _declared(ast.parse(path.read_text(encoding="utf-8"))) or []:
            if name in classes and module not in REEXPORTERS:
                exported.setdefault(name, []).append(module)
    assert "CaptionDataset" in exported and "Built" in exported
    assert {"uncollapse.validators.captions", "uncollapse.validators.doctor"} <= REEXPORTERS
    assert {name: where for name, where in exported.items() if len(where) > 1} == {}


def test_the_package_ships_its_type_hints():
    assert (ROOT / "uncollapse" / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '[tool.setuptools.package-data]\n# PEP 561: the package ships its type hints\n' \
           'uncollapse = ["py.typed"]' in pyproject
