"""``docs/data-contracts.md``, generated from the contracts' own definitions so it cannot drift.

Run ``python -m uncollapse.data.contracts_doc > docs/data-contracts.md`` after changing a
contract; a test fails while the file and the code disagree. Every family of the families table
(``uncollapse.families``) that has a ``uncollapse/data/<family>/contract.py`` contributes its
``DOC_SECTIONS``: the prose of each section (what a row is, the rules a checker enforces) and
the columns or arrays it describes, with their dtypes, shapes and meanings, as the contract
module defines them.
"""

from __future__ import annotations

from collections.abc import Iterable

from uncollapse.data.spec import ArraySpec, ColumnSpec, DocSection
from uncollapse.families import family_modules

__all__ = ["COMMAND", "contracts_markdown", "section_markdown", "spec_table"]

COMMAND = "python -m uncollapse.data.contracts_doc > docs/data-contracts.md"

INTRO = f"""\
# Data contracts

What each data family's files hold, column by column and array by array. Every command that
builds a family writes this layout, every `uncollapse validate` command checks it, and the
torch Datasets read it. Generated from the definitions in `uncollapse.data` by
`{COMMAND}`; do not edit by hand.

Rules shared by every family:

- Files are plain data. Tables are Parquet (CSV where noted); arrays are NPZ files of numeric
  arrays that load with `numpy.load(path, allow_pickle=False)`. Object arrays, pickles and
  other code-carrying formats are refused, never loaded.
- Row `i` of every column or array describes the same item; no family relies on a row's
  position to mean anything else (an id is never a row number).
- Outputs are written atomically: a file at its final path is complete.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def spec_table(specs: dict, other_columns: ColumnSpec | None = None) -> list[str]:
    """Columns (``ColumnSpec``) or NPZ arrays (``ArraySpec``) as the lines of a markdown table."""
    kinds = {type(spec) for spec in specs.values()}
    if kinds == {ArraySpec}:
        lines = ["| array | shape | dtype | required | meaning |", "|---|---|---|---|---|"]
        lines += [f"| `{name}` | {spec.shape} | {spec.dtype} | {_yes(spec.required)} | "
                  f"{_cell(spec.meaning)} |" for name, spec in specs.items()]
        return lines
    if kinds != {ColumnSpec}:
        raise TypeError(f"a section describes columns or arrays, not {sorted(map(str, kinds))}")
    lines = ["| column | dtype | nulls | required | meaning |", "|---|---|---|---|---|"]
    rows = [(f"`{name}`", spec) for name, spec in specs.items()]
    if other_columns is not None:
        rows.append(("every other column", other_columns))
    lines += [f"| {name} | {spec.dtype} | {_yes(spec.nullable)} | {_yes(spec.required)} | "
              f"{_cell(spec.meaning)} |" for name, spec in rows]
    return lines


def section_markdown(section: DocSection) -> str:
    """One section: its prose, then its table (when it describes columns or arrays)."""
    if section.specs is None:
        return section.text
    return section.text + "\n" + "\n".join(spec_table(dict(section.specs),
                                                      section.other_columns)) + "\n"


def contracts_markdown(sections: Iterable[DocSection] | None = None) -> str:
    """The whole of ``docs/data-contracts.md``: every family's sections, in the table's order."""
    if sections is None:
        sections = [section for _, module in family_modules("data", "contract")
                    for section in getattr(module, "DOC_SECTIONS", ())]
    return "\n".join([INTRO, *map(section_markdown, sections)])


if __name__ == "__main__":
    print(contracts_markdown(), end="")
