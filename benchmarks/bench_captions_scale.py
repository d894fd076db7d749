"""Caption tables larger than memory: `uncollapse validate captions DIR/` on Parquet shards,
checked by polars' streaming engine, and `uncollapse build captions SRC/ -o OUT/` from Parquet
shards in the nlphuji/flickr30k layout, read a slice at a time; wall time and the peak
resident memory of each command.

Run: .venv/bin/python benchmarks/bench_captions_scale.py --rows 100M [--shard-rows 5M]
     [--dir /path/with/space] [--keep] [--single-file 10M] [--build 10M] [--no-validate]

The shards are written once per size (vectorised, a shard at a time) under ``--dir`` and
reused while their manifest says they are complete; ``--keep`` leaves them for the next run.
Each validation runs as its own process, exactly as a user types it, and its peak RSS comes
from the kernel's accounting of that process (``wait4``), so the figure is the whole command:
Python, polars, pandera, the measurements and the report. ``--single-file N`` also validates
tables of up to N rows as one Parquet file, for comparison (scanned, and measured a slice of
row groups at a time, as the path a single file takes). ``--build N`` also
builds the caption table of tables of up to N caption rows from flickr30k-layout shards (a
list of 5 captions per image row, file names in no particular order), written under ``--dir``
like the tables, into a fresh cache, as Parquet shards (``-o DIR/``) and as one file.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.captions.contract import (
    CAPTION,
    CAPTION_IDX,
    IMAGE_ID,
    IMAGE_PATH,
    MATCH_ID,
    SOURCE_ROW,
    SPLIT,
)
from uncollapse.data.captions.table import CAPTION_SCHEMA
from uncollapse.data.shards import SHARD_MANIFEST, read_manifest, write_shards

WORDS = np.array("a an the dog cat man woman child runs sits stands on in under near red "
                 "blue green grass street beach ball water table with holding two three".split())
PER_GROUP = 5
REPO = Path(__file__).resolve().parents[1]


def rows_arg(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 10**3, "M": 10**6, "B": 10**9}.get(text[-1:], 1)
    return int(float(text.rstrip("KMB")) * scale)


def shard(start: int, rows: int, seed: int) -> pl.DataFrame:
    """Rows ``start .. start + rows`` of a healthy table: groups of 5 captions of one image,
    image ids that sort in match_id order, 10-word random captions (a handful repeat by
    chance across 100M rows, as real captions do), one image in 20 in the test split."""
    rng = np.random.default_rng([seed, start])
    row = np.arange(start, start + rows, dtype=np.int64)
    group = row // PER_GROUP
    vocabulary = pl.Series(WORDS)
    words = pl.DataFrame([vocabulary.gather(rng.integers(0, len(WORDS), size=rows))
                          .alias(f"w{i}") for i in range(10)])
    return pl.DataFrame({
        IMAGE_ID: pl.Series(group * 7 + 100_003).cast(pl.String).str.zfill(12),
        MATCH_ID: pl.Series(group, dtype=pl.Int64),
        CAPTION_IDX: pl.Series(row % PER_GROUP, dtype=pl.Int16),
        CAPTION: words.select(pl.concat_str(pl.all(), separator=" ")).to_series(),
        SPLIT: pl.Series(np.where(group % 20 == 0, "test", "train")),
        SOURCE_ROW: pl.Series(row),
        IMAGE_PATH: pl.Series(group * 7 + 100_003).cast(pl.String).str.zfill(12) + ".jpg",
    }, schema=CAPTION_SCHEMA)


def ensure_shards(folder: Path, rows: int, shard_rows: int) -> float:
    """Write the shards unless a complete set is there; the seconds the writing took."""
    if (folder / SHARD_MANIFEST).exists() and read_manifest(folder).total_rows == rows:
        return 0.0
    start = time.perf_counter()
    write_shards((shard(s, min(shard_rows, rows - s), 0) for s in range(0, rows, shard_rows)),
                 folder)
    return time.perf_counter() - start


def source_shard(start: int, rows: int, seed: int) -> pl.DataFrame:
    """Caption rows ``start .. start + rows`` (a multiple of 5) in the flickr30k layout: one
    row per image with its 5 captions (10 random words each), ``filename`` a number that
    visits the images in no sorted order, the split, ``img_id`` (a running number)."""
    rng = np.random.default_rng([seed, start, 1])
    image = np.arange(start // PER_GROUP, (start + rows) // PER_GROUP, dtype=np.int64)
    vocabulary = pl.Series(WORDS)
    captions = [pl.DataFrame([vocabulary.gather(rng.integers(0, len(WORDS), size=len(image)))
                              .alias(f"w{i}") for i in range(10)])
                .select(pl.concat_str(pl.all(), separator=" ")).to_series().alias(f"c{k}")
                for k in range(PER_GROUP)]
    # an odd multiplier modulo 2**32 is a bijection: distinct names, out of order
    name = pl.Series((image * 2_654_435_761) % 2**32).cast(pl.String).str.zfill(10) + ".jpg"
    return pl.DataFrame(captions).select(
        caption=pl.concat_list(pl.all()), filename=name,
        split=pl.Series(np.where(image % 20 == 0, "test", "train")),
        img_id=pl.Series(image).cast(pl.String))


def ensure_source_shards(folder: Path, rows: int, shard_rows: int) -> float:
    """Write the flickr30k-layout shards of ``rows`` captions unless they are there."""
    if (folder / SHARD_MANIFEST).exists() and read_manifest(folder).total_rows == rows // 5:
        return 0.0
    start = time.perf_counter()
    write_shards((source_shard(s, min(shard_rows, rows - s), 0)
                  for s in range(0, rows, shard_rows)), folder)
    return time.perf_counter() - start


def write_in_child(folder: Path, rows: int, shard_rows: int, source: bool = False) -> float:
    command = [sys.executable, __file__, "--write-only", str(folder), "--rows", str(rows),
               "--shard-rows", str(shard_rows)] + (["--source"] if source else [])
    result = subprocess.run(command, capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    return float(result.stdout.strip().splitlines()[-1])


def run_measured(command: list[str]) -> tuple[float, float, float, int, str]:
    """(wall s, CPU s, peak RSS in GB, exit code, output) of ``command`` as its own process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss * 1024 / 1e9, process.returncode, output


