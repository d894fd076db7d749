"""Next-vector sequences at one million targets: hard negatives and building the compact form.

Run: .venv/bin/python benchmarks/bench_sequences.py [--targets 1000000] [--dim 384]

1. Hard negatives. A compact corpus of ``--targets`` targets (documents of 6 to 199 chunks,
   C = 4, random float32 vectors of ``--dim`` dims, held in memory). The peer is what a
   dataset without CSR offsets does per item: ``np.where(doc_ids == doc)``, drop the target,
   pick one candidate with a ``numpy.random.Generator``. It is timed on 200 random items; ours
   on 50 batches of 1,024 random items (``__getitems__``, which returns the contexts, targets
   and negatives as vectors), on the index draw alone (``negative_indices``), and on 20,000
   single ``__getitem__`` calls. The "draw + vectors" peer row adds fetching the same vectors
   to the peer, so it is compared with our full ``__getitems__``. Per-item times are medians
   of 5 runs.
2. Compact build. ``--targets`` vectors of ``--dim`` float32 dims in a ``.npy`` (memory-mapped)
   and a chunk table of the same rows; ``write_sequences(..., compact=True)`` (which writes
   through ``atomic_path``, so it ends with an fsync, and computes the zip CRC-32) against
   ``np.save`` of the same in-memory array into the same directory (no fsync; ``np.save`` +
   fsync is shown too), 5 interleaved runs each, medians. Run once in memory (``/dev/shm``:
   the work itself) and once on the repository's disk (shared and noisy: write-back of other
   processes lands in either).
   The cached build (``build_sequences``: input digests, per-file SHA-256 in the
   manifest) is timed once as well.
3. File sizes. The bundled WikiText-2 test split (``build chunks --unit line``), 64-d float32
   random vectors, C = 4: the size of the dense and the compact file against the raw bytes of
   their vectors plus the UTF-8 bytes of their texts (the contract's bound: at most 1.1x), and
   what the same texts would take as the fixed-width unicode arrays of older files.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from timing import median_time

from uncollapse.cache.store import Cache
from uncollapse.data.npz import open_npz
from uncollapse.data.sequences.chunks import load_chunks
from uncollapse.data.sequences.contract import (
    COMPACT_TEXTS,
    CONTEXT_LENGTH,
    DENSE_TEXTS,
    DOC_OFFSETS,
    VECTORS,
    read_texts,
    sequence_form,
)
from uncollapse.pipeline.sequences.build import build_sequences
from uncollapse.pipeline.sequences.corpus import read_chunks
from uncollapse.pipeline.sequences.sequence_file import load_vectors, write_sequences
from uncollapse.samplers import HardNegativeSequenceDataset, SequenceDataset

CONTEXT = 4
WIKITEXT = Path(__file__).resolve().parents[1] / "data" / "wikitext2" / "wikitext2_test.txt"


def corpus_offsets(targets: int, rng: np.random.Generator) -> np.ndarray:
    """CSR offsets of documents of 6..199 chunks holding at least ``targets`` targets."""
    lengths = rng.integers(CONTEXT + 2, 200, size=2 * targets // 50 + 10)
    needed = int(np.searchsorted(np.cumsum(lengths - CONTEXT), targets)) + 1
    return np.r_[0, np.cumsum(lengths[:needed])].astype(np.int64)


def bench_file_sizes(workdir: Path, dim: int = 64) -> None:
    chunks, _ = read_chunks(WIKITEXT, unit="line")
    vectors = np.random.default_rng(0).standard_normal((chunks.height, dim), dtype=np.float32)
    print(f"\nfile sizes: bundled WikiText-2 test split, {chunks.height:,} chunks, D={dim}, "
          f"C={CONTEXT}")
    print("| form | file | vectors + text bytes | file / (vectors + texts) | "
          "texts as fixed-width <U |")
    print("|---|---:|---:|---:|---:|")
    for compact in (False, True):
        path = workdir / f"wiki_{'compact' if compact else 'dense'}.npz"
        write_sequences(chunks, vectors, CONTEXT, path, compact=compact)
        arrays = open_npz(path)
        raw_vectors = sum(a.nbytes for a in arrays.values() if a.dtype.kind == "f")
        text_bytes = sum(a.nbytes for k, a in arrays.items() if k.endswith("_utf8"))
        fixed = sum(np.asarray(texts.tolist()).nbytes
                    for texts in (read_texts(arrays, keys) for keys in _text_keys(arrays))
                    if texts is not None)
        size = path.stat().st_size
        print(f"| {sequence_form(arrays)} | {size / 1e6:.2f} MB | "
              f"{(raw_vectors + text_bytes) / 1e6:.2f} MB | "
              f"{size / (raw_vectors + text_bytes):.3f} | {fixed / 1e6:.2f} MB |")


def _text_keys(arrays):
    return COMPACT_TEXTS if sequence_form(arrays) == "compact" else DENSE_TEXTS


def bench_negatives(targets: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    offsets = corpus_offsets(targets, rng)
    vectors = rng.standard_normal((int(offsets[-1]), dim), dtype=np.float32)
    arrays = {VECTORS: vectors, DOC_OFFSETS: offsets, CONTEXT_LENGTH: np.int64(CONTEXT)}
    dataset = HardNegativeSequenceDataset(arrays, exclude_window=2, seed=0)
    plain = SequenceDataset(arrays)
    n = len(dataset)
    doc_ids = dataset.doc_ids
    target_rows = dataset.target_rows  # the peer knows where each target's vector lives
    batches = rng.integers(0, n, size=(50, 1024))
    singles = [int(i) for i in rng.integers(0, n, size=20000)]
    peer_items = [int(i) for i in rng.integers(0, n, size=200)]
    peer_rng = np.random.default_rng(1)

    def peer_draw():
        for i in peer_items:
            candidates = np.where(doc_ids == doc_ids[i])[0]
            candidates = candidates[candidates != i]
            candidates[peer_rng.integers(len(candidates))]

    def peer_draw_and_vectors():
        for i in peer_items:
            candidates = np.where(doc_ids == doc_ids[i])[0]
            candidates = candidates[candidates != i]
            j = candidates[peer_rng.integers(len(candidates))]
            row = target_rows[i]
            vectors[row - CONTEXT:row + 1].copy()
            vectors[target_rows[j]].copy()

    def ours_getitems():
        for batch in batches:
            dataset.__getitems__(batch)

    def plain_getitems():
        for batch in batches:
            plain.__getitems__(batch)

    def ours_draw():
        for batch in batches:
            dataset.negative_indices(batch)

    def ours_getitem():
        for i in singles:
            dataset[i]

    ours_getitems()  # warm the page cache and the allocator
    plain_s = median_time(plain_getitems, 5)[0] / batches.size
    per_item = {
        "peer: np.where(doc_ids == doc) draw": median_time(peer_draw, 5)[0] / len(peer_items),
        "peer: draw + fetch the same vectors":
            median_time(peer_draw_and_vectors, 5)[0] / len(peer_items),
        "ours: __getitems__ (batch 1024, vectors)": median_time(ours_getitems, 5)[0] / batches.size,
        "ours: negative_indices (batch 1024, draw)": median_time(ours_draw, 5)[0] / batches.size,
        "ours: __getitem__ (single item, vectors)": median_time(ours_getitem, 5)[0] / len(singles),
    }
    per_item["ours: what negatives add to __getitems__ (draw + negative vector)"] = \
        per_item["ours: __getitems__ (batch 1024, vectors)"] - plain_s
    peer = per_item["peer: np.where(doc_ids == doc) draw"]
    print(f"\nhard negatives: {n:,} targets, {len(offsets) - 1:,} documents, C={CONTEXT}, "
          f"D={dim}, exclude_window=2")
    print("| access | per item | peer np.where draw / this |")
    print("|---|---:|---:|")
    for name, seconds in per_item.items():
        print(f"| {name} | {seconds * 1e6:.3f} us | {peer / seconds:,.0f}x |")
    full_peer = per_item["peer: draw + fetch the same vectors"]
    ours_full = per_item["ours: __getitems__ (batch 1024, vectors)"]
    print(f"(draw + vectors peer / ours __getitems__: {full_peer / ours_full:,.0f}x)")
    checks = (("the draw inside __getitems__", "ours: negative_indices (batch 1024, draw)", 1000),
              ("what negatives add to __getitems__ (draw + negative vector)",
               "ours: what negatives add to __getitems__ (draw + negative vector)", 1000),
              ("the full __getitems__ with all vectors",
               "ours: __getitems__ (batch 1024, vectors)", 1000),
              ("single __getitem__", "ours: __getitem__ (single item, vectors)", 50))
    for label, key, target in checks:
        ratio = peer / per_item[key]
        print(f"target {target:,}x less than np.where per item, {label}: {ratio:,.0f}x "
              f"({'met' if ratio >= target else 'not met'})")


def bench_compact_build(targets: int, dim: int, workdir: Path, where: str,
                        repeats: int = 5) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((targets, dim), dtype=np.float32)
    sizes = rng.integers(CONTEXT + 2, 200, size=targets // 50 + 10)
    doc = np.repeat(np.arange(sizes.size), sizes)[:targets]
    offsets = np.r_[0, np.flatnonzero(np.diff(doc)) + 1]
    position = np.arange(targets) - np.repeat(offsets, np.diff(np.r_[offsets, targets]))
    chunks_path, vectors_path = workdir / "chunks.parquet", workdir / "vectors.npy"
    pl.DataFrame({"doc_id": doc.astype(np.int64),
                  "doc_key": pl.Series(doc).cast(pl.String),
                  "position": position.astype(np.int32),
                  "text": pl.Series(np.arange(targets)).cast(pl.String)}).write_parquet(chunks_path)
    np.save(vectors_path, vectors)
    chunks = load_chunks(chunks_path)

    def save():
        np.save(workdir / "copy.npy", vectors)

    def save_fsync():  # what atomic_path adds to every output of ours: the data is on disk
        with open(workdir / "copy_synced.npy", "wb") as fh:
            np.save(fh, vectors)
            fh.flush()
            os.fsync(fh.fileno())

    def build():
        mapped = load_vectors(vectors_path, chunks.height)
        write_sequences(chunks, mapped, CONTEXT, workdir / "compact.npz", compact=True)

    build()  # warm-up: the source pages are mapped once
    saves, synced, builds = [], [], []
    for _ in range(repeats):  # interleaved, so all see the same state of the disk
        # each output is removed right after it is timed: every run writes a new file into
        # the same free memory, none replaces or sits beside another 1.5 GB output
        for fn, times, output in ((save, saves, "copy.npy"),
                                  (save_fsync, synced, "copy_synced.npy"),
                                  (build, builds, "compact.npz")):
            (workdir / output).unlink(missing_ok=True)
            times.append(median_time(fn, 1)[0])
            (workdir / output).unlink()
    save_s, build_s = statistics.median(saves), statistics.median(builds)
    synced_s = statistics.median(synced)
    start = time.perf_counter()
    built = build_sequences(chunks_path, context_length=CONTEXT, vectors=vectors_path,
                            compact=True, cache=Cache(workdir / "cache"), rebuild=True)
    cached_s = time.perf_counter() - start
    size = built.path.stat().st_size
    print(f"\ncompact build in {where}: {targets:,} x {dim} float32 "
          f"({vectors.nbytes / 2**30:.2f} GiB), file {size / 2**30:.2f} GiB, "
          f"median of {repeats} interleaved runs")
    print("| step | seconds | / np.save |")
    print("|---|---:|---:|")
    print(f"| np.save of the same array | {save_s:.2f} | 1.00 |")
    print(f"| np.save + fsync (for reference) | {synced_s:.2f} | {synced_s / save_s:.2f} |")
    print(f"| write_sequences(compact=True) | {build_s:.2f} | {build_s / save_s:.2f} |")
    print(f"| build_sequences (cached stage, hashing included, once) | {cached_s:.2f} | "
          f"{cached_s / save_s:.2f} |")
    print(f"target at most 3x of np.save: {build_s / save_s:.2f}x "
          f"({'met' if build_s <= 3 * save_s else 'not met'})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-negatives", action="store_true")
    parser.add_argument("--skip-sizes", action="store_true")
    args = parser.parse_args()
    if not args.skip_sizes:
        with tempfile.TemporaryDirectory(prefix="uncollapse-sizes-") as workdir:
            bench_file_sizes(Path(workdir))
    if not args.skip_negatives:
        bench_negatives(args.targets, args.dim)
        if args.dim != 64:
            bench_negatives(args.targets, 64)
    if not args.skip_build:
        places = [(Path(".bench"), "the repository's disk")]
        if Path("/dev/shm").is_dir():
            places.insert(0, (Path("/dev/shm"), "memory (/dev/shm, no disk)"))
        for root, where in places:
            root.mkdir(exist_ok=True)
            workdir = Path(tempfile.mkdtemp(prefix="uncollapse-sequences-", dir=root))
            try:
                bench_compact_build(args.targets, args.dim, workdir, where)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nmachine: {platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
