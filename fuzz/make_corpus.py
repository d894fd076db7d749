"""Regenerate the seed corpus under ``fuzz/corpus`` from the repository's bundled data.

The seeds are small real files (a few KB each): the first images of the bundled COCO captions in
every caption source layout, the first WikiText articles as text, JSONL and Parquet, and what the
pipeline's own commands build from them. Run ``python -m fuzz.make_corpus`` from the repository
root after a format changes; the fuzz targets only read the committed files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from click.testing import CliRunner

from uncollapse.cli import main

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fuzz" / "corpus"
COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"
WIKITEXT = ROOT / "data" / "wikitext2" / "wikitext2_test.txt"
IMAGES = 8
ATTRIBUTES = ["Smiling", "Male", "Eyeglasses"]


def run(*args) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exit_code != 0:
        raise SystemExit(f"uncollapse {' '.join(map(str, args))}: {result.output}")


def coco_subset() -> dict:
    coco = json.loads(COCO.read_text(encoding="utf-8"))
    images = coco["images"][:IMAGES]
    ids = {image["id"] for image in images}
    return {"info": coco.get("info", {}), "images": images,
            "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}


def caption_sources(out: Path) -> None:
    coco = coco_subset()
    (out / "captions_val2017.json").write_text(json.dumps(coco), encoding="utf-8")
    by_image: dict[int, list[str]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation["caption"].strip())
    tokens = [f"{img}.jpg#{n}\t{caption}" for img, caps in by_image.items()
              for n, caption in enumerate(caps)]
    (out / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    csv = ["image_name| comment_number| comment"] + [
        f"{img}.jpg| {n}| {caption}" for img, caps in by_image.items()
        for n, caption in enumerate(caps)]
    (out / "results.csv").write_text("\n".join(csv) + "\n", encoding="utf-8")
    rows = [(caption, f"{img}.jpg", "train" if i % 2 else "test")
            for i, (img, caps) in enumerate(by_image.items()) for caption in caps]
    pl.DataFrame(rows, schema=["caption", "filename", "split"], orient="row").write_parquet(
        out / "flickr30k.parquet")


def chunk_sources(out: Path) -> None:
    lines = WIKITEXT.read_text(encoding="utf-8").splitlines(keepends=True)
    heads = [i for i, line in enumerate(lines)
             if line.startswith(" = ") and not line.startswith(" = = ")]
    text = "".join(lines[:heads[2]])[:6000]
    (out / "wikitext.txt").write_text(text, encoding="utf-8")
    records = [{"doc_id": f"doc{d}", "text": f"Document {d} paragraph {t}.\n\nAnd more {t}."}
               for d in range(4) for t in range(5)]
    (out / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records),
                                    encoding="utf-8")
    pl.DataFrame(records).write_parquet(out / "docs.parquet")


def attribute_sources(out: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.choice([-1, 1], size=(24, len(ATTRIBUTES)))
    rows = [f"{i:06d}.jpg " + " ".join(f"{v:2d}" for v in row) for i, row in enumerate(values, 1)]
    (out / "list_attr_celeba.txt").write_text(
        "\n".join([str(len(values)), " ".join(ATTRIBUTES), *rows]) + "\n", encoding="utf-8")
    (out / "identity_CelebA.txt").write_text(
        "".join(f"{i:06d}.jpg {1 + (i - 1) // 3}\n" for i in range(1, 25)), encoding="utf-8")
    (out / "list_eval_partition.txt").write_text(
        "".join(f"{i:06d}.jpg {0 if i <= 18 else 2}\n" for i in range(1, 25)), encoding="utf-8")
    csv = ["image_id," + ",".join(ATTRIBUTES)] + [
        f"{i:06d}.jpg," + ",".join(str((v + 1) // 2) for v in row)
        for i, row in enumerate(values, 1)]
    (out / "attrs.csv").write_text("\n".join(csv) + "\n", encoding="utf-8")


def built_tables(corpus: Path, tmp: Path) -> None:
    """Tables, sequence and scene files made by the pipeline from the seeds above."""
    cache = tmp / "cache"
    tables = corpus / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    run("build", "captions", corpus / "captions" / "captions_val2017.json",
        "-o", tables / "captions.parquet", "--cache-dir", cache, "--quiet")
    pl.read_parquet(tables / "captions.parquet").write_csv(tables / "captions.csv")
    run("build", "attributes", corpus / "attributes" / "list_attr_celeba.txt",
        "--identities", corpus / "attributes" / "identity_CelebA.txt",
        "--partition", corpus / "attributes" / "list_eval_partition.txt",
        "-o", tables / "attrs.parquet", "--cache-dir", cache, "--quiet")

    sequences = corpus / "sequences"
    sequences.mkdir(parents=True, exist_ok=True)
    run("build", "chunks", corpus / "chunks" / "docs.jsonl", "-o", sequences / "chunks.parquet",
        "--cache-dir", cache, "--quiet")
    rows = pl.read_parquet(sequences / "chunks.parquet").height
    rng = np.random.default_rng(0)
    np.save(sequences / "vectors.npy", rng.normal(size=(rows, 8)).astype(np.float32))
    for name, extra in (("dense.npz", []), ("compact.npz", ["--compact"])):
        run("build", "sequences", sequences / "chunks.parquet", "--vectors",
            sequences / "vectors.npy", "--context", 2, *extra, "-o", sequences / name,
            "--cache-dir", cache, "--quiet")

    scenes = corpus / "scenes"
    scenes.mkdir(parents=True, exist_ok=True)
    run("build", "scenes", "--num", 6, "--size", 16, "--max-objects", 3, "-o",
        scenes / "scenes.npz", "--cache-dir", cache, "--quiet")

    embeddings = corpus / "embeddings"
    embeddings.mkdir(parents=True, exist_ok=True)
    captions = pl.read_parquet(tables / "captions.parquet")
    match_id = captions["match_id"].to_numpy()
    direction = rng.normal(size=(match_id.max() + 1, 16))
    text = direction[match_id] + 0.5 * rng.normal(size=(len(match_id), 16))
    np.save(embeddings / "targets.npy", text.astype(np.float32))
    np.save(embeddings / "pred.npy", (text + 0.3 * rng.normal(size=text.shape)).astype(
        np.float32))
    np.save(embeddings / "labels.npy", match_id.astype(np.int64))
    np.save(embeddings / "images.npy", direction.astype(np.float32))
    attrs = pl.read_parquet(tables / "attrs.parquet")
    np.save(embeddings / "attr_embeddings.npy",
            rng.normal(size=(attrs.height, 16)).astype(np.float32))

    manifests = corpus / "cache"
    manifests.mkdir(parents=True, exist_ok=True)
    manifest = next(cache.glob("chunks/*/*/manifest.json"))
    shutil.copy(manifest, manifests / "manifest.json")


def main_() -> None:
    for family, make in (("captions", caption_sources), ("chunks", chunk_sources),
                         ("attributes", attribute_sources)):
        (CORPUS / family).mkdir(parents=True, exist_ok=True)
        make(CORPUS / family)
    with tempfile.TemporaryDirectory() as tmp:
        built_tables(CORPUS, Path(tmp))


if __name__ == "__main__":
    main_()
