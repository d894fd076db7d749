"""Reading a CelebA-sized list_attr_celeba.txt (202,599 images x 40 attributes).

Run: .venv/bin/python benchmarks/bench_attributes.py [--rows 202599] [--repeats 5]
The file is synthetic (random -1/1 values, fixed seed) in CelebA's exact layout, CRLF line
ends. The peer is the usual one-liner, pandas ``read_csv(sep=r"\\s+", skiprows=1)``, which
reads the same values but reports nothing about the count line or malformed rows.

Two files are read: CelebA's own fixed-width layout (the byte-matrix path) and the same file
with one malformed row appended (not fixed-width any more: the tokeniser path, which reports
that row by its line number).

Then one epoch of ``AttributeFlipDataset`` (20,000 embeddings of 512 dims, 3 attributes)
through a ``DataLoader`` in its two forms: ``batch_sampler=`` (per-row dicts, default
collation) and ``sampler=<batch sampler>, batch_size=None`` (one vectorised call per batch).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
from timing import median_time

from uncollapse.pipeline.attributes.build import read_attributes


def write_celeba(path: Path, rows: int, n_attributes: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.choice(np.array([-1, 1], dtype=np.int8), size=(rows, n_attributes))
    names = [f"Attribute_{j}" for j in range(n_attributes)]
    text = np.where(values == 1, " 1", "-1")
    ids = np.char.add(np.char.zfill(np.arange(1, rows + 1).astype(str), 6), ".jpg")
    lines = [f"{i} " + " ".join(r) for i, r in zip(ids.tolist(), text.tolist(), strict=True)]
    path.write_bytes(("\r\n".join([str(rows), " ".join(names) + " ", *lines]) + "\r\n")
                     .encode())
    return values




def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=202_599)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import pandas as pd

    print(f"{platform.machine()} {platform.python_version()} numpy {np.__version__} "
          f"pandas {pd.__version__}; {args.rows} rows x 40, median of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list_attr_celeba.txt"
        values = write_celeba(path, args.rows)
        ours_s, built = median_time(lambda: read_attributes(path), args.repeats)
        peer_s, frame = median_time(lambda: pd.read_csv(path, sep=r"\s+", skiprows=1),
                              args.repeats)
        broken = Path(tmp) / "list_attr_celeba_broken.txt"
        broken.write_bytes(path.read_bytes() + b"999999.jpg -1 1\r\n")
        slow_s, slow = median_time(lambda: read_attributes(broken), args.repeats)
    same = np.array_equal(built.table.drop("image_id", "identity", "split").to_numpy(),
                          (values + 1) // 2) and np.array_equal(frame.to_numpy(), values)
    print("| reader | seconds | notes |\n|---|---:|---|")
    print(f"| read_attributes | {ours_s:.2f} | {built.table.height} rows, "
          f"{len(built.report.findings)} findings |")
    print(f"| read_attributes, one malformed row | {slow_s:.2f} | {slow.table.height} "
          f"rows, {[f.code for f in slow.report.findings]} |")
    print(f"| pandas read_csv(sep=r'\\s+') | {peer_s:.2f} | {len(frame)} rows |")
    print(f"values agree with the written file: {same}")
    loader_epoch(args.repeats)


def loader_epoch(repeats: int) -> None:
    import torch
    from torch.utils.data import DataLoader

    from uncollapse.data.attributes.dataset import AttributeFlipDataset

    rng = np.random.default_rng(0)
    data = AttributeFlipDataset(rng.standard_normal((20_000, 512)).astype(np.float32),
                                rng.integers(0, 2, (20_000, 3)), seed=0)
    batches = np.array_split(rng.permutation(20_000), 20_000 // 256)
    batches = [b.tolist() for b in batches]
    per_row_s, per_row = median_time(lambda: list(DataLoader(data, batch_sampler=batches)), repeats)
    whole_s, whole = median_time(lambda: list(DataLoader(data, sampler=batches, batch_size=None)),
                           repeats)
    same = all(torch.equal(a[k], b[k]) for a, b in zip(per_row, whole, strict=True) for k in a)
    print(f"\n| one epoch, {len(batches)} batches of ~256 | seconds |\n|---|---:|")
    print(f"| DataLoader(data, batch_sampler=batches) | {per_row_s:.3f} |")
    print(f"| DataLoader(data, sampler=batches, batch_size=None) | {whole_s:.3f} |")
    print(f"same batches: {same}")


if __name__ == "__main__":
    main()
