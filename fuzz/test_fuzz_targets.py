"""``make fuzz``: every target explored by hypothesis for its share of ``FUZZ_SECONDS``.

Each target gets an equal share of what is left of ``FUZZ_SECONDS`` (default 600 s in all, counted
from the first target, so that a target that overran leaves less to the rest) and at
most ``FUZZ_MAX_EXAMPLES`` examples, drawn in hypothesis runs of ``FUZZ_BATCH`` examples (a run
is never cut short: hypothesis checks that a run draws the same way each time it replays).
``FUZZ_TARGETS`` (comma-separated names) runs only some. A target fails with the list of every
distinct broken invariant it met, not just the first. ``FUZZ_OUT`` collects the failing inputs
(findings.jsonl) and each target's numbers (stats.jsonl).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuzz.harness import NAMES, Log, explore_once

pytestmark = pytest.mark.fuzz

SECONDS = float(os.environ.get("FUZZ_SECONDS", "600"))
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "100000"))
BATCH = int(os.environ.get("FUZZ_BATCH", "8"))
SELECTED = [n for n in os.environ.get("FUZZ_TARGETS", "").split(",") if n] or NAMES


_started: list[float] = []


def _share(name: str) -> float:
    """Seconds for target ``name``: what is left of the budget over the targets still to run."""
    if not _started:
        _started.append(time.monotonic())
    left = SECONDS - (time.monotonic() - _started[0])
    return max(0.0, left) / (len(SELECTED) - SELECTED.index(name))


def _record(log: Log) -> None:
    print("\n" + log.summary())
    if out := os.environ.get("FUZZ_OUT"):
        Path(out).mkdir(parents=True, exist_ok=True)
        with open(Path(out) / "stats.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"target": log.target, "examples": log.examples,
                                 "runs": log.runs, "subprocess_runs": log.subprocess_runs,
                                 "seconds": round(log.seconds, 1),
                                 "exit_codes": log.exit_codes, "mutations": log.mutations,
                                 "distinct_failures": len(log.findings)}) + "\n")


@pytest.mark.parametrize("name", SELECTED)
def test_fuzz_target(name, tmp_path_factory):
    log = Log(name)
    stop = time.monotonic() + _share(name)

    @settings(max_examples=BATCH, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def explore(data):
        work = tmp_path_factory.mktemp(name)
        try:
            explore_once(name, data, work, log)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    explore()
    while time.monotonic() < stop and log.examples < MAX_EXAMPLES:
        explore()
    _record(log)
    assert not log.findings, log.summary()
