"""A JSONL record nested about 1,000 deep crashed polars' reader (a segfault, exit 139, no
message); `build chunks` now refuses deep nesting, naming the line, before polars reads it."""

import json
import subprocess
import sys

import pytest

from uncollapse.pipeline.sequences.corpus import MAX_JSON_DEPTH, _json_depth


def _build(tmp_path, lines):
    source = tmp_path / "docs.jsonl"
    source.write_text("\n".join(lines) + "\n")
    return subprocess.run([sys.executable, "-m", "uncollapse", "build", "chunks", str(source),
                           "-o", str(tmp_path / "chunks.parquet"), "--cache-dir",
                           str(tmp_path / "cache"), "--quiet"],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000])
def test_deep_nesting_is_refused_naming_the_line(tmp_path, depth):
    deep = '{"doc_id": "a", "text": "t", "meta": ' + "{\"k\": " * depth + "1" + "}" * depth + "}"
    result = _build(tmp_path, ['{"doc_id": "b", "text": "fine"}', deep])
    assert result.returncode == 2, result.stderr
    assert f"docs.jsonl, line 2: JSON nested more than {MAX_JSON_DEPTH} levels" in result.stderr
    assert not (tmp_path / "chunks.parquet").exists()


def test_many_flat_objects_on_a_line_are_not_deep(tmp_path):
    record = {"doc_id": "a", "text": "one paragraph", "tags": [{"k": i} for i in range(200)]}
    result = _build(tmp_path, [json.dumps(record)])
    assert result.returncode == 0, result.stderr


def test_brackets_inside_strings_do_not_count():
    assert _json_depth('{"text": "[[[{{{\\"[[["}') == 1
    assert _json_depth('{"a": [[1], {"b": [2]}]}') == 4
