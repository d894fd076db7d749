"""Every build test gets a cache of its own (``$UNCOLLAPSE_CACHE`` under its ``tmp_path``), so
no test sees another's entries or the user's cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """The test's cache root, also set as ``$UNCOLLAPSE_CACHE``."""
    monkeypatch.setenv("UNCOLLAPSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
