"""The small collapse zoo: one run of every cause, broken the way real projects break them,
and a healthy run of every recipe; the doctor must rank each true cause first and find nothing
on the healthy runs (benchmarks/collapse_zoo.py, `make zoo` runs the full zoo)."""

from __future__ import annotations

from uncollapse.validators.doctor.causes import CAUSES


def test_the_small_zoo_holds_every_cause_and_a_healthy_run_of_every_recipe(zoo):
    small = [case for case in zoo.cases() if case.small]
    assert {case.cause for case in small} == {c.name for c in CAUSES} | {"HEALTHY"}
    healthy = {case.recipe for case in small if case.cause == "HEALTHY"}
    assert healthy == {"contrastive", "lvm", "flow", "slots", "user"}
    full = zoo.cases()
    assert all(sum(c.cause == cause.name for c in full) >= 2 for cause in CAUSES)
    assert len({c.name for c in full}) == len(full)


def test_the_doctor_ranks_every_true_cause_first_and_finds_nothing_on_healthy_runs(zoo,
                                                                                   workshop):
    outcomes = zoo.run_zoo(workshop.root, small=True)
    wrong = [(o.case.name, o.case.cause, o.top, o.codes) for o in outcomes if not o.right]
    assert wrong == []
    assert len(outcomes) == len(CAUSES) + 5
    broken = [o for o in outcomes if o.case.cause != "HEALTHY"]
    assert all(o.confidence >= 0.5 for o in broken)
    assert all(o.codes == [] for o in outcomes if o.case.cause == "HEALTHY")
    matrix = zoo.confusion_matrix(outcomes)
    assert matrix.count("\n") == len(CAUSES) + 2  # header, rule, one row per cause and HEALTHY
    assert "| 15 | `HEALTHY` |" in matrix and "**5** | 5 |" in matrix
