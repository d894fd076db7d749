"""Drive a target: draw a case, run it, check every invariant, keep distinct failures.

A fuzz run does not stop at the first failure: every run's broken invariants are collected,
grouped by (target, invariant, message with numbers and paths blanked), and each group keeps its
first example (command, mutation, output, exit code). With ``FUZZ_OUT`` set, the failing
inputs are copied there with a ``findings.jsonl`` line each, so that a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from fuzz import cache_targets, race_targets, run_targets, serve_target
from fuzz.invariants import Case, Outcome, snapshot, violations
from fuzz.runner import run, run_in_process
from fuzz.targets import BY_NAME, draw_case, seed_case

CACHE_TARGET = "cache"
RACE_TARGET = race_targets.TARGET
# targets that draw their own cases (a real cache entry, a real run directory, a running server)
DRAWN = {CACHE_TARGET: cache_targets.draw_cache_cases,
         "checkpoints": run_targets.draw_checkpoint_cases,
         "run-dirs": run_targets.draw_run_dir_cases}
SERVER_TARGET = "server"
NAMES = [*BY_NAME, *DRAWN, RACE_TARGET, SERVER_TARGET]


@dataclass
class Finding:
    target: str
    invariant: str
    detail: str
    mutation: str
    note: str
    command: str
    exit_code: int | None
    output: str
    count: int = 1


@dataclass
class Log:
    target: str
    runs: int = 0
    examples: int = 0
    seconds: float = 0.0
    subprocess_runs: int = 0
    exit_codes: dict = field(default_factory=dict)
    mutations: dict = field(default_factory=dict)
    findings: dict = field(default_factory=dict)

    def add(self, case: Case, outcome: Outcome, broken: list[tuple[str, str]],
            originals: dict[Path, bytes] | None = None) -> None:
        self.runs += 1
        self.subprocess_runs += case.subprocess
        code = "hang" if outcome.timed_out else str(outcome.exit_code)
        self.exit_codes[code] = self.exit_codes.get(code, 0) + 1
        self.mutations[case.mutation] = self.mutations.get(case.mutation, 0) + 1
        for invariant, detail in broken:
            key = (invariant, _signature(detail, case))
            if key in self.findings:
                self.findings[key].count += 1
                continue
            self.findings[key] = Finding(
                case.target, invariant, detail, case.mutation, case.note,
                "uncollapse " + " ".join(_relative(a, case.work) for a in case.args),
                outcome.exit_code, _relative(outcome.output.strip(), case.work)[-1500:])
            _save(case, self.findings[key], originals or {})

    def summary(self) -> str:
        lines = [f"{self.target}: {self.examples} examples, {self.runs} runs "
                 f"({self.subprocess_runs} as processes) in {self.seconds:.0f} s; exit codes "
                 f"{dict(sorted(self.exit_codes.items()))}; {len(self.findings)} distinct "
                 "failures"]
        for f in self.findings.values():
            lines.append(f"  [{f.invariant}] x{f.count} {f.mutation} {f.note}: {f.detail}\n"
                         f"    $ {f.command}\n    exit {f.exit_code}: "
                         f"{f.output[-300:]!r}")
        return "\n".join(lines)


def _relative(text: str, work: Path) -> str:
    return text.replace(str(work) + "/", "").replace(str(work), ".")


def _signature(detail: str, case: Case) -> str:
    text = _relative(detail, case.work)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'_'", text)
    return re.sub(r"0x[0-9a-fA-F]+|\d+", "N", text)[:120]


def _originals(case: Case) -> dict[Path, bytes]:
    """The inputs' bytes before the run (kept with a finding, since a run may rewrite them)."""
    return {p: p.read_bytes() for p in case.inputs.values() if p.is_file() and not p.is_symlink()}


def _save(case: Case, finding: Finding, originals: dict[Path, bytes]) -> None:
    out = os.environ.get("FUZZ_OUT")
    if not out:
        return
    folder = Path(out) / case.target / f"{time.time_ns()}"
    folder.mkdir(parents=True, exist_ok=True)
    for path, blob in originals.items():
        (folder / path.name).write_bytes(blob)
    with open(Path(out) / "findings.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({**finding.__dict__, "inputs": str(folder)}) + "\n")


def explore_once(name: str, data: st.DataObject, work: Path, log: Log, *,
                 allow_subprocess: bool = True) -> None:
    """Draw, run and check one example of target ``name`` in the empty folder ``work``."""
    start = time.monotonic()
    if name == RACE_TARGET:  # runs its builds itself, with the test hooks on
        race_targets.explore_once(data, work, log)
        log.examples += 1
        log.seconds += time.monotonic() - start
        return
    if name == SERVER_TARGET:
        serve_target.explore(data, work, log, run_in_process)
        log.examples += 1
        log.seconds += time.monotonic() - start
        return
    if name in DRAWN:
        cases = DRAWN[name](data, work, run_in_process, allow_subprocess)
    else:
        cases = [(draw_case(BY_NAME[name], data, work, allow_subprocess=allow_subprocess), None)]
    for case, extra in cases:
        before, originals = snapshot(work), _originals(case)
        outcome = run(case)
        broken = violations(case, outcome, before)
        if extra is not None and not outcome.timed_out:
            broken += extra(case, outcome)
        log.add(case, outcome, broken, originals)
        if os.environ.get("FUZZ_VERBOSE"):
            print(f"{outcome.seconds:6.2f}s exit {outcome.exit_code} {case.target} "
                  f"{case.mutation} {case.role} {case.note} {[b[0] for b in broken]}")
    log.examples += 1
    log.seconds += time.monotonic() - start


def run_seed(name: str, work: Path, log: Log) -> Outcome:
    """Run target ``name`` on its unmutated seeds (the cache target: its seed build)."""
    if name == CACHE_TARGET:
        cache_targets.prepare(work, run_in_process)
        return Outcome(0, "")
    if name == RACE_TARGET:
        return race_targets.run_seeds(work)
    if name == SERVER_TARGET:
        state = serve_target.server(run_in_process)
        case = Case(name, "none", "none", ["POST", "/predict"], work, {})
        body = json.dumps({"context": [[0.5] * state["dim"]]}).encode()
        state["connection"].request("POST", "/predict", body=body)
        response = state["connection"].getresponse()
        answer = response.read()
        log.add(case, Outcome(response.status, ""),
                serve_target.check_answer(response.status, answer, state["dim"]))
        return Outcome(0 if response.status == 200 else response.status, answer.decode())
    if name in DRAWN:
        case = run_targets.seed_case(name, work, run_in_process)
        before = snapshot(work)
        outcome = run(case)
        log.add(case, outcome, violations(case, outcome, before))
        return outcome
    case = seed_case(BY_NAME[name], work)
    before = snapshot(work)
    outcome = run(case)
    log.add(case, outcome, violations(case, outcome, before))
    return outcome


def run_regression(name: str, regression: Path, work: Path, log: Log) -> Outcome:
    """Run target ``name`` with its first input of ``regression``'s suffix replaced by it."""
    case = seed_case(BY_NAME[name], work)
    role = next(r for r, p in sorted(case.inputs.items()) if p.suffix == regression.suffix)
    case.inputs[role].write_bytes(regression.read_bytes())
    case.mutation, case.role, case.note = "known_bad", role, regression.name
    before, originals = snapshot(work), _originals(case)
    outcome = run(case)
    log.add(case, outcome, violations(case, outcome, before), originals)
    return outcome
