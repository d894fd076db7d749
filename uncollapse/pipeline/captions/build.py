"""Read any supported caption source into the caption table, through the cache."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from uncollapse.cache.store import BuildOutput, Cache, Stage
from uncollapse.data.parquet_pieces import write_parquet_frames, write_shards_of
from uncollapse.data.readable import PARQUET, check_input_file, check_readable, missing, sniff
from uncollapse.data.shards import is_sharded
from uncollapse.errors import InputError, ToolError
from uncollapse.pipeline.captions import hf, json_sources, lines
from uncollapse.pipeline.captions.assemble import caption_stats, finalize
from uncollapse.pipeline.captions.irregularities import Irregularities
from uncollapse.pipeline.captions.streamed import StreamedCaptionBuild, build_on_engine
from uncollapse.pipeline.result import Built, SourceTable, built_from, with_report

__all__ = [
    "FORMATS", "HUB_ID", "LOCAL_SUFFIXES", "OUTPUT_NAME", "SHARDS_NAME", "STAGE",
    "build_captions", "detect_format", "read_captions",
]

FORMATS = ("hf", "karpathy", "tokens", "flickr-csv", "coco")
STAGE = Stage("captions", version=1, modules=("uncollapse.pipeline.captions.build",))
OUTPUT_NAME = "captions.parquet"
SHARDS_NAME = "captions"
"""The folder of a sharded build: ``part-00000.parquet``, ... and ``manifest.json``."""
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
SOURCE_KINDS = ("a caption source (COCO or Karpathy JSON, a Flickr token file or CSV, "
                "nlphuji/flickr30k Parquet or Arrow)")
LOCAL_SUFFIXES = (".json", ".txt", ".csv", ".tsv", ".token", ".parquet", ".arrow")


def detect_format(source: str) -> str:
    """Tell the source's format from its content (or, for a missing path, a hub id)."""
    path = Path(source)
    if is_sharded(source) and not path.exists():
        hf.source_files(source)  # a glob: Parquet shards in the flickr30k layout
        return "hf"
    if not path.exists():
        # `data/captions.json` also looks like `owner/name`: a missing path with a file suffix is
        # a typo, not a hub id (asking the hub would retry for half a minute, then mislead).
        if HUB_ID.match(source) and path.suffix.lower() not in LOCAL_SUFFIXES:
            return "hf"
        raise missing(path, "a regular file or directory")
    if path.is_dir():
        return "hf"
    check_input_file(path, SOURCE_KINDS, f"give one of them, or the format (format=, one of "
                     f"{', '.join(FORMATS)})", accept=(PARQUET,))
    if path.suffix in (".parquet", ".arrow"):
        return "hf"
    if sniff(path) == PARQUET:
        raise InputError(path, f"is a Parquet file named {path.suffix or 'without a suffix'}; "
                         "rename it to end in .parquet to read it in the nlphuji/flickr30k "
                         "layout (a caption table is checked with `uncollapse validate "
                         "captions`)")
    with open(path, "rb") as fh:
        head = fh.read(1 << 16).decode("utf-8-sig", errors="replace")
    stripped = head.lstrip()
    if stripped.startswith("{"):
        if '"sentences"' in head:
            return "karpathy"
        if '"annotations"' in head or '"images"' in head or '"info"' in head:
            return "coco"
        raise InputError(path, "a JSON file that is neither COCO captions (images/annotations) "
                         "nor Karpathy split JSON (images[].sentences); give the format "
                         f"(format=, one of {', '.join(FORMATS)})")
    if not stripped:
        raise InputError(path, f"holds only whitespace, not {SOURCE_KINDS}")
    first = next((line for line in stripped.splitlines() if line.strip()), "")
    if re.match(lines.TOKEN_LINE, first):
        return "tokens"
    if first.startswith("image_name") or re.match(lines.CSV_LINE, first):
        return "flickr-csv"
    raise InputError(path, f"cannot tell the caption format from the first line {first[:80]!r}; "
                     f"give the format (format=, one of {', '.join(FORMATS)})", line=1)


def read_captions(source: str | Path, *, format: str | None = None,
                  splits: list[str] | None = None, split: str | None = None,
                  split_files: dict[str, str | Path] | None = None,
                  hf_split: str | None = None) -> SourceTable:
    """Read a caption source into the caption table (no cache).

    Args:
        source: a file, folder, or Hugging Face hub id.
        format: one of ``FORMATS``; detected from the content when None.
        splits: keep only captions of these splits.
        split: the split of a COCO file (default: from the file name, ``captions_val2017``).
        split_files: ``{split: list file}`` for token files (Flickr8k's split lists).
        hf_split: the split of a hub dataset or saved ``DatasetDict`` to read.

    Returns:
        The table and a report of every irregularity found while reading.
    """
    table, report, _ = _read(str(source), format=format, splits=splits, split=split,
                             split_files=split_files, hf_split=hf_split)
    return SourceTable(table, report)


def _read(source: str, *, format, splits, split, split_files, hf_split, hf_frame=None):
    format = format or detect_format(source)
    if format not in FORMATS:
        raise ToolError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    if split_files and format not in ("tokens", "flickr-csv"):
        raise ToolError(f"split lists (split_files) apply to token and Flickr30k CSV files "
                        f"only, not to {format!r} sources")
    irregular = Irregularities(source, lines=format in ("tokens", "flickr-csv"))
    path = Path(source)
    if format == "hf":
        frame = hf_frame if hf_frame is not None else hf.load_hf_frame(source, hf_split)[0]
        rows = hf.read_hf(frame, source, irregular)
    elif format == "karpathy":
        rows = json_sources.read_karpathy(path, irregular)
    elif format == "coco":
        rows = json_sources.read_coco(path, irregular, split=split)
    else:
        reader = lines.read_token_file if format == "tokens" else lines.read_flickr_csv
        rows = lines.apply_split_files(reader(path, irregular),
                                       {k: Path(v) for k, v in (split_files or {}).items()},
                                       irregular)
    table = finalize(rows, irregular, splits)
    return table, irregular.report({"format": format, **caption_stats(table)}), format


