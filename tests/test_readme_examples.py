"""Every ```sh and ```python example of README.md runs as written, section by section.

Each section runs in its own copy of one scratch directory that holds what its examples read:
`data/` (the bundled data), tables and sequence files built from it, and small files in the
real source formats under the names the README uses (Flickr8k token files, Karpathy JSON, the
Flickr30k CSV, nlphuji parquet and save_to_disk folders, CelebA's text files, saved outputs).
Blocks of a section run in README order, so a block may read what an earlier one wrote.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from readme_blocks import Block, Command, readme_blocks, shell_commands

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BLOCKS = readme_blocks(README)
SECTIONS = list(dict.fromkeys(b.section for b in BLOCKS if b.lang in ("sh", "python")))
BIN = Path(sys.executable).parent

# Command lines that are not run, each with the reason. Everything else in a ```sh block runs.
NOT_RUN = {
    r"^pip install ": "installs from PyPI; the test runs in the environment already installed",
    r"^make (demo|test|bench|fuzz)\b": "creates .venv and runs the demo, the test suite (this "
                                       "test included), the benchmarks or about 12 minutes of "
                                       "fuzzing (tests/test_fuzz_smoke.py runs every fuzz "
                                       "target briefly)",
    r"^uncollapse build captions nlphuji/flickr30k ": "a Hugging Face hub id: needs the network",
    r"^uncollapse serve ": "a server runs until it is stopped; tests/test_trainers_cli.py starts "
                           "it as a process and calls it over HTTP",
    r"^torchrun |\bsrun ": "needs several GPUs or a SLURM cluster; tests/trainers/distributed/ "
                           "runs the same command under torchrun with two CPU processes",
}
# Sections whose examples are not run yet, with the reason.
SECTIONS_NOT_RUN: dict[str, str] = {}
# Python blocks that are not run, by their first line, with the reason (none at present).
PYTHON_NOT_RUN: dict[str, str] = {}


def not_run_reason(command: str) -> str | None:
    for pattern, reason in NOT_RUN.items():
        if re.search(pattern, command):
            return reason
    return None


def test_not_run_list_names_only_commands_the_readme_has():
    commands = [c.text for b in BLOCKS if b.lang == "sh" for c in shell_commands(b)]
    for pattern in NOT_RUN:
        assert any(re.search(pattern, c) for c in commands), f"stale exception: {pattern}"


def test_exit_markers_are_read_from_trailing_comments():
    block = Block("sh", 10, "S", "a x   # exit 1\nb y \\\n  --z   # irregular input: exit 1\n"
                  "# a comment\nc   # re-hash (exit 1 on mismatch)\n")
    assert shell_commands(block) == [Command(11, "a x", 1), Command(12, "b y --z", 1),
                                     Command(15, "c", 0)]


def test_every_section_with_examples_is_run():
    assert {"Set up", "Captions: rebuild, validate, diagnose", "Samplers",
            "Next-vector sequences", "Attributes and scenes", "Collapse diagnostics",
            "Cache"} <= set(SECTIONS)


def test_yaml_blocks_parse():
    import yaml  # pre-commit, in the dev extra, depends on pyyaml
    blocks = [b for b in BLOCKS if b.lang == "yaml"]
    assert blocks
    for block in blocks:
        assert isinstance(yaml.safe_load(block.text), dict), f"README line {block.line}"


# The scratch directory ---------------------------------------------------------------------

def _karpathy_image(filename, split, captions, imgid):
    return {"filename": filename, "imgid": imgid, "split": split,
            "sentids": list(range(5 * imgid, 5 * imgid + len(captions))),
            "sentences": [{"raw": c, "tokens": c.lower().split(), "imgid": imgid,
                           "sentid": 5 * imgid + i} for i, c in enumerate(captions)]}


FLICKR_IMAGES = ["1000092795", "10002456", "1000268201", "1000344755", "1000366164",
                 "1000523639"]


def _captions_of(image: str) -> list[str]:
    return [f"Picture {image} shows scene {n} ." for n in range(5)]


def write_caption_sources(root: Path) -> None:
    """Small files in the real formats of Flickr8k, Karpathy, Flickr30k CSV and nlphuji."""
    import datasets

    splits = ["train", "train", "restval", "val", "test", "train"]
    (root / "dataset_flickr30k.json").write_text(json.dumps({"dataset": "flickr30k", "images": [
        _karpathy_image(f"{image}.jpg", split, _captions_of(image), i)
        for i, (image, split) in enumerate(zip(FLICKR_IMAGES, splits, strict=True))]}))
    (root / "Flickr8k.token.txt").write_text("".join(
        f"{image}.jpg#{n}\t{caption}\n"
        for image in FLICKR_IMAGES for n, caption in enumerate(_captions_of(image))))
    for name, images in (("train", FLICKR_IMAGES[:4]), ("dev", FLICKR_IMAGES[4:5]),
                         ("test", FLICKR_IMAGES[5:])):
        (root / f"Flickr_8k.{name}Images.txt").write_text("".join(f"{i}.jpg\n" for i in images))
    (root / "results.csv").write_text("image_name| comment_number| comment\n" + "".join(
        f"{image}.jpg| {n}| {caption}\n"
        for image in FLICKR_IMAGES for n, caption in enumerate(_captions_of(image))))
    hub_layout = datasets.Dataset.from_dict({
        "image": [None] * len(FLICKR_IMAGES),
        "caption": [_captions_of(image) for image in FLICKR_IMAGES],
        "sentids": [[str(5 * i + n) for n in range(5)] for i in range(len(FLICKR_IMAGES))],
        "split": splits,
        "img_id": [str(i) for i in range(len(FLICKR_IMAGES))],
        "filename": [f"{image}.jpg" for image in FLICKR_IMAGES],
    })
    (root / "flickr30k_parquet").mkdir()
    hub_layout.to_parquet(str(root / "flickr30k_parquet" / "test-00000-of-00001.parquet"))
    hub_layout.save_to_disk(str(root / "saved_dataset_dir"))


def write_document_sources(root: Path) -> None:
    records = [{"url": f"https://example.org/{d}", "body": f"Paragraph {p} of article {d} ."}
               for d in range(3) for p in range(6)]
    (root / "articles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "my_docs").mkdir()
    for d in range(3):
        (root / "my_docs" / f"doc{d}.txt").write_text(
            " ".join(f"Sentence {s} of document {d}." for s in range(6)) + "\n")


CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young").split()


def write_celeba_files(root: Path, n: int = 4000, people: int = 400) -> None:
    """CelebA's three text files (synthetic values, real layout); the count line claims 3
    images more than there are, as in a truncated download."""
    rng = np.random.default_rng(0)
    share = rng.uniform(0.1, 0.6, len(CELEBA_NAMES))
    values = np.where(rng.random((n, len(CELEBA_NAMES))) < share, 1, -1)
    images = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    rows = [f"{img} " + " ".join(f"{v:2d}" for v in row) for img, row in
            zip(images, values, strict=True)]
    header = [str(n + 3), " ".join(CELEBA_NAMES) + " "]
    (root / "list_attr_celeba.txt").write_bytes(("\r\n".join(header + rows) + "\r\n").encode())
    identity = rng.integers(1, people + 1, n)
    (root / "identity_CelebA.txt").write_text(
        "".join(f"{img} {p}\n" for img, p in zip(images, identity, strict=True)))
    split_of_person = rng.choice([0, 1, 2], people + 1, p=[0.8, 0.1, 0.1])
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{img} {split_of_person[p]}\n" for img, p in zip(images, identity, strict=True)))
    np.save(root / "clip_image_embeddings.npy",
            rng.standard_normal((n, 32)).astype(np.float32))
    (root / "my_augment.py").write_text(
        "import numpy as np\nimport polars as pl\n\n"
        "from uncollapse.data.attributes.dataset import AttributeFlipDataset\n\n\n"
        "def make_dataset():\n"
        "    table = pl.read_parquet('attrs.parquet')\n"
        "    embeddings = np.load('clip_image_embeddings.npy')\n"
        "    return AttributeFlipDataset(embeddings, table.select(['Smiling', 'Male']),\n"
        "                                min_flips=1, max_flips=1, seed=0)\n")


def write_collapse_arrays(root: Path) -> None:
    """Saved outputs that predict each bundled COCO caption embedding by another caption of
    its image (no collapse), their targets, groups and labels, and healthy slots."""
    embeddings = REPO / "data" / "coco" / "embeddings"
    targets = np.load(embeddings / "minilm_l6_v2.npy").astype(np.float32)
    _, groups = np.unique(np.load(embeddings / "image_ids.npy"), return_inverse=True)
    order = np.argsort(groups, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(groups[order])) + 1]
    sizes = np.diff(np.r_[starts, len(order)])
    group_of = np.repeat(np.arange(len(starts)), sizes)
    position = np.arange(len(order)) - starts[group_of]
    partner = np.empty_like(order)
    partner[order] = order[starts[group_of] + (position + 1) % sizes[group_of]]
    np.save(root / "outputs.npy", targets[partner])
    np.save(root / "targets.npy", targets)
    np.save(root / "match_ids.npy", groups.astype(np.int64))
    np.save(root / "classes.npy", groups.astype(np.int64))
    np.save(root / "slots.npy",
            np.random.default_rng(0).standard_normal((256, 4, 32)).astype(np.float32))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """The directory every section starts from (built once for the module)."""
    from uncollapse.cache.store import Cache
    from uncollapse.pipeline.captions import build_captions
    from uncollapse.pipeline.sequences import build_chunks, build_sequences

    root = tmp_path_factory.mktemp("readme")
    (root / "data").symlink_to(REPO / "data")
    cache = Cache(root / ".cache")
    coco = REPO / "data" / "coco" / "captions_val2017_1000.json"
    table = build_captions(coco, cache=cache).table()
    build_captions(coco, split="train", cache=cache)  # a second entry, other options
    table.write_parquet(root / "captions.parquet")
    table.write_csv(root / "captions.csv")
    chunks = build_chunks(REPO / "data" / "wikitext2" / "wikitext2_test.txt", unit="line",
                          cache=cache)
    shutil.copyfile(chunks.path, root / "chunks.parquet")
    vectors = np.random.default_rng(0).standard_normal((chunks.table().height, 64))
    np.save(root / "vectors.npy", vectors.astype(np.float32))
    for name, compact in (("seq.npz", False), ("seq_compact.npz", True)):
        built = build_sequences(root / "chunks.parquet", context_length=4,
                                vectors=root / "vectors.npy", compact=compact, quiet=True,
                                cache=cache)
        shutil.copyfile(built.path, root / name)
    write_caption_sources(root)
    write_document_sources(root)
    write_celeba_files(root)
    write_collapse_arrays(root)
    return root


def section_dir(scratch: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(scratch, work, symlinks=True)
    return work


def environment(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["UNCOLLAPSE_CACHE"] = str(work / ".cache")
    env["NO_COLOR"] = "1"
    env["PYTHONPATH"] = str(work)  # `--dataset my_augment.py:...` and module paths
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
    script = []
    for i, command in enumerate(commands):
        script.append(f"{{ {command.text} ; }} > .out_{i} 2>&1; echo $? > .rc_{i}")
    result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=environment(work),
                            capture_output=True, text=True, timeout=600)
    failures = []
    for i, command in enumerate(commands):
        want = command.exit_code
        if "--device cuda" in command.text and not cuda_available():
            want = 2  # no GPU here: the command must stop cleanly, naming the device
        rc_file = work / f".rc_{i}"
        got = int(rc_file.read_text()) if rc_file.exists() else None
        if got != want:
            output = (work / f".out_{i}").read_text() if (work / f".out_{i}").exists() else ""
            failures.append(f"README line {command.line}: `{command.text}` exited {got}, "
                            f"expected {want}\n{output[-3000:]}{result.stderr[-1000:]}")
    return failures


def run_python_block(block: Block, work: Path) -> list[str]:
    first = block.text.strip().splitlines()[0]
    if first in PYTHON_NOT_RUN:
        return []
    script = work / f"readme_line_{block.line}.py"
    script.write_text(block.text)
    result = subprocess.run([sys.executable, script.name], cwd=work, env=environment(work),
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        return [f"README line {block.line}: python block exited {result.returncode}\n"
                f"{(result.stdout + result.stderr)[-4000:]}"]
    return []


@pytest.mark.parametrize("section", [s for s in SECTIONS if s not in SECTIONS_NOT_RUN])
def test_readme_section_examples_run(section, scratch, tmp_path):
    work = section_dir(scratch, tmp_path)
    failures = []
    for block in (b for b in BLOCKS if b.section == section):
        if block.lang == "sh":
            failures += run_shell_block(block, work)
        elif block.lang == "python":
            failures += run_python_block(block, work)
    assert not failures, "\n\n".join(failures)
