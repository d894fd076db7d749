"""Fixtures of the reliability tests. They share the trainer tests' data builders
(``tests/trainers/conftest.py``) and this folder's helpers, so both folders go on ``sys.path``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

for _folder in (Path(__file__).resolve().parents[1], Path(__file__).resolve().parent):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))


@pytest.fixture(scope="session")
def run_data(tmp_path_factory):
    """A 60-image caption table with synthetic features, and a small sequence file."""
    from trainers.conftest import build_drift_sequences as drift_sequences
    from trainers.conftest import caption_features, caption_table

    tmp = tmp_path_factory.mktemp("run-data")
    table = caption_table(tmp, images=60)
    text, images = caption_features(table, tmp)
    return {"table": table, "text": text, "images": images, "tmp": tmp,
            "sequences": drift_sequences(tmp)}


@pytest.fixture(autouse=True)
def no_process_left():
    """A test that fails while a training or server it started is paused or running kills it
    (those of module fixtures, started before the test, stay for the module's other tests)."""
    from reliability_runs import STARTED

    before = len(STARTED)
    yield
    while len(STARTED) > before:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)
