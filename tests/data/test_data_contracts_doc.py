"""docs/data-contracts.md is generated from the contracts' definitions and kept in sync."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from uncollapse.data.attributes.contract import ATTRIBUTE_COLUMNS
from uncollapse.data.captions.table import CAPTION_SCHEMA
from uncollapse.data.contracts_doc import COMMAND, contracts_markdown, spec_table
from uncollapse.data.scenes.contract import SCENE_ARRAYS
from uncollapse.data.sequences.contract import CHUNK_COLUMNS, COMPACT_ARRAYS, DENSE_ARRAYS
from uncollapse.data.spec import ArraySpec, ColumnSpec

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "data-contracts.md"


def test_docs_file_is_what_the_generator_writes():
    assert DOC.read_text() == contracts_markdown(), (
        f"docs/data-contracts.md is stale: run {COMMAND}")


def test_module_run_prints_the_document():
    out = subprocess.run([sys.executable, "-m", "uncollapse.data.contracts_doc"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out == contracts_markdown()


def test_every_contract_entry_is_listed_with_its_dtype():
    doc = contracts_markdown()
    for name, dtype in CAPTION_SCHEMA.items():
        assert f"| `{name}` | {dtype} |" in doc
    for arrays in (SCENE_ARRAYS, DENSE_ARRAYS, COMPACT_ARRAYS):
        for name, spec in arrays.items():
            assert f"| `{name}` | {spec.shape} | {spec.dtype} |" in doc
    for columns in (ATTRIBUTE_COLUMNS, CHUNK_COLUMNS):
        for name, spec in columns.items():
            assert f"| `{name}` | {spec.dtype} |" in doc
    for title in ("## Caption table", "## Attribute table", "## Scene file", "## Sequence file",
                  "### Chunk table"):
        assert title in doc  # the section names other docs and docstrings point to
    assert "| `identity` | Int64 | yes | yes |" in doc
    assert "| `doc_key` | String | no | no |" in doc  # a chunk table may leave it out
    assert "| every other column | Int8 | no | yes | one attribute, 0 or 1 |" in doc


def test_families_appear_in_the_families_table_order():
    doc = contracts_markdown()
    positions = [doc.index(title) for title in ("## Caption table", "## Sequence file",
                                                "## Attribute table", "## Scene file")]
    assert positions == sorted(positions)


def test_spec_table_escapes_pipes_and_marks_optional_arrays():
    lines = spec_table({"x": ArraySpec("[N]", "int8", "a | b", required=False)})
    assert lines[-1] == "| `x` | [N] | int8 | no | a \\| b |"


def test_spec_table_marks_nullable_and_optional_columns():
    lines = spec_table({"x": ColumnSpec("Int64", "an id", nullable=False),
                        "y": ColumnSpec("String", "a note", required=False)})
    assert lines[-2:] == ["| `x` | Int64 | no | yes | an id |",
                          "| `y` | String | yes | no | a note |"]


def test_spec_table_refuses_columns_and_arrays_mixed():
    with pytest.raises(TypeError, match="columns or arrays"):
        spec_table({"x": ArraySpec("[N]", "int8", "a"), "y": ColumnSpec("Int8", "b")})


def test_a_changed_contract_changes_the_document(monkeypatch):
    before = contracts_markdown()
    monkeypatch.setitem(SCENE_ARRAYS, "depth",
                        ArraySpec("[N, H, W]", "float32", "distance to the camera"))
    after = contracts_markdown()
    assert after != before
    assert "| `depth` | [N, H, W] | float32 | yes | distance to the camera |" in after
