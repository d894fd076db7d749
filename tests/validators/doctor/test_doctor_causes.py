"""The cause table: every cause is a finding code the registry can hold beside every other
code, and docs/doctor.md documents each one (meaning, evidence, fix)."""

from __future__ import annotations

import re
from pathlib import Path

from uncollapse.validators.codes import all_codes
from uncollapse.validators.doctor.causes import CAUSE_OF, CAUSES, HEALTHY

ROOT = Path(__file__).resolve().parents[3]


def test_causes_are_error_codes_and_healthy_is_info():
    assert [c.code.severity for c in CAUSES] == ["error"] * len(CAUSES)
    assert HEALTHY.severity == "info"
    assert len({c.name for c in CAUSES}) == len(CAUSES) == 14


def test_the_code_registry_lists_the_causes_beside_every_other_code():
    found = {name: code for name, (_, code) in all_codes().items()}
    assert {c.name for c in CAUSES} | {"HEALTHY"} <= set(found)
    # the four shared codes are the collapse diagnostics' and caption rules' own
    shared = ("MEAN_VECTOR_COLLAPSE", "DIMENSIONAL_COLLAPSE", "SLOTS_IDENTICAL", "SPLIT_LEAKAGE")
    assert all(CAUSE_OF[name].code is found[name] for name in shared)


def test_docs_document_every_cause_with_its_evidence_and_fix():
    text = (ROOT / "docs" / "doctor.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^### `([A-Z_]+)`\n(.*?)(?=^### |\Z)", text, re.S | re.M))
    assert set(sections) == {c.name for c in CAUSES} | {"HEALTHY"}
    for name, body in sections.items():
        if name != "HEALTHY":
            assert "**Evidence**" in body and "**Fix**" in body and "**Ruled out by**" in body, \
                name
