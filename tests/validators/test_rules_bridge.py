"""The one rule idiom: a rule declared with its code reports under it, pandera's failures reach
their rules through the bridge, and findings come in the order the rules are declared."""

from __future__ import annotations

import ast
import subprocess
import sys

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



def test_validating_with_other_thresholds_first_leaves_the_models_checks_their_rule_names():
    # pandera takes a check's name from its metadata when the first class builds its schema;
    # validate_caption_frame builds a subclass per set of thresholds: run first, it left
    # CaptionTable's checks named "check" (a fresh interpreter: the schema is built once)
    script = (
        "import polars as pl\n"
        "from uncollapse.validators.captions import CaptionTable, validate_caption_frame\n"
        "from uncollapse.validators.captions.rules import RULES\n"
        "frame = pl.DataFrame({'image_id': ['a', 'a'], 'match_id': [0, 0],"
        " 'caption_idx': [0, 1], 'caption': ['a dog', 'a cat'], 'split': ['train', 'train'],"
        " 'source_row': [0, 1], 'image_path': [None, None]},"
        " schema_overrides={'caption_idx': pl.Int16, 'source_row': pl.Int64,"
        " 'image_path': pl.String})\n"
        "validate_caption_frame(frame, min_group=1)\n"
        "print(sorted({c.name for c in CaptionTable.to_schema().checks}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    from uncollapse.validators.captions.rules import RULES as CAPTION_RULES

    names = ast.literal_eval(done.stdout.strip())
    assert "check" not in names and set(names) <= set(CAPTION_RULES.check_names())
    assert len(names) >= 5
