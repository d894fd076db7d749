"""Every module that defines a finding code is found by the registry, so docs/finding-codes.md
lists it; codes imported elsewhere are listed once, under the module that defines them."""

from __future__ import annotations

import importlib
import pkgutil

import uncollapse
from uncollapse.report import Code
from uncollapse.validators.codes import all_codes, area, code_modules


def _modules_holding_codes() -> set[str]:
    found = set()
    for info in pkgutil.walk_packages(uncollapse.__path__, "uncollapse."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        if any(isinstance(v, Code) for v in vars(module).values()):
            found.add(info.name)
    return found


def test_every_code_any_module_holds_is_registered_under_its_defining_module():
    registered = all_codes()
    for name in _modules_holding_codes():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, Code):
                defined_in, code = registered[value.name]
                assert code is value, (value.name, name)
                assert getattr(importlib.import_module(defined_in), value.name, None) is value
    assert set(code_modules()) <= _modules_holding_codes()


def test_codes_are_found_in_every_layer_and_family_package():
    modules = code_modules()
    assert {"uncollapse.validators.captions.rules", "uncollapse.validators.sequences.rules",
            "uncollapse.validators.attributes.rules", "uncollapse.validators.scenes.rules",
            "uncollapse.validators.batches.rules", "uncollapse.cache.verify",
            "uncollapse.pipeline.captions.irregularities", "uncollapse.pipeline.empty"} <= set(
        modules)


def test_match_ids_verdict_code_is_documented():
    assert all_codes()["FEW_POSITIVES_IN_RANDOM_BATCHES"][0] == \
        "uncollapse.validators.captions.match_ids"


def test_areas_name_the_family_or_the_module_that_reports_the_code():
    assert area("uncollapse.validators.captions.rules") == "captions"
    assert area("uncollapse.validators.batches.rules") == "batches"
    assert area("uncollapse.validators.attributes.flips") == "flips"
    assert area("uncollapse.pipeline.captions.irregularities") == "build captions"
    assert area("uncollapse.cache.verify") == "verify"
    codes = all_codes()
    assert area(codes["SPLIT_LEAKAGE"][0]) == "captions"
    assert area(codes["TEXTS_INVALID"][0]) == "sequences"
