"""The bridge from pandera to findings, shared by the families with a pandera model.

``rules_model`` makes each rule declared with ``Rules.check`` a dataframe check of a
``pandera.polars.DataFrameModel``; ``pandera_failures`` validates a frame lazily and collects
what pandera reports for every failed check (``Failure``: the failing rows and the failure
cases), by check name; ``Rules.findings`` then asks each failed rule for its finding.
"""

from __future__ import annotations

import contextlib
import copy
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl
from pandera.api.checks import Check
from pandera.config import ValidationDepth, config_context
from pandera.constants import CHECK_OUTPUT_KEY
from pandera.errors import SchemaErrorReason, SchemaErrors, SchemaWarning

from uncollapse.errors import ToolError
from uncollapse.validators.rules import Rule, Rules

__all__ = ["Failure", "data_checks_always", "pandera_failures", "rule_check", "rules_model",
           "short_warnings"]


@dataclass(frozen=True)
class Failure:
    """What pandera reported for one failed check.

    Attributes:
        check: the check's name (a rule's name, or pandera's: ``not_nullable``, ``isin``, ...).
        schema: the column a column check ran on, else the model's name.
        passed: per row of the frame, whether the row satisfies the check.
        cases: the failure cases: the failing rows (the first ``n_failure_cases`` of them).
    """

    check: str
    schema: str
    passed: pl.Series
    cases: pl.DataFrame

    @property
    def count(self) -> int:
        """The failing rows: one per thing the rule names (a row, a batch, a group, ...)."""
        return int((~self.passed).sum())

    def rows(self) -> pl.Series:
        """The positions of the failing rows."""
        return (~self.passed).arg_true()


def _name(check) -> str:
    return check if isinstance(check, str) else getattr(check, "name", str(check))


@contextlib.contextmanager
def data_checks_always() -> Iterator[None]:
    """pandera checks the data of a LazyFrame too, with polars' streaming engine.

    pandera checks only the schema of a LazyFrame unless ``PANDERA_VALIDATION_DEPTH`` says
    otherwise, so a broken table scanned lazily would pass; a check that cannot run must never
    count as a pass. The streaming engine keeps pandera's own scans (its null checks) in
    bounded memory on tables larger than memory.
    """
    with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA), \
            pl.Config(engine_affinity="streaming"):
        yield


def pandera_failures(schema: pa.DataFrameSchema,
                     frame: pl.DataFrame | pl.LazyFrame) -> dict[str, list[Failure]]:
    """Validate ``frame`` lazily against ``schema`` (its schema and its data, a LazyFrame's
    too: ``data_checks_always``); every failed check's failures, by name.

    Checks with ``raise_warning`` count as failures too (their warnings are not shown): which
    rule an error or a warning is is the rule's business, not pandera's.

    Raises:
        ToolError: a check raised instead of passing or failing (it could not run).
    """
    if any(check.raise_warning for check in schema.checks):
        schema = copy.copy(schema)
        schema.checks = [_failing(check) for check in schema.checks]
    try:
        with warnings.catch_warnings(), data_checks_always():
            warnings.simplefilter("ignore", SchemaWarning)  # of pandera's built-in checks
            schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        errors = exc.schema_errors
    else:
        return {}
    failures: dict[str, list[Failure]] = {}
    for error in errors:
        name = _name(error.check)
        if error.reason_code == SchemaErrorReason.CHECK_ERROR:
            raise ToolError(f"the check {name} could not run: {error.failure_cases}")
        output = error.check_output
        passed = (output[CHECK_OUTPUT_KEY] if isinstance(output, pl.DataFrame)
                  else pl.Series(CHECK_OUTPUT_KEY, [], dtype=pl.Boolean))
        cases = error.failure_cases if isinstance(error.failure_cases, pl.DataFrame) \
            else pl.DataFrame({"failure_case": [str(error.failure_cases)]})
        failures.setdefault(name, []).append(
            Failure(name, str(getattr(error.schema, "name", "")), passed, cases))
    return failures


def _failing(check: Check) -> Check:
    if not check.raise_warning:
        return check
    strict = copy.copy(check)
    strict.raise_warning = False
    return strict


def rule_check(rule: Rule, function: Callable | None = None, **check_kwargs) -> classmethod:
    """``rule`` as a dataframe check of a DataFrameModel, named after it; ``function`` (default:
    the rule's test) is called as ``function(model, data)``.

    The check function itself carries the rule's name: pandera takes the ``name`` given here
    from the check's metadata the first time a model class builds its schema, so a second class
    with the check (a subclass, built first) would fall back to the function's name."""
    test = function or rule.test

    def check(model, data, **kwargs):
        return test(model, data, **kwargs)

    check.__name__ = check.__qualname__ = rule.name
    return pa.dataframe_check(check, name=rule.name, description=rule.__doc__, **check_kwargs)


def rules_model(name: str, rules: Rules, module: str, *,
                adapt: Callable[[Rule], Callable] | None = None, warnings_warn: bool = True,
                **check_kwargs) -> type[pa.DataFrameModel]:
    """A DataFrameModel whose dataframe checks are the pandera rules of ``rules``, in order;
    a model with fields subclasses it.

    Args:
        name, module: the class's name and module.
        adapt: makes a rule's check function from the rule (default: its test).
        warnings_warn: rules of severity ``warning`` are checks with ``raise_warning=True``
            (pandera warns and lets the frame pass); False: every rule fails the frame.
        check_kwargs: for every check (``n_failure_cases=...``).
    """
    namespace: dict = {"__module__": module, "__qualname__": name}
    for rule in rules:
        if not rule.pandera or rule.test is None or rule.columns:
            continue  # plain rules, pandera's own checks, and column checks added per column
        namespace[rule.name] = rule_check(
            rule, adapt(rule) if adapt else None,
            raise_warning=warnings_warn and rule.severity == "warning", **check_kwargs)
    return type(name, (pa.DataFrameModel,), namespace)


@contextlib.contextmanager
def short_warnings(model: str, rules: Rules, details: str):
    """Shorten pandera's ``SchemaWarning`` of a failed warning rule (about a thousand
    characters: every failure case in full) to one line naming the rule, its finding code and
    ``details`` (where the whole finding is); still a ``SchemaWarning``, so filters keep
    working. Other warnings pass through unchanged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    by_name = {rule.name: rule for rule in rules}
    for warning in caught:
        found = re.search(r"<Check (\w+)>", str(warning.message))
        rule = by_name.get(found.group(1)) if found else None
        if not issubclass(warning.category, SchemaWarning) or rule is None:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno, source=warning.source)
            continue
        warnings.warn(f"{model}: check {rule.name} failed ({rule.code.name}, a warning: the "
                      f"frame passes); {details}", SchemaWarning, stacklevel=4)
