"""Every module of the validators names its public API in ``__all__``, and every name there
exists; the family packages serve theirs without importing their heavy modules first."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for p in (ROOT / "uncollapse" / "validators").rglob("*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_every_module_names_its_api_and_every_name_exists(name):
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list)
    missing = [item for item in module.__all__ if not hasattr(module, item)]
    assert missing == []


def test_family_packages_import_nothing_heavy_until_a_name_is_used():
    code = ("import sys\n"
            "import uncollapse.validators.captions, uncollapse.validators.batches\n"
            "import uncollapse.validators.attributes, uncollapse.validators.collapse\n"
            "import uncollapse.validators.cli\n"
            "print(sorted(m for m in ('pandera', 'polars', 'torch') if m in sys.modules))\n"
            "from uncollapse.validators.captions import validate_captions\n"
            "print(sorted(m for m in ('pandera', 'polars', 'torch') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "['pandera', 'polars']"]
