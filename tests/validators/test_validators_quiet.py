"""The validators are a library: they return reports and raise errors, and never write to the
terminal themselves (the command line prints; a collapse monitor that warns uses Python's
``warnings``, which standard filters silence)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def writes_to_the_terminal(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line`` of each ``print(...)`` or ``sys.stdout/stderr.write`` outside an
    ``if __name__ == "__main__":`` block."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    script = {id(sub) for node in tree.body if isinstance(node, ast.If)
              and "__main__" in ast.unparse(node.test) for sub in ast.walk(node)}
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in script:
            continue
        called = ast.unparse(node.func)
        if called == "print" or called in ("sys.stdout.write", "sys.stderr.write"):
            hits.append(f"{path.relative_to(root)}:{node.lineno}")
    return hits


def test_no_validator_module_prints():
    files = [p for p in (ROOT / "uncollapse" / "validators").rglob("*.py") if p.stem != "cli"]
    assert len(files) > 30
    assert [hit for path in files for hit in writes_to_the_terminal(path)] == []


def test_a_planted_print_is_found(tmp_path):
    module = tmp_path / "planted.py"
    module.write_text('import sys\n\n\ndef f():\n    print("x")\n    sys.stderr.write("y")\n\n\n'
                      'if __name__ == "__main__":\n    print(f())\n')
    assert writes_to_the_terminal(module, tmp_path) == ["planted.py:5", "planted.py:6"]
