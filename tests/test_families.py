"""The families table and what reads it: the template of docs/extending.md adds a fifth family
(``pairs``) with six new files and one line in ``FAMILIES``, and the command line, the registry
of finding codes and the data contracts all pick it up."""

from __future__ import annotations

import ast
import importlib
import json
import re
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import uncollapse.data
import uncollapse.families as families
import uncollapse.pipeline
import uncollapse.pipeline.cli
import uncollapse.validators
import uncollapse.validators.cli
from uncollapse.cli import make_main
from uncollapse.data.contracts_doc import contracts_markdown
from uncollapse.families import FAMILIES, RECIPES, Family, family, family_modules, recipe
from uncollapse.validators.codes import all_codes

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r'^```python title="([^"]+)"\n(.*?)^```', re.M | re.S)
LAYERS = {"data": uncollapse.data, "pipeline": uncollapse.pipeline,
          "validators": uncollapse.validators}


def guide_blocks() -> dict[str, str]:
    """``{path: code}`` of every titled code block of docs/extending.md."""
    return {path: code for path, code in BLOCK.findall(GUIDE.read_text())}


def _reload_command_modules() -> None:
    importlib.reload(uncollapse.pipeline.cli)
    importlib.reload(uncollapse.validators.cli)


@pytest.fixture
def fifth_family(tmp_path, monkeypatch):
    """The guide's ``pairs`` family installed from its blocks; the root group built with it."""
    blocks = guide_blocks()
    line = blocks.pop("uncollapse/families.py").strip().rstrip(",")
    for path, code in blocks.items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    for layer, package in LAYERS.items():
        monkeypatch.setattr(package, "__path__", [*package.__path__,
                                                 str(tmp_path / "uncollapse" / layer)])
    importlib.invalidate_caches()
    monkeypatch.setattr(families, "FAMILIES", (*FAMILIES, eval(line, {"Family": Family})))
    _reload_command_modules()
    yield {"files": sorted(blocks), "main": make_main()}
    monkeypatch.undo()
    for name in [m for m in sys.modules if ".pairs" in m]:
        del sys.modules[name]
    _reload_command_modules()


def test_the_guide_adds_a_family_with_six_files_and_one_line(fifth_family):
    assert fifth_family["files"] == [
        "uncollapse/data/pairs/__init__.py", "uncollapse/data/pairs/contract.py",
        "uncollapse/data/pairs/table.py", "uncollapse/validators/pairs/__init__.py",
        "uncollapse/validators/pairs/cli.py", "uncollapse/validators/pairs/rules.py"]
    assert [f.name for f in families.FAMILIES][-1] == "pairs"


def test_the_fifth_family_validates_from_the_command_line(fifth_family, tmp_path):
    main = fifth_family["main"]
    help_text = CliRunner().invoke(main, ["validate", "--help"]).output
    assert re.search(r"^\s+pairs\s+Check a pair table", help_text, re.M)
    good = tmp_path / "good.csv"
    good.write_text("id,group\n001,0\n002,0\n003,1\n004,1\n")
    result = CliRunner().invoke(main, ["validate", "pairs", str(good), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stats"] == {"rows": 4, "groups": 2}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,group\n001,0\n001,0\n003,1\n")
    result = CliRunner().invoke(main, ["validate", "pairs", str(bad), "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert {f["code"]: f["count"] for f in report["findings"]} == {
        "PAIRS_DUPLICATE_ID": 2, "PAIRS_SINGLETON_GROUP": 1}


def test_the_fifth_family_joins_the_codes_and_the_contracts(fifth_family):
    codes = all_codes()
    assert codes["PAIRS_DUPLICATE_ID"][0] == "uncollapse.validators.pairs.rules"
    assert codes["PAIRS_SINGLETON_GROUP"][1].severity == "warning"
    doc = contracts_markdown()
    assert "## Pair table" in doc
    assert "| `group` | Int64 | no | yes | items with equal group are positives" in doc
    assert doc.index("## Scene file") < doc.index("## Pair table")  # the table's order


def test_without_the_line_the_family_is_not_loaded():
    assert "pairs" not in [f.name for f in FAMILIES]
    assert "validate pairs" not in " ".join(
        f"validate {c.name}" for c in uncollapse.validators.cli.COMMANDS["validate"])
    assert "PAIRS_DUPLICATE_ID" not in all_codes()


def test_the_guide_code_is_clean_python():
    for path, code in guide_blocks().items():
        if path != "uncollapse/families.py":
            ast.parse(code, filename=path)
            assert "__all__" in code, path


def test_every_family_has_a_contract_and_build_commands_in_the_table_order():
    contracts = [f.name for f, _ in family_modules("data", "contract")]
    assert contracts == ["captions", "sequences", "attributes", "scenes"]
    builds = [c.name for c in uncollapse.pipeline.cli.COMMANDS["build"]]
    assert builds == ["captions", "chunks", "sequences", "attributes", "scenes"]


def test_a_layer_where_the_family_is_a_plain_module_is_not_imported(tmp_path, monkeypatch):
    # looking up validators/<family>/cli.py must not import a plain module validators/<family>.py
    # (the command line would load whatever that module loads, pandera and polars say)
    layer = tmp_path / "uncollapse" / "validators"
    layer.mkdir(parents=True)
    (layer / "plainfam.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.setattr(uncollapse.validators, "__path__",
                        [*uncollapse.validators.__path__, str(layer)])
    importlib.invalidate_caches()
    plain = Family("plainfam", "a family that is one module in the validators layer")
    assert plain.module("validators", "cli") is None
    assert "uncollapse.validators.plainfam" not in sys.modules
    assert plain.module("engines", "cli") is None  # no such layer


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="unknown family 'pair'; one of captions, sequences"):
        family("pair")
    with pytest.raises(ValueError, match="unknown recipe 'clip'; one of contrastive, lvm"):
        recipe("clip")
    assert recipe("lvm").family == "sequences"
    assert {r.family for r in RECIPES} == {f.name for f in FAMILIES}


def test_a_pair_table_with_a_missing_column_is_a_clear_error(fifth_family, tmp_path):
    table = tmp_path / "pairs.parquet"
    pl.DataFrame({"id": ["a"]}).write_parquet(table)
    result = CliRunner().invoke(fifth_family["main"], ["validate", "pairs", str(table)])
    assert result.exit_code == 2
    assert "missing column(s) group; a pair table has id, group" in result.stderr
