"""A build whose output would fail its own family's check exits 1 and commits nothing.

``build sequences --vectors nan.npy`` exited 0 with a file that ``validate sequences`` rejects
(NONFINITE_VALUES), and cached it, so the next build was a "cache hit" of the same invalid
file. Vectors with NaN/inf or all-zero rows are refused before anything is cached.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cache.store import Cache
from uncollapse.cli import main
from uncollapse.pipeline.rejected import BuildRejected
from uncollapse.pipeline.sequences import build_sequences


@pytest.fixture
def chunks(tmp_path) -> Path:
    path = tmp_path / "chunks.parquet"
    pl.DataFrame({"doc_id": [0] * 6 + [1] * 2, "doc_key": ["a"] * 6 + ["b"] * 2,
                  "position": [0, 1, 2, 3, 4, 5, 0, 1],
                  "text": [f"text {i}" for i in range(8)]},
                 schema={"doc_id": pl.Int64, "doc_key": pl.String, "position": pl.Int32,
                         "text": pl.String}).write_parquet(path)
    return path


def vectors(tmp_path: Path, name: str, change) -> Path:
    array = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    change(array)
    np.save(tmp_path / name, array)
    return tmp_path / name


def build(*args):
    return CliRunner().invoke(main, ["build", "sequences", *map(str, args)])


@pytest.mark.parametrize(("name", "change", "code", "rows"), [
    ("nan.npy", lambda a: a.__setitem__((3, 1), np.nan), "BUILD_NONFINITE_VECTORS", [3]),
    ("inf.npy", lambda a: a.__setitem__((slice(6, 8), 0), -np.inf), "BUILD_NONFINITE_VECTORS",
     [6, 7]),
    ("zero.npy", lambda a: a.__setitem__(2, 0.0), "BUILD_ZERO_VECTORS", [2]),
])
def test_vectors_that_fail_the_sequence_check_exit_1_and_cache_nothing(tmp_path, chunks, name,
                                                                       change, code, rows):
    path = vectors(tmp_path, name, change)
    root, out = tmp_path / "cache", tmp_path / "seq.npz"
    for _ in range(2):  # the second run is no "cache hit" of the invalid file either
        result = build(chunks, "--vectors", path, "--context", "2", "--cache-dir", root,
                       "-o", out, "--format", "json")
        assert result.exit_code == 1, result.output
        report = json.loads(result.stdout)
        [finding] = report["findings"]
        assert finding["code"] == code and finding["count"] == len(rows)
        assert [e["row"] for e in finding["examples"]] == rows
        assert "nothing written or cached" in result.stderr
        assert "cache hit" not in result.stderr
    assert not out.exists()
    assert [e.stage for e in Cache(root).entries()] == []


def test_the_library_raises_with_the_report(tmp_path, chunks):
    path = vectors(tmp_path, "nan.npy", lambda a: a.__setitem__((0, 0), np.nan))
    with pytest.raises(BuildRejected) as caught:
        build_sequences(chunks, vectors=path, context_length=2, cache=Cache(tmp_path / "c"))
    assert caught.value.report.exit_code() == 1
    assert caught.value.report.codes() == ["BUILD_NONFINITE_VECTORS"]
    assert "1 chunk row(s)" in str(caught.value)
    assert Cache(tmp_path / "c").entries() == []


def test_finite_vectors_still_build(tmp_path, chunks):
    path = vectors(tmp_path, "ok.npy", lambda a: None)
    result = build(chunks, "--vectors", path, "--context", "2", "--cache-dir", tmp_path / "c",
                   "-o", tmp_path / "seq.npz")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seq.npz").exists()


class NanEncoder:
    """A sentence-transformers stand-in whose vector for the text "text 5" is NaN."""

    def __init__(self, path, device=None, local_files_only=True):
        pass

    def encode(self, texts, batch_size, convert_to_numpy, show_progress_bar):
        return np.array([[np.nan if t == "text 5" else 1.0, len(t)] for t in texts])

    def get_sentence_embedding_dimension(self):
        return 2


def test_an_encoder_returning_nan_caches_no_vectors_either(tmp_path, chunks, monkeypatch):
    import sys
    import types

    module = types.ModuleType("sentence_transformers")
    module.SentenceTransformer = NanEncoder
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    model = tmp_path / "model"
    model.mkdir()
    (model / "modules.json").write_text("[]")
    root = tmp_path / "cache"
    result = build(chunks, "--encoder", model, "--context", "2", "--cache-dir", root, "--quiet",
                   "--format", "json")
    assert result.exit_code == 1, result.output
    [finding] = json.loads(result.stdout)["findings"]
    assert finding["code"] == "BUILD_NONFINITE_VECTORS"
    assert [e["row"] for e in finding["examples"]] == [5]
    assert Cache(root).entries() == []  # neither the vectors nor the sequences
