"""Fixtures shared by the whole suite. The suite mirrors the package: ``tests/data/<family>/``,
``tests/pipeline/<family>/``, ``tests/cli/``, ``tests/cache/``, ``tests/samplers/``, ...; a test
of the package as a whole (its layers, its names, the README) sits here at the top.

Test files have unique names (there are no ``__init__.py`` files in the suite), and helper
modules (``readme_blocks.py``, ``cli/io_safety_commands.py``) sit beside the tests that import
them.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from uncollapse.cli import main


@pytest.fixture(scope="session")
def run():
    """Run the command line in-process: ``run("build", "captions", path)`` -> click ``Result``
    (``exit_code``, ``stdout``, ``stderr``, ``output``). Arguments may be paths or numbers."""

    def invoke(*args) -> Result:
        return CliRunner().invoke(main, [str(a) for a in args])

    return invoke
