"""Audit the sampler a table's ids call for: read the ids, build one sampler per rank, replay.

This is what ``uncollapse validate batches TABLE --sampler grouped|diverse|random`` runs;
the replay and the checks themselves are ``uncollapse.validators.batches.audit.audit_batches``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.captions.contract import MATCH_ID
from uncollapse.data.csv_header import refuse_duplicate_columns, refuse_wide_integers
from uncollapse.data.npz import NPZ_READ_FAILURES, check_declared_sizes, why
from uncollapse.data.polars_read import READ_FAILURES, reason
from uncollapse.data.readable import PARQUET, ZIP, check_input_file
from uncollapse.data.sequences.contract import (
    CHUNK_DOC_ID,
    CONTEXT_LENGTH,
    DOC_IDS,
    DOC_OFFSETS,
    sequence_windows,
)
from uncollapse.errors import InputError, ToolError
from uncollapse.report import Report
from uncollapse.samplers.diverse import DiverseBatchSampler
from uncollapse.samplers.grouped import GroupedBatchSampler
from uncollapse.validators.batches.audit import audit_batches
from uncollapse.validators.batches.rules import NO_BATCHES

__all__ = ["SAMPLER_KINDS", "audit_table", "read_id_column", "table_samplers"]

SAMPLER_KINDS = ("grouped", "diverse", "random")


def read_id_column(path, column: str) -> np.ndarray:
    """One column of a Parquet/CSV table (or one array of an NPZ file) as a numpy array.

    ``doc_ids`` of a compact sequence file (no such array) are each sample's document, from
    its ``doc_offsets`` and ``context_length``, as ``SequenceDataset.doc_ids`` gives them.

    Raises:
        InputError: the file cannot be read, lacks the column, or the column has nulls.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    check_input_file(path, "a table of ids (Parquet, CSV or NPZ)", "give a caption table or a "
                     "sequence file (uncollapse build captions / build sequences)",
                     accept=(PARQUET, ZIP))
    if suffix == ".npz":
        check_declared_sizes(path)
        try:
            loaded = np.load(path, allow_pickle=False)
            if not hasattr(loaded, "files"):
                raise InputError(path, "holds a single .npy array, not an NPZ archive; save "
                                       "the id arrays with numpy.savez (or use a .npy name)")
            with loaded as npz:
                if column == DOC_IDS and column not in npz.files and \
                        {DOC_OFFSETS, CONTEXT_LENGTH} <= set(npz.files):
                    # the compact sequence form: one id per sample (window), not per chunk row
                    return sequence_windows(npz[DOC_OFFSETS],
                                            int(npz[CONTEXT_LENGTH])).doc_index
                if column not in npz.files:
                    raise InputError(path, f"has no array {column!r} (arrays: "
                                           f"{', '.join(npz.files)}); pass the name of the id "
                                           f"array (--doc-column / --group-column)")
                values = npz[column]
        except NPZ_READ_FAILURES as exc:
            raise InputError(path, f"cannot be read as NPZ without pickle ({why(exc)}); write it "
                                   "with numpy.savez from numeric arrays") from exc
        if values.ndim != 1:
            raise InputError(path, f"array {column!r} has shape {values.shape}; expected one id "
                                   f"per row (1-d)")
        return values
    try:
        if suffix in (".parquet", ".pq"):
            names = pl.read_parquet_schema(path).names()
            if column not in names:
                raise InputError(path, f"has no column {column!r} (columns: {', '.join(names)}); "
                                       f"pass the id column with --group-column / --doc-column")
            series = pl.read_parquet(path, columns=[column]).to_series()
        elif suffix == ".csv":
            refuse_duplicate_columns(path)
            frame = pl.read_csv(path)
            refuse_wide_integers(path, frame)
            if column not in frame.columns:
                raise InputError(path, f"has no column {column!r} (columns: "
                                       f"{', '.join(frame.columns)}); pass the id column with "
                                       f"--group-column / --doc-column")
            series = frame[column]
        else:
            raise InputError(path, f"unknown table format {suffix!r}; expected .parquet, .csv "
                                   f"or .npz")
    except InputError:
        raise
    except READ_FAILURES as exc:
        raise InputError(path, f"cannot be read ({reason(exc)}); rebuild it") from exc
    if series.null_count():
        first = int(series.is_null().arg_true()[0])
        raise InputError(path, f"column {column!r} has {series.null_count()} nulls (first at "
                               f"row {first}); every row needs an id: fill or drop those rows")
    return series.to_numpy()