def build_captions(source: str | Path, *, format: str | None = None,
                   splits: list[str] | None = None, split: str | None = None,
                   split_files: dict[str, str | Path] | None = None,
                   hf_split: str | None = None, cache: Cache | None = None,
                   rebuild: bool = False, shard_rows: int | None = None,
                   engine=None) -> Built:
    """Build the caption table of ``source`` through the cache (see ``read_captions``).

    ``engine``: where the source is read (``uncollapse.engines.ray.RayEngine``: Parquet
    files in the flickr30k layout are read in slices by Ray tasks and finished per partition
    of a stable hash of ``match_id``; any other source is read in one Ray task); by default
    in this process, where Parquet files are read a slice at a time and the table written a
    partition at a time (``StreamedCaptionBuild``). The output is the same either way, byte
    for byte, and so is its cache key.

    ``source`` may also be a ``datasets.Dataset`` or ``DatasetDict`` in memory, in the
    flickr30k layout (``caption``, ``filename`` or ``img_id``, ``split``); its cache key is the
    digest of its rows.

    ``built.path`` is ``captions.parquet``; ``built.report`` lists every irregularity of the
    source; ``built.to_dataset()`` gives a ``datasets.Dataset``. With ``shard_rows``,
    ``built.path`` is a folder of Parquet shards of that many rows and a ``manifest.json``
    (``uncollapse.data.shards``), which the cache stores and verifies file by file.

    Example:
        >>> built = build_captions("captions_val2017.json")
        >>> built.table().group_by("match_id").len()
    """
    cache = cache or Cache()
    hf_frame = streamed = None
    inputs: dict = {}
    if hf.is_dataset_object(source):  # in memory: read it here, key it by its rows
        if format not in (None, "hf"):
            raise ToolError(f"a {type(source).__name__} object is read in the hf layout, not "
                            f"as format {format!r}")
        hf_frame, key = hf.in_memory_frame(source, hf_split)
        source, format = f"<datasets.{type(source).__name__}>", "hf"
        inputs["source"] = {"digest": key}
    else:
        source = str(source)
        check_readable(source)
        format = format or detect_format(source)
        if format == "hf" and is_sharded(source) and not Path(source).exists():
            # a glob: every shard it matches is an input, keyed by its content
            for number, shard in enumerate(hf.source_files(source)):
                inputs[f"source:{number:05d}"] = str(shard)
        elif format == "hf" and not Path(source).exists():
            hf_frame, hub_key = hf.load_hf_frame(source, hf_split)
            inputs["source"] = {"digest": hub_key}
        else:
            inputs["source"] = source
        if format == "hf" and hf_frame is None:
            streamed = hf.parquet_files(source)
    for name, list_path in sorted((split_files or {}).items()):
        inputs[f"split_file:{name}"] = str(list_path)
    if format == "coco" and split is None:
        # The split comes from the file name, which the content digest does not see.
        split = json_sources.coco_split_from_name(Path(source))
    # The order of the split lists matters: the first list naming an image wins.
    options = {"format": format, "splits": sorted(splits) if splits else None, "split": split,
               "hf_split": hf_split, "split_files": list(split_files or {})}
    if shard_rows is not None:
        if shard_rows < 1:
            raise ToolError(f"shard_rows must be at least 1, got {shard_rows}")
        options["shard_rows"] = shard_rows

    def builder(out_dir: Path) -> BuildOutput:
        if streamed is not None and engine is not None:  # slices and partitions on engine
            table, report = build_on_engine(engine, streamed, source, splits)
            return with_report(write([table], out_dir), report)
        if streamed is not None:  # Parquet files: read a slice at a time, never whole
            build = StreamedCaptionBuild(streamed, source, spill=out_dir, splits=splits)
            output = write(build.tables(), out_dir)
            return with_report(output, build.report())
        read = _read if engine is None else functools.partial(engine.run, _read,
                                                              what=f"reading {source}")
        table, report, _ = read(source, format=format, splits=splits, split=split,
                                 split_files=split_files, hf_split=hf_split, hf_frame=hf_frame)
        return with_report(write([table], out_dir), report)

    def write(tables, out_dir: Path) -> BuildOutput:
        """The table's pieces as one file, or as shards of ``shard_rows``: the same bytes
        however the rows arrive (in one piece, in partitions, from an engine's worker)."""
        if shard_rows is None:
            rows, schema = write_parquet_frames(tables, out_dir / OUTPUT_NAME)
            return BuildOutput(rows={OUTPUT_NAME: rows}, schema={OUTPUT_NAME: schema})
        manifest = write_shards_of(tables, out_dir / SHARDS_NAME, shard_rows)
        names = [f"{SHARDS_NAME}/{name}" for name in manifest.files]
        return BuildOutput(rows=dict(zip(names, manifest.rows, strict=True)),
                           schema=dict.fromkeys(names, manifest.schema))

    entry = cache.build(STAGE, options=options, inputs=inputs, builder=builder, rebuild=rebuild)
    return built_from(entry, OUTPUT_NAME if shard_rows is None else SHARDS_NAME)

