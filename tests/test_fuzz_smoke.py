"""A fast pass of every fuzz target (``make fuzz`` runs them for minutes; ``fuzz/README.md``).

Each target first runs on its unmutated corpus seeds, which must pass (exit 0, every invariant
holds), so that a broken seed or command line cannot pass for robustness; then on a few
hostile inputs drawn deterministically by hypothesis, in-process only (FIFOs and hostile option
values, which can block or allocate without bound, run under ``make fuzz`` as processes).
"""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuzz.harness import NAMES, Log, explore_once, run_seed

EXAMPLES = 3


@pytest.mark.parametrize("name", NAMES)
def test_target_passes_its_unmutated_seeds(name, tmp_path):
    log = Log(name)
    outcome = run_seed(name, tmp_path, log)
    assert outcome.exit_code == 0, outcome.output
    assert not log.findings, log.summary()


@pytest.mark.parametrize("name", NAMES)
def test_target_keeps_every_invariant_on_a_few_hostile_inputs(name, tmp_path_factory):
    log = Log(name)

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.data())
    def explore(data):
        work = tmp_path_factory.mktemp(name)
        try:
            explore_once(name, data, work, log, allow_subprocess=False)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    explore()
    assert log.examples == EXAMPLES
    assert not log.findings, log.summary()
