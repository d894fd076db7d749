"""The caption table contract (a pandera schema) and its grouping rules (polars expressions)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from uncollapse.errors import InputError
from uncollapse.validators.report import Code, Finding, Report

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

NON_NULL = ("image_id", "match_id", "caption_idx", "source_row")


def caption_schema():
    """The caption table contract as a pandera (polars backend) model."""
    import pandera.polars as pa

    class CaptionTable(pa.DataFrameModel):
        image_id: str = pa.Field(nullable=True)  # nulls are reported as NULL_VALUES (exit 1)
        match_id: pl.Int64 = pa.Field(nullable=True)
        caption_idx: pl.Int16 = pa.Field(nullable=True)
        caption: str = pa.Field(nullable=True)
        split: str = pa.Field(nullable=True)
        source_row: pl.Int64 = pa.Field(nullable=True)
        image_path: str | None = pa.Field(nullable=True)

        class Config:
            strict = False
            coerce = False

    return CaptionTable


def load_caption_table(path: str | Path) -> pl.DataFrame:
    """Read a caption table and check it against the schema; a mismatch is a tool error."""
    import pandera.errors

    path = Path(path)
    try:
        frame = pl.read_parquet(path)
    except FileNotFoundError as exc:
        raise InputError(path, "no such file") from exc
    except Exception as exc:
        raise InputError(path, f"not a readable Parquet file ({exc})") from exc
    try:
        caption_schema().validate(frame.head(0))
    except (pandera.errors.SchemaError, pandera.errors.SchemaErrors) as exc:
        raise InputError(path, "does not match the caption table contract: "
                         f"{_first_line(exc)}. Expected columns {list(CAPTION_COLUMNS)}; "
                         "rebuild it with `uncollapse build captions`") from exc
    return frame


CAPTION_COLUMNS = {"image_id": "string", "match_id": "int64", "caption_idx": "int16",
                   "caption": "string", "split": "string", "source_row": "int64",
                   "image_path": "string (nullable)"}


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def normalised_caption(caption: pl.Expr) -> pl.Expr:
    """Lower case, punctuation and whitespace runs as one space: 'A dog.' == 'a dog'."""
    return caption.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()


class CaptionRules:
    """The grouping rules of a caption table; each method returns a Finding or None."""

    def __init__(self, frame: pl.DataFrame, *, min_group: int = 2, max_group: int | None = None,
                 max_singleton_share: float = 0.9):
        self.frame = frame.with_row_index("row")
        self.min_group, self.max_group = min_group, max_group
        self.max_singleton_share = max_singleton_share
        self.groups = frame.group_by("match_id").agg(size=pl.len(),
                                                     images=pl.col("image_id").n_unique(),
                                                     image_id=pl.col("image_id").min())

    def rules(self):
        return [self.no_nulls, self.no_empty_captions, self.groups_have_positives,
                self.image_ids_are_not_positions, self.groups_have_expected_size,
                self.one_match_id_per_image, self.no_image_in_two_splits,
                self.no_duplicate_caption_in_group, self.no_caption_shared_across_groups]

    def no_nulls(self) -> Finding | None:
        nulls = self.frame.select(pl.col(NON_NULL).null_count()).row(0, named=True)
        bad = {k: v for k, v in nulls.items() if v}
        if not bad:
            return None
        rows = self.frame.filter(pl.any_horizontal(pl.col(NON_NULL).is_null())).head(10)
        return NULL_VALUES.finding(f"nulls in {', '.join(f'{k} ({v})' for k, v in bad.items())}",
                                   count=sum(bad.values()),
                                   examples=rows.select("row", *NON_NULL).to_dicts())

    def no_empty_captions(self) -> Finding | None:
        empty = self.frame.filter(pl.col("caption").is_null()
                                  | (pl.col("caption").str.strip_chars() == ""))
        if empty.height == 0:
            return None
        return EMPTY_CAPTION.finding(f"{empty.height} empty caption(s)", count=empty.height,
                                     examples=empty.select("row", "image_id", "source_row")
                                     .head(10).to_dicts())

    def groups_have_positives(self) -> Finding | None:
        n_groups = self.groups.height
        singletons = self.groups.filter(pl.col("size") == 1).height
        if n_groups == 0 or singletons / n_groups < self.max_singleton_share:
            return None
        return GROUPS_ALL_UNIQUE.finding(
            f"{singletons} of {n_groups} groups ({singletons / n_groups:.1%}) hold a single row: "
            "a contrastive batch built from this table has no positive pairs",
            count=singletons,
            examples=self.frame.filter(pl.len().over("match_id") == 1).sort("match_id")
            .select("match_id", "image_id", "caption").head(5).to_dicts())

    def image_ids_are_not_positions(self) -> Finding | None:
        as_int = self.frame.select(pl.col("image_id").str.strip_chars().cast(pl.Int64,
                                                                             strict=False))
        ids = as_int["image_id"]
        if ids.null_count() or self.frame.height < 2:
            return None
        unique = ids.n_unique()
        counter = unique == self.frame.height and int(ids.max()) - int(ids.min()) + 1 == unique
        equals_row = self.frame.select(
            ((ids == pl.col("row")) | (ids == pl.col("row") + 1)
             | (ids == pl.col("source_row"))).mean()).item() >= 0.9
        if not (counter or equals_row):
            return None
        return IMAGE_ID_POSITIONAL.finding(
            f"image_id is a running counter from {ids.min()} to {ids.max()}, one per row"
            if counter else "image_id equals the row number in at least 90% of rows",
            count=self.frame.height,
            examples=self.frame.select("row", "image_id", "source_row").head(5).to_dicts())

    def groups_have_expected_size(self) -> Finding | None:
        too_small = pl.col("size") < self.min_group
        too_big = pl.col("size") > self.max_group if self.max_group is not None else pl.lit(False)
        bad = self.groups.filter(too_small | too_big).sort("match_id")
        if bad.height == 0:
            return None
        wanted = (f"{self.min_group}..{self.max_group}" if self.max_group is not None
                  else f">= {self.min_group}")
        histogram = dict(bad.group_by("size").len().sort("size").iter_rows())
        return GROUP_SIZE_OUT_OF_RANGE.finding(
            f"{bad.height} group(s) outside the expected size {wanted} (sizes: {histogram})",
            count=bad.height,
            examples=bad.select("match_id", "image_id", "size").head(10).to_dicts())

    def one_match_id_per_image(self) -> Finding | None:
        per_image = (self.frame.group_by("image_id")
                     .agg(match_ids=pl.col("match_id").unique().sort())
                     .filter(pl.col("match_ids").list.len() > 1).sort("image_id"))
        per_group = self.groups.filter(pl.col("images") > 1).sort("match_id")
        count = per_image.height + per_group.height
        if count == 0:
            return None
        examples = per_image.head(5).to_dicts() + (
            self.frame.join(per_group.select("match_id"), on="match_id")
            .group_by("match_id").agg(image_ids=pl.col("image_id").unique().sort().head(5))
            .sort("match_id").head(5).to_dicts())
        return MATCH_ID_INCONSISTENT.finding(
            f"{per_image.height} image_id(s) under several match_ids, {per_group.height} "
            "match_id(s) covering several image_ids", count=count, examples=examples)

    def no_image_in_two_splits(self) -> Finding | None:
        leaked = (self.frame.filter(pl.col("split").is_not_null())
                  .group_by("image_id").agg(splits=pl.col("split").unique().sort())
                  .filter(pl.col("splits").list.len() > 1).sort("image_id"))
        if leaked.height == 0:
            return None
        return SPLIT_LEAKAGE.finding(f"{leaked.height} image(s) appear in more than one split",
                                     count=leaked.height, examples=leaked.head(10).to_dicts())

    def _caption_keys(self) -> pl.DataFrame:
        if not hasattr(self, "_keys"):
            self._keys = self.frame.select(
                "row", "match_id", "caption",
                key=normalised_caption(pl.col("caption")).hash())
        return self._keys

    def no_duplicate_caption_in_group(self) -> Finding | None:
        dup = (self._caption_keys().filter(pl.len().over("match_id", "key") > 1)
               .sort("match_id", "row"))
        if dup.height == 0:
            return None
        extra = dup.height - dup.select(pl.struct("match_id", "key").n_unique()).item()
        return CAPTION_DUPLICATE_IN_GROUP.finding(
            f"{extra} caption(s) repeat another caption of the same group", count=extra,
            examples=dup.select("row", "match_id", "caption").head(10).to_dicts())

    def no_caption_shared_across_groups(self) -> Finding | None:
        shared = (self._caption_keys().filter(pl.col("match_id").n_unique().over("key") > 1)
                  .sort("key", "match_id", "row"))
        if shared.height == 0:
            return None
        n_captions = shared["key"].n_unique()
        examples = (shared.group_by("key", maintain_order=True)
                    .agg(caption=pl.col("caption").first(),
                         match_ids=pl.col("match_id").unique().sort().head(5))
                    .drop("key").head(10).to_dicts())
        return CAPTION_SHARED_ACROSS_GROUPS.finding(
            f"{n_captions} normalised caption(s) occur under more than one group "
            f"({shared.height} rows): false negatives for InfoNCE",
            count=n_captions, examples=examples)


def validate_caption_frame(frame: pl.DataFrame, target: str = "<table>", *, min_group: int = 2,
                           max_group: int | None = None,
                           max_singleton_share: float = 0.9) -> Report:
    """Run every rule on an in-memory caption table."""
    rules = CaptionRules(frame, min_group=min_group, max_group=max_group,
                         max_singleton_share=max_singleton_share)
    findings = [f for f in (rule() for rule in rules.rules()) if f is not None]
    sizes = rules.groups["size"]
    stats = {"rows": frame.height, "images": frame["image_id"].n_unique(),
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
    frame = load_caption_table(path)
    return validate_caption_frame(frame, str(path), min_group=min_group, max_group=max_group,
                                  max_singleton_share=max_singleton_share)
