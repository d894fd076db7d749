"""Every ```sh and ```python example of README.md and of the docs pages runs as written.

Each README section, and each docs page, runs in its own copy of one scratch folder that
`python docs/examples/make_inputs.py` writes, the command the pages name for their inputs:
`data/` (the bundled data), tables and sequence files built from it, and small files in the
real source formats under the names the examples use (Flickr8k token files, Karpathy JSON, the
Flickr30k CSV, nlphuji parquet and save_to_disk folders, CelebA's text files, saved outputs).
Blocks of a unit run in order, so a block may read what an earlier one wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from readme_blocks import Block, Command, readme_blocks, shell_commands

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAKE_INPUTS = "python docs/examples/make_inputs.py"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
BLOCKS = {page: readme_blocks(page) for page in PAGES}
BIN = Path(sys.executable).parent


def _units() -> dict[str, list[Block]]:
    """What runs together, from one scratch copy: a README section, or a whole docs page."""
    units: dict[str, list[Block]] = {}
    for page, blocks in BLOCKS.items():
        for block in blocks:
            if block.lang not in ("sh", "python") or not_run_block(block):
                continue
            name = (f"README: {block.section}" if page == README
                    else str(page.relative_to(REPO)))
            units.setdefault(name, []).append(block)
    return units


# Command lines that are not run, each with the reason. Everything else in a ```sh block runs.
NOT_RUN = {
    r"^pip install ": "installs packages; the test runs in the environment already installed "
                      "(tests/test_lean_install.py installs the wheel into a fresh one)",
    r"^pip wheel ": "tests/test_lean_install.py builds the wheel with this command",
    r"^make (demo|test|docs|bench|fuzz)\b": "creates .venv and runs the demo, the test suite "
                                           "(this test included), the docs build, the "
                                           "benchmarks or about 12 minutes of fuzzing "
                                           "(tests/test_fuzz_smoke.py runs every fuzz target "
                                           "briefly; tests/docs/test_docs_site.py builds the "
                                           "site)",
    r"^python docs/examples/make_inputs\.py ": "writes the scratch folder every unit starts "
                                               "from (the scratch fixture runs it)",
    r"^uncollapse build captions nlphuji/flickr30k ": "a Hugging Face hub id: needs the network",
    r"^uncollapse serve ": "a server runs until it is stopped; tests/test_trainers_cli.py starts "
                           "it as a process and calls it over HTTP",
    r"^torchrun |\bsrun ": "needs several GPUs or a SLURM cluster; tests/trainers/distributed/ "
                           "runs the same command under torchrun with two CPU processes",
    r"^_UNCOLLAPSE_COMPLETE=|^echo '\. ~/\.uncollapse": "writes the completion script into the "
                                                       "home folder; tests/docs/"
                                                       "test_cli_reference.py loads it in bash "
                                                       "and completes with it",
}
# Python blocks that are not run: a block with a title is the content of a file to create
# (docs/extending.md's worked family; tests/test_families.py builds that family).
def not_run_block(block: Block) -> str | None:
    if block.lang == "python" and "title=" in block.attrs:
        return "the content of a file named by its title, not a script"
    return None


def not_run_reason(command: str) -> str | None:
    for pattern, reason in NOT_RUN.items():
        if re.search(pattern, command):
            return reason
    return None


UNITS = _units()


def test_not_run_list_names_only_commands_the_pages_have():
    commands = [c.text for blocks in BLOCKS.values() for b in blocks if b.lang == "sh"
                for c in shell_commands(b)]
    for pattern in NOT_RUN:
        assert any(re.search(pattern, c) for c in commands), f"stale exception: {pattern}"


def test_exit_markers_are_read_from_trailing_comments():
    block = Block("sh", 10, "S", "a x   # exit 1\nb y \\\n  --z   # irregular input: exit 1\n"
                  "# a comment\nc   # re-hash (exit 1 on mismatch)\n")
    assert shell_commands(block) == [Command(11, "a x", 1), Command(12, "b y --z", 1),
                                     Command(15, "c", 0)]


def test_fence_attributes_are_kept_apart_from_the_language(tmp_path):
    page = tmp_path / "p.md"
    page.write_text('## S\n\n```python title="x.py"\nA = 1\n```\n\n```sh\nls\n```\n')
    blocks = readme_blocks(page)
    assert [(b.lang, b.attrs, b.text) for b in blocks] == [
        ("python", 'title="x.py"', "A = 1\n"), ("sh", "", "ls\n")]
    assert not_run_block(blocks[0]) and not not_run_block(blocks[1])


def test_every_section_and_page_with_examples_is_run():
    readme = ("The five-minute tour", "The families",
              "Samplers, diagnostics, training and the cache")
    assert {f"README: {s}" for s in readme} <= set(UNITS)
    assert {f"docs/{p}.md" for p in ("captions", "samplers", "sequences", "attributes-scenes",
                                     "diagnostics", "training", "cache", "python-api",
                                     "quickstart")} <= set(UNITS)


def test_the_readme_tour_is_the_quick_start_tour():
    def tour(page: Path, section: str) -> list[str]:
        return [b.text for b in BLOCKS[page] if b.section == section]

    readme = tour(README, "The five-minute tour")
    assert len(readme) >= 6
    assert readme == tour(REPO / "docs" / "quickstart.md", "The five-minute tour")


def _yaml_text(block: Block) -> str:
    """The block's YAML, with a snippet line (`--8<-- "file"`) replaced by the file."""
    included = re.fullmatch(r'--8<-- "([^"]+)"\n', block.text)
    return (REPO / included.group(1)).read_text() if included else block.text


