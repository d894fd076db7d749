"""The one rule idiom: a rule declared with its code reports under it, pandera's failures reach
their rules through the bridge, and findings come in the order the rules are declared."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
import pytest
from pandera.errors import SchemaErrors

from uncollapse.errors import ToolError
from uncollapse.report import Code
from uncollapse.validators.bridge import pandera_failures, rules_model
from uncollapse.validators.rules import Failed, Rules, Run

TOO_BIG = Code("TOO_BIG", "error", "A value is above 10.", "Lower it.")
ODD = Code("ODD", "warning", "A value is odd.", "Make it even.")
SHORT = Code("SHORT", "error", "The frame has fewer than 3 rows.", "Add rows.")

RULES = Rules()


@RULES.rule(SHORT)
def has_three_rows(frame: pl.DataFrame) -> Failed | None:
    return None if frame.height >= 3 else Failed(f"{frame.height} rows", count=frame.height)


@RULES.check(TOO_BIG)
def values_at_most_ten(model, data):
    return data.lazyframe.select(pl.col("value") <= 10)


@values_at_most_ten.reports
def _(failures, frame: pl.DataFrame) -> Failed:
    (failure,) = failures
    return Failed(f"{failure.count} values above 10", count=failure.count,
                  examples=failure.cases["value"].to_list())


@RULES.check(ODD)
def values_are_even(model, data):
    return data.lazyframe.select(pl.col("value") % 2 == 0)


@values_are_even.reports
def _(failures, frame: pl.DataFrame) -> Failed:
    (failure,) = failures
    rows = failure.rows().to_list()
    return Failed(f"{len(rows)} odd values", count=len(rows), examples=rows,
                  severity="error" if len(rows) > 2 else None)


class Values(rules_model("ValueRules", RULES, __name__)):
    value: int


def findings(values: list[int]):
    frame = pl.DataFrame({"value": values})
    return RULES.findings(pandera_failures(Values.to_schema(), frame), frame)


def test_a_healthy_frame_has_no_findings():
    assert findings([2, 4, 6]) == []


def test_each_rule_reports_under_its_code_in_declaration_order():
    found = findings([12, 3])
    assert [(f.code, f.severity, f.count) for f in found] == [
        ("SHORT", "error", 2), ("TOO_BIG", "error", 1), ("ODD", "warning", 1)]
    too_big, odd = found[1:]
    assert too_big.examples == [12] and too_big.hint == "Lower it."
    assert odd.examples == [1] and odd.message == "1 odd values"


def test_a_failure_may_raise_its_severity():
    (odd,) = findings([1, 3, 5])
    assert (odd.code, odd.severity, odd.count) == ("ODD", "error", 3)


def test_warning_rules_warn_in_the_model_and_fail_in_the_bridge():
    frame = pl.DataFrame({"value": [1, 20, 2]})
    with pytest.warns(Warning, match="values_are_even"), pytest.raises(SchemaErrors) as caught:
        Values.validate(frame, lazy=True)
    assert {e.check.name for e in caught.value.schema_errors} == {"values_at_most_ten"}
    failures = pandera_failures(Values.to_schema(), frame)
    assert {name: [f.count for f in fs] for name, fs in failures.items()} == {
        "values_at_most_ten": [1], "values_are_even": [1]}
    assert failures["values_are_even"][0].rows().to_list() == [0]
    assert failures["values_at_most_ten"][0].schema == "Values"


def test_a_check_that_raises_is_a_tool_error_not_a_pass():
    schema = pa.DataFrameSchema({"value": pa.Column(int)},
                                checks=[pa.Check(lambda data: 1 / 0, name="broken")])
    with pytest.raises(ToolError, match="the check broken could not run"):
        pandera_failures(schema, pl.DataFrame({"value": [1]}))


def test_a_pandera_rule_without_a_report_is_refused():
    rules = Rules()
    rules.check(ODD)(lambda model, data: True)
    with pytest.raises(TypeError, match="has no @<lambda>.reports"):
        rules.findings({"<lambda>": [object()]})


def test_a_rule_name_is_declared_once():
    rules = Rules()
    rules.builtin("nulls", SHORT, "not_nullable")
    with pytest.raises(ValueError, match="rule nulls is declared twice"):
        rules.builtin("nulls", SHORT, "not_nullable")


def test_the_runner_applies_rules_one_at_a_time_and_says_whether_each_held():
    run = Run()
    assert run.check(has_three_rows, pl.DataFrame({"value": [1, 2, 3]}))
    assert not run.check(has_three_rows, pl.DataFrame({"value": [1]}))
    assert [(f.code, f.message) for f in run.findings] == [("SHORT", "1 rows")]
