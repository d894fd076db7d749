"""Named moments of a build where a test can kill the process, to prove crash safety.

With ``UNCOLLAPSE_TEST_CRASH_AT=<name>`` in the environment, the process sends itself SIGKILL
when it reaches that moment: no cleanup, no ``finally``, as when the machine loses power or the
OOM killer strikes. The robustness tests kill a real ``uncollapse build`` at every point in
``POINTS`` and check that the cache holds no half entry and the next build succeeds.
"""

from __future__ import annotations

import os
import signal

ENV = "UNCOLLAPSE_TEST_CRASH_AT"

POINTS = (
    "input-hashed",      # an input's digest computed, not yet remembered
    "key-computed",      # the key known, nothing locked
    "locked",            # the key's build lock held
    "tmp-created",       # the temporary build directory exists, empty
    "built",             # the builder returned; its files are in the temporary directory
    "checked",           # the output passed its checks
    "sealed",            # files read-only and fingerprinted; no manifest yet
    "manifest-written",  # the manifest written, not yet synced
    "manifest-synced",
    "old-moved",         # a rebuild moved the old entry aside; the new one not yet in place
    "replaced",          # the new entry in place; the old one not yet removed
    "renamed",           # a new entry renamed into place; directory not yet synced
    "committed",         # the entry durable; the build lock still held
    "hit-checked",       # a hit's files matched their fingerprints
    "refreshed",         # a hit's moved fingerprints written back to its manifest
    "bad-found",         # a corrupt entry detected, not yet removed
    "bad-moved",         # the corrupt entry moved aside, not yet deleted
    "bad-removed",       # the corrupt entry deleted, the rebuild not yet started
    "returned",          # the build returned its entry; the output not yet published
)


def crash_point(name: str) -> None:
    """Die here, at once, if the environment asks for it."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
