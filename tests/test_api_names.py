"""The written naming rule of the Python API (README, "Names in the Python API"), checked."""

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
