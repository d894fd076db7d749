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

from fuzz.harness import NAMES, Log, explore_once, run_regression, run_seed
from fuzz.mutations import CORPUS
from fuzz.targets import BY_NAME

EXAMPLES = 3
REGRESSIONS = [(name, path) for path in sorted((CORPUS / "regressions").glob("*"))
               for name, target in BY_NAME.items()
               if any(seed.endswith(path.suffix) for seed in target.seeds.values())]


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


@pytest.mark.parametrize(("name", "regression"), REGRESSIONS,
                         ids=[f"{n}-{p.name}" for n, p in REGRESSIONS])
def test_target_keeps_every_invariant_on_inputs_that_once_broke_a_reader(name, regression,
                                                                          tmp_path):
    log = Log(name)
    run_regression(name, regression, tmp_path, log)
    assert not log.findings, log.summary()


def test_pickle_payload_creates_its_marker_when_loaded_with_pickle_and_is_reported(tmp_path):
    import numpy as np

    from fuzz.arrays import pickled_array
    from fuzz.invariants import Case, Outcome, snapshot, violations

    marker = tmp_path / "PICKLE_EXECUTED"
    np.save(tmp_path / "x.npy", pickled_array(marker), allow_pickle=True)
    case = Case("t", "structured.npy", "pred", ["diagnose"], tmp_path,
                {"pred": tmp_path / "x.npy"}, marker=marker)
    before = snapshot(tmp_path)
    np.load(tmp_path / "x.npy", allow_pickle=True)
    assert marker.is_dir()
    assert ("no pickle executed", "PICKLE_EXECUTED was created") in violations(
        case, Outcome(2, "x.npy: object arrays are refused"), before)


def test_every_broken_invariant_is_reported(tmp_path):
    from fuzz.invariants import Case, Outcome, snapshot, violations

    source = tmp_path / "in" / "a.txt"
    source.parent.mkdir()
    source.write_text("x\n")
    out = tmp_path / "out.parquet"
    case = Case("t", "empty", "source", ["build", str(source), "-o", str(out)], tmp_path,
                {"source": source}, {"output": out}, empty_input=True)
    before = snapshot(tmp_path)
    source.write_text("rewritten\n")
    (tmp_path / ".out.parquet.tmp123").write_bytes(b"half")
    output = "Error: KeyError: 'files'\nTraceback (most recent call last):\n"
    found = {name for name, _ in violations(case, Outcome(0, output), before)}
    assert found == {"inputs never modified", "no temp files left", "no traceback",
                     "no raw exception without file or option", "empty input never passes",
                     "output written on success"}
    out.write_bytes(b"PAR1 half")
    assert ("no half-written output", "exit 2 left out.parquet (9 bytes)") in violations(
        case, Outcome(2, "a.txt: not a token file"), before)
    assert violations(case, Outcome(None, "", timed_out=True, seconds=45), before) == [
        ("no hang", "still running after 45 s (killed)")]


def test_a_message_naming_a_file_or_option_is_not_raw(tmp_path):
    from fuzz.invariants import Case, Outcome, violations

    case = Case("t", "bit_flipped", "source", ["validate", "captions", "x.parquet"], tmp_path, {})
    named = ("Error: x.parquet: ArrowInvalid: bad footer\n"
             "Error: --batch-size: ValueError: must be positive\n")
    assert violations(case, Outcome(2, named), {}) == []


def test_the_server_target_starts_afresh_on_a_connection_idle_past_the_keep_alive(tmp_path):
    # the server outlives one test; when other targets ran longer than its keep-alive in between,
    # it has closed the idle connection, which is no broken invariant (a loaded machine met this)
    import socket

    from fuzz import serve_target
    from uncollapse.trainers.serve import KEEP_ALIVE_S

    log = Log("server")
    assert run_seed("server", tmp_path / "seed", log).exit_code == 0
    state = serve_target._SERVER
    state["connection"].sock.shutdown(socket.SHUT_RDWR)  # as the server's close leaves it
    state["used"] -= KEEP_ALIVE_S

    @settings(max_examples=1, derandomize=True, deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.data())
    def explore(data):
        explore_once("server", data, tmp_path, log, allow_subprocess=False)

    explore()
    assert (log.runs, log.examples) == (2, 1) and not log.findings, log.summary()
