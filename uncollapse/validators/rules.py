"""One way to write a rule, in every family: the finding code at the rule's definition.

A rule is a function registered on its family's ``Rules`` with the ``Code`` it reports under
(the code holds the severity, what the finding means and how to fix it). The function says what
failed, as a ``Failed`` (the message, how many things fail, examples), or None when the rule
holds; the rule turns that into the finding::

    RULES = Rules()

    @RULES.rule(SCENE_NUM_OBJECTS_INVALID)
    def scenes_hold_objects(scenes) -> Failed | None:
        empty = np.flatnonzero(scenes.num_objects < 1)
        if len(empty):
            return Failed(f"{len(empty)} scenes have num_objects < 1", count=len(empty))

Array families (sequence and scene files) apply their rules one at a time with ``Run``. Table
families (captions, attributes, the batch assignment) declare most rules with ``Rules.check``:
the function is a pandera check of the family's model (``uncollapse.validators.bridge`` builds
the model's checks from the rules and collects what pandera reports when they fail), and a
second function, registered with ``@rule.reports``, turns that report into the finding.
``Rules.findings`` lists the findings in the order the rules are declared. This module imports
neither pandera nor polars: the array families run where they are not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from uncollapse.report import Code, Finding

__all__ = ["Failed", "Rule", "Rules", "Run"]


@dataclass(frozen=True)
class Failed:
    """How a rule failed, as its finding says it.

    Args:
        message: what failed, with the numbers (``"3 scenes have num_objects < 1"``).
        count: how many things fail (rows, groups, batches, arrays, ...).
        examples: the first of them, with the values that fail.
        severity, hint: override the rule's severity and the code's fix for this failure.
    """

    message: str
    count: int = 1
    examples: list = field(default_factory=list)
    severity: str | None = None
    hint: str | None = None


class Rule:
    """A rule: its name (the function's, and its pandera check's), the code it reports under,
    the severity of its findings (the code's unless the rule says otherwise) and its test.

    ``test`` is the function the rule was declared on. A plain rule's test takes the family's
    context and returns its failures; a pandera rule's test is the check pandera runs, and
    ``describe`` (set with ``@rule.reports``) turns the failures pandera reports for the checks
    named in ``checks`` into the finding.
    """

    def __init__(self, name: str, code: Code, severity: str | None, test: Callable | None, *,
                 checks: tuple[str, ...] = (), columns: bool = False):
        self.name = name
        self.code = code
        self.severity = severity or code.severity
        self.test = test
        self.checks = checks
        self.columns = columns
        self.describe: Callable | None = None
        self.__doc__ = getattr(test, "__doc__", None)

    @property
    def pandera(self) -> bool:
        """Whether pandera runs this rule (its own check, or one of pandera's)."""
        return bool(self.checks)

    def reports(self, describe: Callable) -> Callable:
        """Register the function that turns this rule's pandera failures into its finding:
        ``describe(failures, *context) -> Failed | list[Failed] | None``."""
        self.describe = describe
        return describe

    def findings(self, failed: Failed | Iterable[Failed] | None) -> list[Finding]:
        """The findings of what the rule's test or description returned."""
        if failed is None:
            return []
        return [self.code.finding(f.message, count=f.count, examples=f.examples, hint=f.hint,
                                  severity=f.severity or self.severity)
                for f in ([failed] if isinstance(failed, Failed) else failed)]

    def __call__(self, *args, **kwargs):
        return self.test(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, {self.code.name}, {self.severity})"


class Rules:
    """The rules of one family, in the order their findings are listed."""

    def __init__(self):
        self._rules: dict[str, Rule] = {}

    def _add(self, rule: Rule) -> Rule:
        if rule.name in self._rules:
            raise ValueError(f"rule {rule.name} is declared twice")
        self._rules[rule.name] = rule
        return rule

    def rule(self, code: Code, *, severity: str | None = None) -> Callable[[Callable], Rule]:
        """Decorator: a plain rule, ``test(*context) -> Failed | list[Failed] | None``."""
        return lambda test: self._add(Rule(test.__name__, code, severity, test))

    def check(self, code: Code, *, severity: str | None = None,
              columns: bool = False) -> Callable[[Callable], Rule]:
        """Decorator: a rule pandera runs, its test a check of the family's model (a column
        check with ``columns=True``); describe its failures with ``@rule.reports``."""
        return lambda test: self._add(Rule(test.__name__, code, severity, test,
                                           checks=(test.__name__,), columns=columns))

    def builtin(self, name: str, code: Code, *checks: str, severity: str | None = None) -> Rule:
        """A rule that pandera's own checks of the model's fields test (``not_nullable``,
        ``isin``, ...); describe its failures with ``@rule.reports``."""
        return self._add(Rule(name, code, severity, None, checks=checks))

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules.values())

    def __getitem__(self, name: str) -> Rule:
        return self._rules[name]

    def check_names(self) -> set[str]:
        """The pandera checks whose failures the rules describe."""
        return {name for rule in self for name in rule.checks}

    def findings(self, failures: Mapping[str, list], *context) -> list[Finding]:
        """Every rule's findings, in declaration order: a pandera rule describes the failures
        ``failures`` holds for its checks (``uncollapse.validators.bridge.pandera_failures``),
        a plain rule tests ``context`` in its place."""
        run = Run()
        for rule in self:
            if not rule.pandera:
                run.check(rule, *context)
                continue
            failed = [f for name in rule.checks for f in failures.get(name, ())]
            if failed:
                if rule.describe is None:
                    raise TypeError(f"rule {rule.name} has no @{rule.name}.reports function")
                run.findings += rule.findings(rule.describe(failed, *context))
        return run.findings


class Run:
    """The findings of rules applied one at a time, in order (the array families' runner)."""

    def __init__(self):
        self.findings: list[Finding] = []

    def check(self, rule: Rule, *args) -> bool:
        """Test ``rule`` on ``args``; its failures become findings. True when it holds."""
        found = rule.findings(rule.test(*args))
        self.findings += found
        return not found
