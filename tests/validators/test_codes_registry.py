"""Every module that defines a finding code is registered, so docs/finding-codes.md lists it."""

from __future__ import annotations

import importlib
import pkgutil

import uncollapse
from uncollapse.report import Code
from uncollapse.validators.codes import CODE_MODULES, all_codes


def _modules_defining_codes() -> set[str]:
    found = set()
    for info in pkgutil.walk_packages(uncollapse.__path__, "uncollapse."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        if any(isinstance(v, Code) and getattr(module, name) is v and
               not _imported(module, name) for name, v in vars(module).items()):
            found.add(info.name)
    return found


def _imported(module, name: str) -> bool:
    # a code imported from its defining module is not a second definition
    value = getattr(module, name)
    return any(m is not module and getattr(m, name, None) is value
               for m in map(importlib.import_module, CODE_MODULES))


def test_every_module_that_defines_a_code_is_in_code_modules():
    assert _modules_defining_codes() - set(CODE_MODULES) == set()


def test_match_ids_verdict_code_is_documented():
    assert all_codes()["FEW_POSITIVES_IN_RANDOM_BATCHES"][0] == "uncollapse.validators.match_ids"