def table_samplers(n_rows: int, sampler: str, batch_size: int, *, group_ids=None, doc_ids=None,
                   per_group: int | None = None, max_per_doc: int | None = None,
                   world_size: int = 1, seed: int = 0, drop_last: bool = True,
                   exclude_duplicates=None) -> list:
    """One batch sampler per rank, of the named kind, as a training run would build them.

    ``random`` is the baseline a plain ``DataLoader(shuffle=True)`` gives: torch's
    ``RandomSampler`` (``DistributedSampler`` across ranks) cut into batches.
    """
    if sampler == "grouped":
        if per_group is None:
            raise ValueError("--sampler grouped needs --per-group K (rows of each group per "
                             "batch)")
        return [GroupedBatchSampler(group_ids, batch_size, per_group, seed=seed,
                                    drop_last=drop_last, exclude_duplicates=exclude_duplicates,
                                    rank=r, world_size=world_size) for r in range(world_size)]
    if sampler == "diverse":
        if max_per_doc is None:
            raise ValueError("--sampler diverse needs --max-per-doc M (most rows of one "
                             "document per batch)")
        return [DiverseBatchSampler(doc_ids, batch_size, max_per_doc, seed=seed,
                                    drop_last=drop_last, rank=r, world_size=world_size)
                for r in range(world_size)]
    if sampler != "random":
        raise ValueError(f"sampler must be one of {SAMPLER_KINDS}, got {sampler!r}")
    per_rank = -(-n_rows // world_size)
    if batch_size > per_rank:
        # torch's BatchSampler allocates batch_size slots up front: a batch larger than the rows
        # would be a MemoryError, and with drop_last an epoch without batches
        if drop_last:
            raise ValueError(f"batch_size {batch_size} is larger than the {per_rank} rows of "
                             f"each of world_size {world_size} rank(s): an epoch would have "
                             "no batch; lower --batch-size (or --keep-last for one short batch)")
        batch_size = per_rank
    import torch
    from torch.utils.data import BatchSampler, DistributedSampler, RandomSampler

    class EpochBatchSampler(BatchSampler):
        def set_epoch(self, epoch):
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)

    if world_size == 1:
        generator = torch.Generator().manual_seed(seed)
        return [EpochBatchSampler(RandomSampler(range(n_rows), generator=generator),
                                  batch_size, drop_last)]
    return [EpochBatchSampler(DistributedSampler(range(n_rows), num_replicas=world_size,
                                                 rank=r, seed=seed), batch_size, drop_last)
            for r in range(world_size)]


def audit_table(path, *, sampler: str, batch_size: int, per_group: int | None = None,
                max_per_doc: int | None = None, group_column: str = MATCH_ID,
                doc_column: str | None = None, world_size: int = 1, epochs: int = 1,
                seed: int = 0, drop_last: bool = True,
                exclude_duplicates_column: str | None = None) -> Report:
    """Build the named sampler over a table's ids and audit ``epochs`` epochs of its batches.

    Group checks (``group_column`` must exist) run for ``grouped``, and for ``random`` unless
    ``doc_column`` is given; document checks run for ``diverse``, or whenever ``doc_column``
    is given.

    Raises:
        ToolError: the table cannot be read, the sampler cannot be built (the reason says
            why, e.g. fewer groups than one batch needs), or an option would check nothing
            (``per_group`` for another sampler than ``grouped``; ``max_per_doc`` without
            document ids).
    """
    if per_group is not None and sampler != "grouped":
        raise ToolError(f"--per-group applies to --sampler grouped, not {sampler}; leave it out "
                        f"or audit the grouped sampler")
    if max_per_doc is not None and sampler != "diverse" and doc_column is None:
        raise ToolError(f"--max-per-doc needs document ids to check against: pass --doc-column "
                        f"(the {sampler} sampler does not read them on its own)")
    group_ids = doc_ids = keys = None
    if sampler == "grouped" or (sampler == "random" and doc_column is None):
        group_ids = read_id_column(path, group_column)
    if sampler == "diverse" or doc_column is not None:
        doc_ids = read_id_column(path, doc_column or _default_doc_column(path))
    if exclude_duplicates_column is not None:
        keys = read_id_column(path, exclude_duplicates_column)
    n_rows = len(group_ids if group_ids is not None else doc_ids)
    target = f"{path} ({sampler} sampler, batch size {batch_size})"
    if n_rows == 0:  # an empty table is invalid data, not a sampler that cannot be built
        return Report(target, "batches", [NO_BATCHES.finding(
            f"{path} has no rows, so no sampler can yield a batch", count=0)],
            {"sampler_kind": sampler, "rows": 0})
    try:
        samplers = table_samplers(n_rows, sampler, batch_size, group_ids=group_ids,
                                  doc_ids=doc_ids, per_group=per_group, max_per_doc=max_per_doc,
                                  world_size=world_size, seed=seed, drop_last=drop_last,
                                  exclude_duplicates=keys)
    except ValueError as exc:
        raise ToolError(f"{path}: cannot build the {sampler} sampler: {exc}") from exc
    report = audit_batches(ranks=samplers, group_ids=group_ids, doc_ids=doc_ids,
                           per_group=per_group if sampler == "grouped" else None,
                           max_per_doc=max_per_doc, n_rows=n_rows, epochs=epochs,
                           target=target)
    report.stats = {"sampler_kind": sampler, **report.stats}
    return report


def _default_doc_column(path) -> str:
    return DOC_IDS if str(path).lower().endswith(".npz") else CHUNK_DOC_ID
