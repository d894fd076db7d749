"""Fixtures shared by the validator tests (``tests/validators/<family>/`` mirrors
``uncollapse/validators/<family>/``)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from uncollapse.cli import main


@pytest.fixture(scope="session")
def run():
    """Run the command line in-process: ``run("validate", "captions", path)`` -> click
    ``Result`` (``exit_code``, ``stdout``, ``stderr``, ``output``). Arguments may be paths or
    numbers."""

    def invoke(*args) -> Result:
        return CliRunner().invoke(main, [str(a) for a in args])

    return invoke