def test_yaml_blocks_parse():
    import yaml  # pre-commit, in the dev extra, depends on pyyaml
    blocks = [(page, b) for page, blocks in BLOCKS.items() for b in blocks if b.lang == "yaml"]
    assert len(blocks) >= 5
    for page, block in blocks:
        loaded = yaml.safe_load(_yaml_text(block))
        assert isinstance(loaded, (dict, list)), f"{page.name} line {block.line}"


# The scratch folder ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """The folder every unit starts from, written by the command the pages name."""
    root = tmp_path_factory.mktemp("examples") / "scratch"
    env = {**environment(root), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, *MAKE_INPUTS.split()[1:], str(root)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr
    return root


def _scratch_inputs(scratch: Path) -> list[str]:
    return sorted(p.name for p in scratch.iterdir() if p.name not in ("data", ".cache"))


def test_every_page_that_reads_a_made_input_names_the_command_that_makes_it(scratch):
    names = _scratch_inputs(scratch)
    assert {"Flickr8k.token.txt", "dataset_flickr30k.json", "results.csv", "vectors.npy",
            "list_attr_celeba.txt", "clip_image_embeddings.npy", "outputs.npy",
            "my_augment.py"} <= set(names)
    pattern = re.compile(r"(?<![\w/.-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])")
    for unit, blocks in UNITS.items():
        used = sorted({m for b in blocks for m in pattern.findall(b.text)})
        if not used:
            continue
        if unit.startswith("README: "):  # the section's own text
            text = README.read_text().split(f"\n## {unit[8:]}\n", 1)[1].split("\n## ", 1)[0]
        else:
            text = (REPO / unit).read_text()
        assert f"{MAKE_INPUTS} scratch" in text, f"{unit} reads {used} without naming the command"


def section_dir(scratch: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(scratch, work, symlinks=True)
    return work


def environment(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["UNCOLLAPSE_CACHE"] = str(work / ".cache")
    env["NO_COLOR"] = "1"
    env["HF_DATASETS_CACHE"] = str(work / ".hf-cache")  # load_dataset examples: not ~/.cache
    # `--dataset my_augment.py:...` and module paths; then this checkout's package
    env["PYTHONPATH"] = os.pathsep.join([str(work), str(REPO)])
    return env


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run_shell_block(block: Block, work: Path) -> list[str]:
    """Runs the block's commands in one bash process (so a variable set by one line reaches
    the next) and returns a failure message per command whose exit code is not the one
    expected."""
    commands = [c for c in shell_commands(block) if not_run_reason(c.text) is None]
    if not commands:
        return []
    for stale in work.glob(".rc_*"):
        stale.unlink()
    script = []
    for i, command in enumerate(commands):
        script.append(f"{{ {command.text} ; }} > .out_{i} 2>&1; echo $? > .rc_{i}")
    result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=environment(work),
                            capture_output=True, text=True, timeout=3600)
    failures = []
    for i, command in enumerate(commands):
        want = command.exit_code
        if "--device cuda" in command.text and not cuda_available():
            want = 2  # no GPU here: the command must stop cleanly, naming the device
        rc_file = work / f".rc_{i}"
        got = int(rc_file.read_text()) if rc_file.exists() else None
        if got != want:
            output = (work / f".out_{i}").read_text() if (work / f".out_{i}").exists() else ""
            failures.append(f"line {command.line}: `{command.text}` exited {got}, "
                            f"expected {want}\n{output[-3000:]}{result.stderr[-1000:]}")
    return failures


def run_python_block(block: Block, work: Path) -> list[str]:
    script = work / f"example_line_{block.line}.py"
    script.write_text(block.text)
    result = subprocess.run([sys.executable, script.name], cwd=work, env=environment(work),
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        return [f"line {block.line}: python block exited {result.returncode}\n"
                f"{(result.stdout + result.stderr)[-4000:]}"]
    return []


@pytest.mark.parametrize("unit", list(UNITS))
def test_examples_run(unit, scratch, tmp_path):
    work = section_dir(scratch, tmp_path)
    failures = []
    for block in UNITS[unit]:
        if block.lang == "sh":
            failures += run_shell_block(block, work)
        else:
            failures += run_python_block(block, work)
    assert not failures, f"{unit}:\n" + "\n\n".join(failures)
