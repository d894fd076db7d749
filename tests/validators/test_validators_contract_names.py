"""The validators spell no column or NPZ key of a family: they take each from the family's
contract (``uncollapse/data/<family>/contract.py``), so renaming a column is one edit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# names that are columns or keys only; English words that are also columns (caption, split,
# text, images, ...) would flag option names and statistics, so they are left out
CONTRACT_NAMES = {"image_id", "match_id", "caption_idx", "source_row", "image_path", "identity",
                  "doc_id", "doc_key", "doc_ids", "doc_offsets", "num_objects",
                  "context_sequences", "target_vectors", "target_positions", "context_length"}


def spelled_names(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line: 'name'`` for each contract name written as a string, outside docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(getattr(node, "body", None), list) and node.body
                  and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [f"{path.relative_to(root)}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in CONTRACT_NAMES
            and id(node) not in docstrings]


def test_the_validators_take_column_and_key_names_from_the_contracts():
    files = sorted((ROOT / "uncollapse" / "validators").rglob("*.py"))
    assert len(files) > 30
    assert [hit for path in files for hit in spelled_names(path)] == []


def test_a_spelled_column_is_found(tmp_path):
    module = tmp_path / "planted.py"
    module.write_text('"""Docs may say image_id."""\n\n\ndef f(frame):\n'
                      '    """match_id here is prose."""\n    return frame["match_id"]\n')
    assert spelled_names(module, tmp_path) == ["planted.py:6: 'match_id'"]
