"""Caption slice speed: validating a 10-million-row caption table, and building a
Flickr30k-sized token file (31,783 images, 158,915 captions).

Run: .venv/bin/python benchmarks/bench_captions.py [--rows 10000000] [--pandas]
Validation runs the pandera model ``CaptionTable`` (every rule, lazily) on the in-memory
table, and again from the Parquet file as `validate captions` does; its peer is the same rules
as plain polars expressions in one ``select``/``group_by`` pass without pandera, timed in the
same process on the same table (``--pandas`` adds a pandas groupby of the grouping rules).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from timing import median_time

from uncollapse.cache.store import Cache
from uncollapse.data.captions.contract import (
    CAPTION,
    CAPTION_IDX,
    IMAGE_ID,
    IMAGE_PATH,
    MATCH_ID,
    SOURCE_ROW,
    SPLIT,
)
from uncollapse.pipeline.captions import build_captions
from uncollapse.validators.captions.measure import (
    CONTROL_CHARACTERS,
    RECORD_KEY,
    CaptionMeasurements,
    normalised_caption,
)
from uncollapse.validators.captions.rules import (
    caption_table_model,
    validate_caption_frame,
    validate_captions,
)

WORDS = np.array("a an the dog cat man woman child runs sits stands on in under near red "
                 "blue green grass street beach ball water table with holding two three".split())


def random_sentences(n: int, n_words: int, rng: np.random.Generator) -> pl.Series:
    vocabulary = pl.Series(WORDS)
    columns = [vocabulary.gather(rng.integers(0, len(WORDS), size=n)).alias(f"w{i}")
               for i in range(n_words)]
    return pl.DataFrame(columns).select(pl.concat_str(pl.all(), separator=" "))["w0"]


def synthetic_table(n_rows: int, per_group: int, rng: np.random.Generator) -> pl.DataFrame:
    """A healthy caption table: groups of ``per_group`` captions, 8-word captions."""
    n_groups = n_rows // per_group
    image_number = rng.choice(10 * n_groups, size=n_groups, replace=False)
    image_id = pl.Series(image_number).cast(pl.String).str.zfill(12)
    order = image_id.arg_sort()
    captions = random_sentences(n_rows, 8, rng)
    group = np.repeat(np.arange(n_groups), per_group)
    return pl.DataFrame({
        IMAGE_ID: image_id.gather(order).gather(group),
        MATCH_ID: pl.Series(group, dtype=pl.Int64),
        CAPTION_IDX: pl.Series(np.tile(np.arange(per_group), n_groups), dtype=pl.Int16),
        CAPTION: captions,
        SPLIT: pl.Series(np.where(group % 20 == 0, "test", "train")),
        SOURCE_ROW: pl.Series(np.arange(n_rows), dtype=pl.Int64),
        IMAGE_PATH: pl.Series([None] * n_rows, dtype=pl.String),
    })


def write_token_file(path: Path, n_images: int, rng: np.random.Generator) -> int:
    names = pl.Series(rng.choice(10**10, size=n_images, replace=False)).cast(pl.String)
    counts = np.full(n_images, 5)  # Flickr30k: 5 captions for each of 31,783 images
    image = names.gather(np.repeat(np.arange(n_images), counts))
    number = np.arange(len(image)) - np.repeat(np.cumsum(counts) - counts, counts)
    caption = random_sentences(len(image), 10, rng)
    frame = pl.DataFrame({"image": image, "number": number, "caption": caption})
    frame = frame.sample(fraction=1.0, shuffle=True, seed=0)  # captions spread out of order
    lines = frame.select(pl.format("{}.jpg#{}\t{} .", "image", "number", "caption"))
    path.write_text("\n".join(lines.to_series().to_list()) + "\n")
    return len(image)


def pandas_grouping_checks(path: Path) -> None:
    import pandas as pd

    frame = pd.read_parquet(path)
    sizes = frame.groupby(MATCH_ID).size()
    _ = (sizes == 1).mean()
    _ = frame.groupby(IMAGE_ID)[MATCH_ID].nunique().gt(1).sum()
    _ = frame.groupby(IMAGE_ID)[SPLIT].nunique().gt(1).sum()
    key = frame[CAPTION].str.lower().str.replace(r"[^\w]+", " ", regex=True).str.strip()
    _ = frame.assign(key=key).groupby("key")[MATCH_ID].nunique().gt(1).sum()


def plain_polars_rules(frame: pl.DataFrame, min_group: int, max_group: int) -> dict:
    """Every rule of the model as plain polars expressions: one pass over the rows, one
    group_by per grouping key, counts only (no pandera, no examples)."""
    caption = pl.col(CAPTION)
    number = pl.col(IMAGE_ID).cast(pl.Int64, strict=False)
    row = pl.int_range(pl.len())
    rows = frame.lazy().select(
        pl.col(MATCH_ID), pl.col(SPLIT),
        image=pl.col(IMAGE_ID).hash(), key=normalised_caption(caption).hash())
    per_row = frame.lazy().select(
        nulls=pl.sum_horizontal(pl.col(IMAGE_ID, MATCH_ID, CAPTION_IDX,
                                       SOURCE_ROW).null_count()),
        empty=(caption.str.strip_chars().fill_null("") == "").sum(),
        control=caption.str.contains_any(CONTROL_CHARACTERS).sum(),
        record_key=caption.str.contains(RECORD_KEY).sum(),
        length=(~caption.str.len_chars().is_between(2, 1000)).sum(),
        positional=((number == row) | (number == row + 1)
                    | (number == pl.col(SOURCE_ROW))).mean())
    groups = rows.group_by(MATCH_ID).agg(
        size=pl.len(), images=pl.col("image").n_unique(),
        splits=pl.col(SPLIT).drop_nulls().n_unique())
    images = rows.group_by("image").agg(groups=pl.col(MATCH_ID).n_unique())
    keys = rows.group_by("key").agg(n=pl.len(), groups=pl.col(MATCH_ID).n_unique(),
                                    pairs=pl.struct(MATCH_ID).n_unique())
    counts, groups, images, keys = pl.collect_all([per_row, groups, images, keys])
    return {**counts.row(0, named=True),
            "singletons": int((groups["size"] == 1).sum()),
            "size_out_of_range": int((~groups["size"].is_between(min_group, max_group)).sum()),
            "match_id_inconsistent": int((groups["images"] > 1).sum()
                                         + (images["groups"] > 1).sum()),
            "split_leakage": int((groups["splits"] > 1).sum()),
            "duplicate_in_group": int((keys["n"] - keys["pairs"]).sum()),
            "shared_across_groups": int((keys["groups"] > 1).sum())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--pandas", action="store_true", help="also time the pandas peer")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = synthetic_table(args.rows, 5, rng)
        path = tmp / "captions.parquet"
        table.write_parquet(path)
        frame = pl.read_parquet(path, columns=[c for c in table.columns
                                               if c != IMAGE_PATH])
        model = caption_table_model(min_group=5, max_group=5)
        model.validate(frame, lazy=True)  # warm-up: pandera builds the schema on first use
        report = validate_caption_frame(frame, min_group=5, max_group=5)
        assert report.ok, report.codes()
        model_s, _ = median_time(lambda: validate_caption_frame(frame, min_group=5,
                                                                max_group=5), repeats=5)
        print(f"validate_caption_frame (pandera CaptionTable, every rule, lazy), "
              f"{args.rows:,} rows in memory: {model_s:.2f} s (median of 5), "
              f"codes {report.codes()}")
        bare_s, _ = median_time(lambda: CaptionMeasurements.of(frame.lazy(), model._limits),
                                repeats=5)
        print(f"the model's measurement alone (the same polars expressions, no pandera): "
              f"{bare_s:.2f} s (median of 5)")
        plain_s, plain = median_time(lambda: plain_polars_rules(frame, 5, 5))
        print(f"the same rules written plainly (a group_by per key, no pandera): {plain_s:.2f} s "
              f"(median of 3), shared captions {plain['shared_across_groups']}")
        validate_s, _ = median_time(lambda: validate_captions(path, min_group=5, max_group=5))
        print(f"validate_captions (read the Parquet file + the model), {args.rows:,} rows: "
              f"{validate_s:.2f} s (median of 3)")
        if args.pandas:
            pandas_s, _ = median_time(lambda: pandas_grouping_checks(path), repeats=1)
            print(f"pandas groupby of the same rules: {pandas_s:.2f} s")

        tokens = tmp / "results_20130124.token"
        n = write_token_file(tokens, 31_783, rng)

        def build():
            built = build_captions(tokens, cache=Cache(tmp / "cache"), rebuild=True)
            assert built.report.stats["images"] == 31_783
            assert built.report.stats["captions"] == n == 158_915

        build_s, _ = median_time(build)
        print(f"build captions, token file of 31,783 images / {n:,} captions: {build_s:.2f} s "
              "(median of 3, uncached)")
    print(f"machine: {platform.machine()}, {platform.python_version()}")


if __name__ == "__main__":
    main()
