"""Write every input the README and docs examples read into one folder.

    python docs/examples/make_inputs.py scratch && cd scratch

Run it from the root of a checkout with uncollapse installed (`pip install -e '.[dev]'`, or
`make test` once). The folder gets:

- `data/`: a link to the bundled data (COCO 2017 captions, WikiText-2, caption embeddings);
- tables and files built from the bundled data with uncollapse itself: `captions.parquet` and
  `captions.csv` (the COCO captions), `chunks.parquet` (WikiText-2 lines), `vectors.npy`
  (seeded stand-in vectors, one per chunk), `seq.npz` and `seq_compact.npz`;
- small STAND-INS, in the real formats, for data that cannot ship here (licences, size): a
  Flickr8k token file with its split lists, a Karpathy split JSON, the Flickr30k CSV, the
  `nlphuji/flickr30k` layout as Parquet and as a `save_to_disk` folder, JSONL articles and a
  folder of text documents, CelebA's three text files (synthetic values; the count line claims
  3 images more than there are, as in a truncated download), image embeddings for them, an
  attribute-flip augmentation module (`my_augment.py`), and saved model outputs with their
  targets, groups and labels (`outputs.npy`, ...; each bundled COCO caption embedding predicted
  by another caption of its image) and slots.

The builds go through the uncollapse cache (`$UNCOLLAPSE_CACHE`, else the platform cache
folder); the COCO table is built twice (all splits, and `--split train`), so the cache examples
have two entries to compare. Everything is seeded: the same files on every run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"

FLICKR_IMAGES = ["1000092795", "10002456", "1000268201", "1000344755", "1000366164",
                 "1000523639"]
CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young").split()

MY_AUGMENT = '''\
"""An attribute-flip augmentation of your own, for `uncollapse validate flips --dataset`."""
import numpy as np
import polars as pl

from uncollapse.data.attributes.dataset import AttributeFlipDataset


def make_dataset():
    table = pl.read_parquet("attrs.parquet")
    embeddings = np.load("clip_image_embeddings.npy")
    return AttributeFlipDataset(embeddings, table.select(["Smiling", "Male"]),
                                min_flips=1, max_flips=1, seed=0)
'''


def _captions_of(image: str) -> list[str]:
    return [f"Picture {image} shows scene {n} ." for n in range(5)]


def _karpathy_image(filename: str, split: str, captions: list[str], imgid: int) -> dict:
    return {"filename": filename, "imgid": imgid, "split": split,
            "sentids": list(range(5 * imgid, 5 * imgid + len(captions))),
            "sentences": [{"raw": c, "tokens": c.lower().split(), "imgid": imgid,
                           "sentid": 5 * imgid + i} for i, c in enumerate(captions)]}


def write_caption_sources(root: Path) -> None:
    """Flickr8k token file and split lists, Karpathy JSON, Flickr30k CSV, nlphuji layout."""
    import datasets

    datasets.disable_progress_bars()
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
    """JSONL articles (`url`, `body`) and a folder of text documents."""
    records = [{"url": f"https://example.org/{d}", "body": f"Paragraph {p} of article {d} ."}
               for d in range(3) for p in range(6)]
    (root / "articles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "my_docs").mkdir()
    for d in range(3):
        (root / "my_docs" / f"doc{d}.txt").write_text(
            " ".join(f"Sentence {s} of document {d}." for s in range(6)) + "\n")


def write_celeba_files(root: Path, n: int = 4000, people: int = 400) -> None:
    """CelebA's three text files (synthetic values, real layout), image embeddings for them
    and an augmentation module."""
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
    (root / "my_augment.py").write_text(MY_AUGMENT)


def write_collapse_arrays(root: Path) -> None:
    """Saved outputs that predict each bundled COCO caption embedding by another caption of
    its image (no collapse), their targets, groups and labels, and healthy slots."""
    embeddings = DATA / "coco" / "embeddings"
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


def build_from_bundled_data(root: Path) -> None:
    """The caption table, chunks, stand-in vectors and sequence files, built by uncollapse."""
    from uncollapse.pipeline.captions import build_captions
    from uncollapse.pipeline.sequences import build_chunks, build_sequences

    coco = DATA / "coco" / "captions_val2017_1000.json"
    table = build_captions(coco).table()
    build_captions(coco, split="train")  # a second cache entry, other options
    table.write_parquet(root / "captions.parquet")
    table.write_csv(root / "captions.csv")
    chunks = build_chunks(DATA / "wikitext2" / "wikitext2_test.txt", unit="line")
    shutil.copyfile(chunks.path, root / "chunks.parquet")
    # stand-in vectors: seeded noise, one 64-d vector per chunk (a real encoder: `uncollapse
    # build sequences --encoder`, extra `encoders`)
    vectors = np.random.default_rng(0).standard_normal((chunks.table().height, 64))
    np.save(root / "vectors.npy", vectors.astype(np.float32))
    for name, compact in (("seq.npz", False), ("seq_compact.npz", True)):
        built = build_sequences(root / "chunks.parquet", context_length=4,
                                vectors=root / "vectors.npy", compact=compact, quiet=True)
        shutil.copyfile(built.path, root / name)


def make_inputs(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise SystemExit(f"make_inputs: {root} is not empty; give a new folder")
    (root / "data").symlink_to(DATA)
    build_from_bundled_data(root)
    write_caption_sources(root)
    write_document_sources(root)
    write_celeba_files(root)
    write_collapse_arrays(root)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a new or empty folder to write into")
    folder = parser.parse_args(argv).folder
    make_inputs(folder)
    names = sorted(p.name for p in folder.iterdir())
    print(f"wrote {len(names)} inputs into {folder}: {', '.join(names)}", file=sys.stderr)


if __name__ == "__main__":
    main()
