"""Named moments of a build where a test can kill the process, or act, to prove crash safety.

The hooks are off in every normal run: nothing in the package turns them on, and environment
variables alone never do. A test turns them on in its own process with ``enable()`` (or runs
the command line through ``tests/hooked_cli.py``, which does), and then:

- with ``UNCOLLAPSE_TEST_CRASH_AT=<name>`` in the environment, the process sends itself SIGKILL
  when it reaches that moment: no cleanup, no ``finally``, as when the machine loses power or
  the OOM killer strikes. The robustness tests kill a real ``uncollapse build`` at every point
  in ``POINTS`` and check that the cache holds no half entry and the next build succeeds;
- ``acting_at(name, action)`` runs ``action()`` when the moment is reached (for example,
  replace an input file while the build holds its lock), so a race is a deterministic test.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

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

_enabled = False
_actions: dict[str, list[Callable[[], None]]] = {}


def enable() -> None:
    """Let the hooks of this process act (tests only)."""
    global _enabled
    _enabled = True


def enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def acting_at(name: str, action: Callable[[], None]):
    """Run ``action()`` each time this process reaches moment ``name``, inside the block (the
    hooks are enabled for the block)."""
    if name not in POINTS:
        raise ValueError(f"{name!r} is not a crash point; the points are {', '.join(POINTS)}")
    global _enabled
    before = _enabled
    _enabled = True
    _actions.setdefault(name, []).append(action)
    try:
        yield
    finally:
        _actions[name].remove(action)
        _enabled = before


def crash_point(name: str) -> None:
    """Act here, or die here at once, if a test enabled the hooks and asks for it."""
    if not _enabled:
        return
    for action in list(_actions.get(name, ())):
        action()
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
