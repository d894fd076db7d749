"""The pipeline spells no column or NPZ key of a family: it takes each from the family's
contract (``uncollapse/data/<family>/contract.py``), so renaming a column is one edit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# names that are columns or keys only; English words that are also columns (caption, split,
# text, position, images, ...) would flag option names and statistics, so they are left out
CONTRACT_NAMES = {"image_id", "match_id", "caption_idx", "source_row", "image_path", "identity",
                  "doc_id", "doc_key", "doc_ids", "doc_offsets", "num_objects",
                  "context_sequences", "target_vectors", "target_positions"}


def spelled_names(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line: 'name'`` for each contract name written as a string, outside docstrings and
    outside module-level constants (a source format's own field names, such as COCO's
    ``annotations[].image_id``, are declared once as constants)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
    for node in tree.body:
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper()
                                                for t in node.targets):
            skip |= {id(sub) for sub in ast.walk(node.value)}
    return [f"{path.relative_to(root)}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in CONTRACT_NAMES
            and id(node) not in skip]


def test_the_pipeline_takes_column_and_key_names_from_the_contracts():
    files = sorted((ROOT / "uncollapse" / "pipeline").rglob("*.py"))
    assert len(files) > 20
    assert [hit for path in files for hit in spelled_names(path)] == []


def test_a_spelled_column_is_found(tmp_path):
    module = tmp_path / "planted.py"
    module.write_text('"""Docs may say image_id."""\nSOURCE_FIELD = "image_id"\n\n\n'
                      'def f(frame):\n    """match_id here is prose."""\n'
                      '    return frame["match_id"]\n')
    assert spelled_names(module, tmp_path) == ["planted.py:7: 'match_id'"]
