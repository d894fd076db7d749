"""The documentation site builds with `make test`'s own command, strictly: a broken link, a
missing include or a page left out of the navigation fails the build."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def make_test_mkdocs_command() -> list[str]:
    """The mkdocs line of `make test`, as the Makefile runs it (with $(VENV)/bin resolved)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest: $(STAMP)\n", 1)[1].split("\n\n", 1)[0]
    (line,) = [line.strip() for line in recipe.splitlines() if "mkdocs build" in line]
    assert line.startswith("$(VENV)/bin/mkdocs build --strict")
    # --quiet would hide the warnings that --strict counts, and the build would pass
    assert "--quiet" not in line and " -q" not in line
    return shlex.split(line.replace("$(VENV)/bin/", f"{BIN}/"))


def _build(root: Path, site: Path) -> subprocess.CompletedProcess:
    command = make_test_mkdocs_command()
    command[command.index("--site-dir") + 1] = str(site)
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_site_builds_strictly_with_every_page(tmp_path):
    result = _build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")}
    for page in pages - {"index"}:
        assert (tmp_path / "site" / page / "index.html").exists(), page
    # the includes resolved: the benchmarks page holds BENCHMARKS.md, the CI page the workflow
    benchmarks = (tmp_path / "site" / "benchmarks" / "index.html").read_text()
    assert "Captions: validating 10 million rows" in benchmarks
    ci = re.sub(r"<[^>]+>", "", (tmp_path / "site" / "ci" / "index.html").read_text())
    assert "validate-datasets.yml" in ci and "repository: OWNER/uncollapse" in ci


def test_every_docs_page_is_in_the_navigation():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def files(nav) -> list[str]:
        found = []
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            found += files(value) if isinstance(value, list) else [value]
        return found

    assert sorted(files(config["nav"])) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))


def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in ("mkdocs.yml", "BENCHMARKS.md", "RELIABILITY.md"):
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / "docs", copy / "docs")
    page = copy / "docs" / "install.md"
    page.write_text(page.read_text() + "\nSee [the missing page](missing.md).\n")
    result = _build(copy, tmp_path / "site")
    assert result.returncode != 0
    assert "missing.md" in result.stderr
