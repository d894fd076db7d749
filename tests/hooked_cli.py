"""``python tests/hooked_cli.py ARGS...`` runs ``uncollapse ARGS...`` with the test hooks on.

The kill points of ``uncollapse.cache.crashpoints`` act only in a process that enabled them;
a stray ``UNCOLLAPSE_TEST_CRASH_AT`` in a user's environment does nothing. Tests that kill a
real build at a named moment run it through this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uncollapse.cache import crashpoints  # noqa: E402

crashpoints.enable()

from uncollapse.cli import main  # noqa: E402

main(sys.argv[1:], prog_name="uncollapse")
