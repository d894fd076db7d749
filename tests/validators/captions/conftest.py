"""Fixtures of the caption table tests."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest


@pytest.fixture(autouse=True)
def isolated_caption_cache(tmp_path, monkeypatch) -> Path:
    """The test's cache root, also set as ``$UNCOLLAPSE_CACHE``: no test sees another's
    entries or the user's cache."""
    monkeypatch.setenv("UNCOLLAPSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def caption_contract() -> pl.Schema:
    """The caption table as docs/data-contracts.md spells it, written out here so that a change
    of the code's contract shows up as a failing test."""
    return pl.Schema({"image_id": pl.String, "match_id": pl.Int64, "caption_idx": pl.Int16,
                      "caption": pl.String, "split": pl.String, "source_row": pl.Int64,
                      "image_path": pl.String})


@pytest.fixture(scope="session")
def only():
    """``only(report, code)``: the one finding of ``code`` in ``report`` (fails otherwise)."""

    def find(report, code):
        found = [f for f in report.findings if f.code == code]
        assert len(found) == 1, f"expected one {code}, got {report.codes()}"
        return found[0]

    return find


@pytest.fixture(scope="session")
def write():
    """``write(frame, path)``: ``frame`` as Parquet at ``path``; returns the path."""

    def to_parquet(frame: pl.DataFrame, path: Path) -> Path:
        frame.write_parquet(path)
        return path

    return to_parquet
