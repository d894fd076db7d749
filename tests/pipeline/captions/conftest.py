"""Fixtures of the caption build tests."""

from __future__ import annotations

import polars as pl
import pytest


@pytest.fixture(scope="session")
def caption_contract() -> pl.Schema:
    """The caption table as docs/data-contracts.md spells it, written out here so that a change
    of the code's contract shows up as a failing build test."""
    return pl.Schema({"image_id": pl.String, "match_id": pl.Int64, "caption_idx": pl.Int16,
                      "caption": pl.String, "split": pl.String, "source_row": pl.Int64,
                      "image_path": pl.String})
