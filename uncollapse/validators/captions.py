"""The caption table contract (a pandera schema) and its grouping rules (polars expressions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.captions.contract import CAPTION_SCHEMA, NON_NULL, read_caption_table
from uncollapse.report import Code, Finding, Report

GROUPS_ALL_UNIQUE = Code(
    "GROUPS_ALL_UNIQUE", "error",
    "Every match_id (or almost every one) holds a single row, so contrastive batches have no "
    "positive pairs.",
    "Take image_id from the source's own identifier (file name stem, img_id, COCO image_id), "
    "never a loop counter; rebuild with `uncollapse build captions`.")
IMAGE_ID_POSITIONAL = Code(
    "IMAGE_ID_POSITIONAL", "error",
    "image_id values are row numbers or a running counter, not the source's identifiers.",
    "Rebuild the table with `uncollapse build captions`, which takes ids from the source.")
GROUP_SIZE_OUT_OF_RANGE = Code(
    "GROUP_SIZE_OUT_OF_RANGE", "warning",
    "Groups with fewer or more rows than the expected range.",
    "Check the listed groups in the source; adjust --min-group/--max-group if the sizes are "
    "legitimate (COCO has 5 to 7 captions per image).")
MATCH_ID_INCONSISTENT = Code(
    "MATCH_ID_INCONSISTENT", "error",
    "One image_id appears under several match_ids, or one match_id covers several image_ids.",
    "Derive match_id from image_id (one group per image), as `uncollapse build captions` does.")
SPLIT_LEAKAGE = Code(
    "SPLIT_LEAKAGE", "error",
    "An image appears in more than one split, so evaluation sees training images.",
    "Assign each image to exactly one split (fix the split lists of the source).")
CAPTION_DUPLICATE_IN_GROUP = Code(
    "CAPTION_DUPLICATE_IN_GROUP", "warning",
    "The same normalised caption appears twice in one group (a wasted positive).",
    "Deduplicate the captions of the group in the source.")
CAPTION_SHARED_ACROSS_GROUPS = Code(
    "CAPTION_SHARED_ACROSS_GROUPS", "warning",
    "The same normalised caption appears under different groups: InfoNCE treats each as the "
    "other's negative (a false negative).",
    "Keep them out of one batch (GroupedBatchSampler(exclude_duplicates=...)) or merge groups.")
EMPTY_CAPTION = Code(
    "EMPTY_CAPTION", "error",
    "A caption is null or empty after stripping whitespace.",
    "Drop or fix the rows in the source; rebuild with `uncollapse build captions`.")
NULL_VALUES = Code(
    "NULL_VALUES", "error",
    "A column that may not hold nulls (image_id, match_id, caption_idx, source_row) has nulls.",
    "Rebuild the table with `uncollapse build captions`.")

PUNCTUATION_AND_SPACE = ".,;:!?'\"()[]{}-_ \t\r\n"


def normalised_caption(caption: pl.Expr) -> pl.Expr:
    """Lower case, surrounding punctuation and whitespace ignored: 'A dog.' == 'a dog'.

    Plain string operations rather than a regular expression: this runs on every row of
    tables with tens of millions of captions.
    """
    return caption.str.to_lowercase().str.strip_chars(PUNCTUATION_AND_SPACE)


def _segments(sorted_keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


class CaptionRules:
    """The grouping rules of a caption table; each method returns a Finding or None.

    Work is shared between rules: image ids and normalised captions are hashed once, and the
    per-group statistics come from one sort of ``match_id`` (skipped when the table is already
    sorted, as built tables are). Slow, exact paths run only when a fast count shows a problem.
    """

    def __init__(self, frame: pl.DataFrame, *, min_group: int = 2, max_group: int | None = None,
                 max_singleton_share: float = 0.9):
        self.frame = frame
        self.min_group, self.max_group = min_group, max_group
        self.max_singleton_share = max_singleton_share
        lean = frame.select(
            match_id=pl.col("match_id").fill_null(-1),
            image=pl.col("image_id").hash(),
            split=pl.col("split").cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1),
            caption=normalised_caption(pl.col("caption")),
        ).with_columns(empty=pl.col("caption").fill_null("").str.len_bytes() == 0,
                       caption=pl.col("caption").hash())
        self.lean = lean
        self.groups = self._group_stats(lean)
        self.n_images = lean["image"].n_unique()

    @staticmethod
    def _group_stats(lean: pl.DataFrame) -> pl.DataFrame:
        match_id = lean["match_id"].to_numpy()
        order = None if bool(np.all(match_id[1:] >= match_id[:-1])) else np.argsort(
            match_id, kind="stable")
        take = (lambda a: a) if order is None else (lambda a: a[order])
        ids = take(match_id)
        starts = _segments(ids)
        image = take(lean["image"].to_numpy())
        split = take(lean["split"].to_numpy())
        big = np.iinfo(np.int64).max
        if len(starts) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return pl.DataFrame({"match_id": empty, "size": empty, "images_differ": empty > 0,
                                 "splits_differ": empty > 0})
        return pl.DataFrame({
            "match_id": ids[starts],
            "size": np.diff(np.r_[starts, len(ids)]),
            "images_differ": np.minimum.reduceat(image, starts)
            != np.maximum.reduceat(image, starts),
            "splits_differ": np.minimum.reduceat(np.where(split < 0, big, split), starts)
            < np.maximum.reduceat(split, starts),
        })

    def rules(self):
        return [self.no_nulls, self.no_empty_captions, self.groups_have_positives,
                self.image_ids_are_not_positions, self.groups_have_expected_size,
                self.one_match_id_per_image, self.no_image_in_two_splits,
                self.no_duplicate_caption_in_group, self.no_caption_shared_across_groups]

    def _rows(self, mask: pl.Series, *columns: str, limit: int = 10) -> list[dict]:
        rows = self.frame.with_row_index("row").filter(mask).head(limit)
        return rows.select("row", *columns).to_dicts()

    def no_nulls(self) -> Finding | None:
        nulls = self.frame.select(pl.col(NON_NULL).null_count()).row(0, named=True)
        bad = {k: v for k, v in nulls.items() if v}
        if not bad:
            return None
        mask = self.frame.select(pl.any_horizontal(pl.col(NON_NULL).is_null())).to_series()
        return NULL_VALUES.finding(f"nulls in {', '.join(f'{k} ({v})' for k, v in bad.items())}",
                                   count=sum(bad.values()), examples=self._rows(mask, *NON_NULL))

    def no_empty_captions(self) -> Finding | None:
        empty = self.lean["empty"]
        if not empty.any():
            return None
        # The normalised caption also drops punctuation; "?" is a caption, only whitespace is
        # empty. Checked exactly on the candidate rows alone.
        rows = empty.arg_true()
        blank = self.frame["caption"].gather(rows).str.strip_chars().fill_null("") == ""
        empty = empty.clone().scatter(rows.filter(~blank), False)
        if not empty.any():
            return None
        count = int(empty.sum())
        return EMPTY_CAPTION.finding(f"{count} empty caption(s)", count=count,
                                     examples=self._rows(empty, "image_id", "source_row"))

    def groups_have_positives(self) -> Finding | None:
        n_groups = self.groups.height
        singletons = int((self.groups["size"] == 1).sum())
        if n_groups == 0 or singletons / n_groups < self.max_singleton_share:
            return None
        single = self.groups.filter(pl.col("size") == 1)["match_id"].head(5)
        return GROUPS_ALL_UNIQUE.finding(
            f"{singletons} of {n_groups} groups ({singletons / n_groups:.1%}) hold a single row: "
            "a contrastive batch built from this table has no positive pairs",
            count=singletons,
            examples=self._rows(self.frame["match_id"].is_in(single.implode()), "match_id",
                                "image_id", "caption", limit=5))

    def image_ids_are_not_positions(self) -> Finding | None:
        ids = self.frame["image_id"].cast(pl.Int64, strict=False)
        if ids.null_count() or self.frame.height < 2:
            return None
        row = pl.int_range(0, self.frame.height, dtype=pl.Int64, eager=True)
        unique = ids.n_unique()
        counter = unique == self.frame.height and int(ids.max()) - int(ids.min()) + 1 == unique
        equals_row = float(((ids == row) | (ids == row + 1)
                            | (ids == self.frame["source_row"])).mean()) >= 0.9
        if counter or equals_row:
            return IMAGE_ID_POSITIONAL.finding(
                f"image_id is a running counter from {ids.min()} to {ids.max()}, one per row"
                if counter else "image_id equals the row number in at least 90% of rows",
                count=self.frame.height,
                examples=self._rows(row < 5, "image_id", "source_row", limit=5))
        # A per-image counter (0,0,0,0,0,1,1,...) groups correctly, but cannot be traced back to
        # an image of the source (nlphuji/flickr30k's `img_id` is one): a warning, not an error.
        per_image_counter = (self.n_images > 1 and int(ids.min()) in (0, 1)
                             and int(ids.max()) - int(ids.min()) + 1 == ids.n_unique())
        if not per_image_counter:
            return None
        return IMAGE_ID_POSITIONAL.finding(
            f"image_id runs from {ids.min()} to {ids.max()} without a gap, one number per image: "
            "a counter, not the source's identifiers (file name stems, COCO ids)",
            count=self.n_images, severity="warning",
            examples=self._rows(row < 5, "image_id", "caption", limit=5))

    def groups_have_expected_size(self) -> Finding | None:
        too_small = pl.col("size") < self.min_group
        too_big = pl.col("size") > self.max_group if self.max_group is not None else pl.lit(False)
        bad = self.groups.filter(too_small | too_big)
        if bad.height == 0:
            return None
        wanted = (f"{self.min_group}..{self.max_group}" if self.max_group is not None
                  else f">= {self.min_group}")
        histogram = dict(bad.group_by("size").len().sort("size").iter_rows())
        shown = bad.select("match_id", "size").head(10)
        # The image id traces a group back to the source; looked up for the shown groups only.
        image_of = (self.frame.filter(pl.col("match_id").is_in(shown["match_id"].implode()))
                    .group_by("match_id").agg(pl.col("image_id").first()))
        examples = shown.join(image_of, on="match_id", how="left", maintain_order="left")
        return GROUP_SIZE_OUT_OF_RANGE.finding(
            f"{bad.height} group(s) outside the expected size {wanted} (sizes: {histogram})",
            count=bad.height,
            examples=examples.select("match_id", "image_id", "size").to_dicts())

    def _images_map_to_one_group(self) -> bool:
        """True when image_id -> match_id is one-to-one (the fast path of two rules)."""
        if not hasattr(self, "_one_to_one"):
            self._one_to_one = (not self.groups["images_differ"].any()
                                and self.n_images == self.groups.height)
        return self._one_to_one

    def one_match_id_per_image(self) -> Finding | None:
        if self._images_map_to_one_group():
            return None
        per_group = self.groups.filter("images_differ")["match_id"]
        with_row = self.frame.with_row_index("row")
        per_image = (with_row.group_by("image_id")
                     .agg(match_ids=pl.col("match_id").unique().sort(), first=pl.col("row").min())
                     .filter(pl.col("match_ids").list.len() > 1).sort("first").drop("first"))
        examples = per_image.head(5).to_dicts() + (
            with_row.filter(pl.col("match_id").is_in(per_group.head(5).implode()))
            .group_by("match_id").agg(image_ids=pl.col("image_id").unique().sort().head(5))
            .sort("match_id").to_dicts())
        count = per_image.height + per_group.len()
        if count == 0:
            return None
        return MATCH_ID_INCONSISTENT.finding(
            f"{per_image.height} image_id(s) under several match_ids, {per_group.len()} "
            "match_id(s) covering several image_ids", count=count, examples=examples)

    def no_image_in_two_splits(self) -> Finding | None:
        if self._images_map_to_one_group() and not self.groups["splits_differ"].any():
            return None
        leaked = (self.frame.filter(pl.col("split").is_not_null())
                  .group_by("image_id").agg(splits=pl.col("split").unique().sort())
                  .filter(pl.col("splits").list.len() > 1).sort("image_id"))
        if leaked.height == 0:
            return None
        return SPLIT_LEAKAGE.finding(f"{leaked.height} image(s) appear in more than one split",
                                     count=leaked.height, examples=leaked.head(10).to_dicts())

    def _repeated_captions(self) -> pl.DataFrame:
        """Rows whose normalised caption occurs more than once (usually a small share)."""
        if not hasattr(self, "_repeated"):
            lean = self.lean.with_row_index("row")
            self._repeated = lean.filter(lean["caption"].is_duplicated())
        return self._repeated

    def no_duplicate_caption_in_group(self) -> Finding | None:
        repeated = self._repeated_captions()
        in_group = repeated.filter(pl.len().over("caption", "match_id") > 1)
        extra = in_group.height - in_group.select(pl.struct("caption", "match_id")
                                                  .n_unique()).item()
        if extra == 0:
            return None
        rows = in_group.sort("row")["row"].head(10)
        examples = self.frame.with_row_index("row")[rows].select("row", "match_id", "caption")
        return CAPTION_DUPLICATE_IN_GROUP.finding(
            f"{extra} caption(s) repeat another caption of the same group", count=extra,
            examples=examples.to_dicts())

    def no_caption_shared_across_groups(self) -> Finding | None:
        shared = (self._repeated_captions().group_by("caption")
                  .agg(match_ids=pl.col("match_id").unique().sort(), row=pl.col("row").min())
                  .filter(pl.col("match_ids").list.len() > 1).sort("row"))
        if shared.height == 0:
            return None
        texts = self.frame["caption"].gather(shared["row"].head(10))
        examples = [{"caption": text, "match_ids": ids[:5]} for text, ids in
                    zip(texts.to_list(), shared["match_ids"].head(10).to_list(), strict=True)]
        return CAPTION_SHARED_ACROSS_GROUPS.finding(
            f"{shared.height} normalised caption(s) occur under more than one group: "
            "false negatives for InfoNCE", count=shared.height, examples=examples)


def validate_caption_frame(frame: pl.DataFrame, target: str = "<table>", *, min_group: int = 2,
                           max_group: int | None = None,
                           max_singleton_share: float = 0.9) -> Report:
    """Run every rule on an in-memory caption table."""
    rules = CaptionRules(frame, min_group=min_group, max_group=max_group,
                         max_singleton_share=max_singleton_share)
    findings = [f for f in (rule() for rule in rules.rules()) if f is not None]
    sizes = rules.groups["size"]
    stats = {"rows": frame.height, "images": rules.n_images,
             "groups": rules.groups.height,
             "group_size_min": int(sizes.min()) if sizes.len() else 0,
             "group_size_max": int(sizes.max()) if sizes.len() else 0,
             "singleton_groups": int((sizes == 1).sum())}
    return Report(target=target, kind="captions", findings=findings, stats=stats)


def validate_captions(path: str | Path, *, min_group: int = 2, max_group: int | None = None,
                      max_singleton_share: float = 0.9) -> Report:
    """Validate a caption table file (Parquet).

    Example:
        >>> report = validate_captions("captions.parquet", min_group=5, max_group=7)
        >>> report.ok, report.codes()
    """
    # image_path is part of the contract but no rule reads its values: skip its bytes
    frame = read_caption_table(path, columns=[c for c in CAPTION_SCHEMA if c != "image_path"])
    return validate_caption_frame(frame, str(path), min_group=min_group, max_group=max_group,
                                  max_singleton_share=max_singleton_share)
