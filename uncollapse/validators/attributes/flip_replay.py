"""What ``uncollapse validate flips`` replays: an epoch of an attribute-flip dataset, in the
batches training would see.

``audit_flip_table`` builds ``AttributeFlipDataset`` over an attribute table;
``audit_flip_dataset`` takes any dataset. Both replay sequential batches, or with ``per_group``
the batches of ``GroupedBatchSampler`` over the target combination ids, and audit them with
``uncollapse.validators.attributes.flips.audit_flips``. Needs torch (the dataset and the
sampler are torch's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uncollapse.data.attributes.contract import attribute_columns
from uncollapse.data.attributes.dataset import AttributeFlipDataset
from uncollapse.data.attributes.selection import refuse_repeated
from uncollapse.data.attributes.table import read_attribute_table
from uncollapse.errors import ToolError
from uncollapse.report import Report
from uncollapse.samplers.grouped import GroupedBatchSampler
from uncollapse.validators.attributes.flips import audit_flips

__all__ = ["audit_flip_dataset", "audit_flip_table", "grouped_flip_batches"]


def grouped_flip_batches(dataset, batch_size: int, per_group: int, *, seed: int = 0,
                         epoch: int = 0) -> GroupedBatchSampler:
    """``GroupedBatchSampler`` over ``dataset.target_combination_ids()`` of ``epoch``:
    ``per_group`` rows of each target combination in a batch.

    Raises:
        ToolError: the dataset has no ``target_combination_ids``, or the sampler cannot be
            built (the reason says why, e.g. fewer combinations than one batch needs).
    """
    if not hasattr(dataset, "target_combination_ids"):
        raise ToolError("--per-group needs a dataset with target_combination_ids()")
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    try:
        return GroupedBatchSampler(dataset.target_combination_ids(), batch_size, per_group,
                                   seed=seed, rank=0, world_size=1)
    except ValueError as exc:
        raise ToolError(f"GroupedBatchSampler: {exc}") from exc


def audit_flip_dataset(dataset, *, batch_size: int = 256, per_group: int | None = None,
                       seed: int = 0, epoch: int = 0, target: str | None = None,
                       quiet: bool = True) -> Report:
    """Replay ``epoch`` of any attribute-flip dataset and audit its flips.

    Args:
        dataset: a map-style dataset whose items carry source and target attributes.
        batch_size: rows per batch.
        per_group: replay ``GroupedBatchSampler`` batches with this many rows of each target
            combination (default: sequential batches).
        seed: the sampler's seed.

    Example:
        >>> audit_flip_dataset(my_dataset, per_group=32, epoch=3).ok
    """
    batches = (None if per_group is None else
               grouped_flip_batches(dataset, batch_size, per_group, seed=seed, epoch=epoch))
    return audit_flips(dataset, batch_size=batch_size, batches=batches, epoch=epoch,
                       target=target, quiet=quiet)


def audit_flip_table(table: str | Path, *, attributes: list[str] | None = None,
                     min_flips: int = 1, max_flips: int = 2, seed: int = 0, epoch: int = 0,
                     batch_size: int = 256, per_group: int | None = None,
                     quiet: bool = True) -> Report:
    """Replay ``epoch`` of ``AttributeFlipDataset`` over an attribute table and audit it.

    Args:
        table: the attribute table (Parquet or CSV).
        attributes: the attributes to flip (default: every attribute column).
        min_flips, max_flips, seed: the dataset's (the sampler's seed too).
        batch_size, per_group, epoch: as in ``audit_flip_dataset``.

    Raises:
        ToolError: an unknown attribute, or a dataset the settings cannot build.

    Example:
        >>> audit_flip_table("attrs.parquet", attributes=["Smiling", "Male"], max_flips=2).ok
    """
    frame = read_attribute_table(table)
    names = attributes or attribute_columns(frame)
    refuse_repeated(names)
    unknown = [n for n in names if n not in frame.columns]
    if unknown:
        raise ToolError(f"{table}: unknown attributes {unknown}")
    try:
        dataset = AttributeFlipDataset(np.zeros((frame.height, 0), dtype=np.float32),
                                       frame.select(names), min_flips=min_flips,
                                       max_flips=max_flips, seed=seed)
    except ValueError as exc:
        raise ToolError(f"{table}: {exc}") from exc
    return audit_flip_dataset(dataset, batch_size=batch_size, per_group=per_group, seed=seed,
                              epoch=epoch, target=f"AttributeFlipDataset({table}, "
                                                  f"{','.join(names)})", quiet=quiet)