def folder_size_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="100M", help="comma-separated sizes, e.g. 10M,100M")
    parser.add_argument("--shard-rows", default="5M")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the shards go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the shards for the next run")
    parser.add_argument("--single-file", default="0",
                        help="also validate tables of up to this many rows as one Parquet file "
                             "(written once from the shards)")
    parser.add_argument("--build", default="0",
                        help="also build the caption table of up to this many caption rows "
                             "from flickr30k-layout Parquet shards")
    parser.add_argument("--no-validate", action="store_true",
                        help="skip the validation runs (build only)")
    parser.add_argument("--write-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--source", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shard_rows = rows_arg(args.shard_rows)
    if args.write_only:
        write = ensure_source_shards if args.source else ensure_shards
        print(write(args.write_only, rows_arg(args.rows), shard_rows))
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="captions-scale-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, polars {pl.__version__}; load average "
          f"{os.getloadavg()[0]:.1f}")
    try:
        for rows in (rows_arg(r) for r in args.rows.split(",")):
            if rows <= rows_arg(args.build):
                bench_build(root, rows, shard_rows)
            if args.no_validate:
                continue
            folder = root / f"captions-{rows}"
            # written by a child process: a child's peak RSS starts from its parent's size at
            # the fork, so the process that measures stays small
            written = write_in_child(folder, rows, shard_rows)
            print(f"{rows:,} rows in {len(read_manifest(folder).files)} shards, "
                  f"{folder_size_gb(folder):.2f} GB of Parquet"
                  + (f" (written in {written:.0f} s)" if written else " (already there)"))
            command = [sys.executable, "-m", "uncollapse", "validate", "captions", str(folder),
                       "--group-size", str(PER_GROUP), "--format", "json", "--quiet"]
            wall, cpu, peak, code, output = run_measured(command)
            codes = sorted(set(line.split('"')[3] for line in output.splitlines()
                               if line.strip().startswith('"code"')))
            print(f"  validate captions {folder.name}/ (streaming): {wall:.1f} s wall, {cpu:.1f} s "
                  f"CPU, peak RSS {peak:.2f} GB, exit {code}, codes {codes}; load average "
                  f"{os.getloadavg()[0]:.1f}")
            if code not in (0, 1):
                print(output[-3000:])
            if rows <= rows_arg(args.single_file):
                single = root / f"captions-{rows}.parquet"
                if not single.exists():
                    subprocess.run([sys.executable, "-c", "import polars as pl, sys; pl.scan_"
                                    "parquet(sys.argv[1]).sink_parquet(sys.argv[2])",
                                    str(folder / "*.parquet"), str(single)], check=True)
                wall, cpu, peak, code, _ = run_measured(command[:5] + [str(single)]
                                                        + command[6:])
                print(f"  validate captions {single.name} (one file, slices of row groups): "
                      f"{wall:.1f} s "
                      f"wall, {cpu:.1f} s CPU, peak RSS {peak:.2f} GB, exit {code}")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


def bench_build(root: Path, rows: int, shard_rows: int) -> None:
    """``build captions`` of ``rows`` captions from flickr30k-layout shards, into a fresh
    cache: as shards (``-o DIR/``) and as one file."""
    source = root / f"flickr30k-{rows}"
    written = write_in_child(source, rows, shard_rows, source=True)
    print(f"{rows:,} captions in {rows // PER_GROUP:,} image rows, "
          f"{len(read_manifest(source).files)} flickr30k-layout shards, "
          f"{folder_size_gb(source):.2f} GB"
          + (f" (written in {written:.0f} s)" if written else " (already there)"))
    for output in (f"{root}/built-{rows}/", f"{root}/built-{rows}.parquet"):
        cache = root / f"cache-{rows}"
        shutil.rmtree(cache, ignore_errors=True)
        command = [sys.executable, "-m", "uncollapse", "build", "captions", str(source),
                   "-o", output, "--shard-rows", str(shard_rows), "--cache-dir", str(cache),
                   "--format", "json", "--quiet"]
        wall, cpu, peak, code, output_text = run_measured(command)
        captions = next((line.split(":")[1].strip(" ,") for line in output_text.splitlines()
                         if line.strip().startswith('"captions"')), "?")
        print(f"  build captions {source.name}/ -o {Path(output).name}"
              f"{'/' if output.endswith('/') else ''}: {wall:.1f} s wall, {cpu:.1f} s CPU, "
              f"peak RSS {peak:.2f} GB, exit {code}, {captions} captions; load average "
              f"{os.getloadavg()[0]:.1f}")
        if code != 0:
            print(output_text[-3000:])
        shutil.rmtree(cache, ignore_errors=True)
        if output.endswith("/"):
            shutil.rmtree(output, ignore_errors=True)
        else:
            Path(output).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
