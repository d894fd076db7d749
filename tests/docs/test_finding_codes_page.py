"""Every finding code the package can report is documented in docs/finding-codes.md, whether
it is a registered ``Code`` or a code written into a finding directly."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "finding-codes.md"
CODE_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")  # HEALTHY, DIVERGENCE: one word


def codes_in_source(source: str) -> set[str]:
    """Code names a module can put into a finding: ``Code("NAME", ...)``,
    ``Finding(code="NAME", ...)``, ``{"code": "NAME", ...}`` and ``code="NAME"`` anywhere."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        candidates = []
        if isinstance(node, ast.Call):
            if getattr(node.func, "id", None) == "Code" and node.args:
                candidates.append(node.args[0])
            candidates += [k.value for k in node.keywords if k.arg == "code"]
        elif isinstance(node, ast.Dict):
            candidates += [v for k, v in zip(node.keys, node.values, strict=True)
                           if isinstance(k, ast.Constant) and k.value == "code"]
        found |= {c.value for c in candidates if isinstance(c, ast.Constant)
                  and isinstance(c.value, str) and CODE_NAME.match(c.value)}
    return found


def package_codes() -> dict[str, str]:
    """``{code: the first module that names it}`` over every module of the package."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "uncollapse").rglob("*.py")):
        for code in codes_in_source(path.read_text(encoding="utf-8")):
            found.setdefault(code, str(path.relative_to(ROOT)))
    return found


def documented_codes() -> set[str]:
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", PAGE.read_text(encoding="utf-8"), re.M))


def test_the_scanner_finds_codes_in_every_form_a_finding_takes():
    source = ('A = Code("ONE_CODE", "error", "m", "f")\n'
              'f = Finding(code="TWO_CODE", severity="error", message="m")\n'
              'g = {"code": "THREE_CODE", "message": "m"}\n'
              'h = {"code": A.name}\n'
              'i = {"kind": "NOT_A_CODE_KEY"}\n'
              'j = Code("HEALTHY", "info", "m", "f")\n')
    assert codes_in_source(source) == {"ONE_CODE", "TWO_CODE", "THREE_CODE", "HEALTHY"}


def test_every_code_the_package_can_report_is_documented():
    codes = package_codes()
    # the two written straight into findings, outside the registry before
    assert {"SLOT_INIT_NEAR_IDENTICAL", "ATTR_COMBINATION_TOO_SMALL", "GROUPS_ALL_UNIQUE"} <= \
        set(codes)
    missing = {code: module for code, module in codes.items() if code not in documented_codes()}
    assert not missing, f"codes missing from docs/finding-codes.md: {missing}"


def test_the_page_documents_no_code_the_package_cannot_report():
    assert documented_codes() - set(package_codes()) == set()
