"""The Ray engine (``--engine ray``, extra ``ray``): the library's own functions, run by Ray.

- ``validate captions``: the rows are measured in slices by Ray tasks (each reads its rows of
  the Parquet file itself), tagged with a partition made by a stable hash of ``match_id``
  (``partition_of``: splitmix64, never Python's ``hash``), and the per-group measurements are
  computed by Ray Data's ``groupby(partition).map_groups``, where every group is seen whole.
  The driver assembles the measurements and runs the same rules, so the report is the local
  engine's, finding for finding.
- ``build sequences --encoder``: the encoder runs as a Ray Data actor pool (``map_batches``
  with a class, ``ActorPoolStrategy(size=N)``, ``num_gpus`` per actor), so embedding spreads
  over every GPU of a cluster; each actor loads the model once.
- ``build captions`` and ``build chunks``: the source is read by a Ray task.

Builds run inside the cache's build (``Cache.build``): what the workers return is written to
the entry's temporary directory and committed once, by one rename; a worker that dies leaves
nothing committed, after Ray has retried its task ``max_retries`` times.

``RAY_ADDRESS`` (or ``--ray-address``) connects to a running cluster; without one a local Ray
starts (no dashboard, the workers' output kept out of the terminal). The workers must read
the input files at the same path (a shared file system) and run the same uncollapse.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from uncollapse.data.captions.contract import IMAGE_PATH, MATCH_ID
from uncollapse.data.captions.table import CAPTION_SCHEMA, PARQUET_MAGIC, read_caption_table
from uncollapse.errors import InputError, ToolError
from uncollapse.extras import require
from uncollapse.pipeline.sequences.encode import load_encoder
from uncollapse.report import Report
from uncollapse.validators.captions.measure import (
    IMAGE,
    CaptionLimits,
    CaptionMeasurements,
    combine_counts,
    group_stats,
    measure_rows,
)
from uncollapse.validators.captions.rules import validate_caption_frame

__all__ = ["ADDRESS_ENV", "RayEngine", "partition_of", "splitmix64"]

ADDRESS_ENV = "RAY_ADDRESS"
ROW, PARTITION = "_row", "_partition"

CRASH_ONCE_MARKER: str | None = None
"""Tests only: while this file exists, the next task or actor batch deletes it and kills its
worker (``os._exit``), as a machine lost mid-build would. Nothing in the package sets it."""


# Partitions ---------------------------------------------------------------------------------

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(keys: np.ndarray) -> np.ndarray:
    """splitmix64 of each int64 key (its bits as uint64): the same value on every machine,
    in every process and every run, unlike Python's ``hash``."""
    x = np.asarray(keys, dtype=np.int64).view(np.uint64) + _GAMMA
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """The partition (0..partitions-1) of each key: rows with equal keys (a ``match_id`` group,
    a ``doc_id`` document) always land in the same partition."""
    if partitions < 1:
        raise ToolError(f"partitions must be at least 1, not {partitions}")
    return (splitmix64(keys) % np.uint64(partitions)).astype(np.int64)


def _crash_once(marker: str | None) -> None:
    if marker and os.path.exists(marker):
        with contextlib.suppress(FileNotFoundError):
            os.remove(marker)
            os._exit(1)


# The engine ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RayEngine:
    """Where and how Ray runs a command.

    Args:
        address: the cluster to connect to (default: ``$RAY_ADDRESS``; without one a local
            Ray starts on this machine).
        num_cpus: CPUs of a local Ray (default: all of this machine's).
        partitions: partitions of a table (default: twice the cluster's CPUs).
        max_retries: times Ray runs a task again whose worker died.
        encoder_actors: encoder actors (model copies) of ``build sequences --encoder``.
        gpus_per_actor: GPUs each encoder actor holds (0: CPU actors).
        quiet: no progress bars and no execution log from Ray Data.

    Example:
        >>> report = RayEngine(address="ray://head:10001").validate_captions("captions.parquet")
    """

    address: str | None = None
    num_cpus: int | None = None
    partitions: int | None = None
    max_retries: int = 3
    encoder_actors: int = 1
    gpus_per_actor: float = 0
    quiet: bool = False
    load_encoder: Callable = load_encoder

    def quietly(self, quiet: bool) -> RayEngine:
        return replace(self, quiet=quiet)

    @contextlib.contextmanager
    def session(self):
        """Ray, connected to the cluster or started locally (and shut down again after, if
        this call started it); a Ray already initialised in this process is used as it is."""
        ray = require("ray", "ray", "--engine ray")
        started = False
        if not ray.is_initialized():
            address = self.address or os.environ.get(ADDRESS_ENV) or None
            quiet_logs = {"log_to_driver": False, "logging_level": logging.ERROR}
            try:
                if address:
                    ray.init(address=address, **quiet_logs)
                else:
                    ray.init(num_cpus=self.num_cpus, include_dashboard=False, **quiet_logs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise ToolError(f"cannot start or reach {where}: {exc}. Check --ray-address "
                                f"(or ${ADDRESS_ENV}), or leave both unset to start a local "
                                "Ray") from exc
            started = True
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = not self.quiet
        logging.getLogger("ray.data").setLevel(logging.WARNING if self.quiet else logging.INFO)
        try:
            yield ray
        finally:
            if started:
                ray.shutdown()

    def _partitions(self, ray) -> int:
        if self.partitions is not None:
            return self.partitions
        return max(1, 2 * int(ray.cluster_resources().get("CPU", 1)))

    def _get(self, ray, refs, what: str):
        """``ray.get(refs)``; an error raised by the library in a task is raised here as it
        was, a dead worker becomes a ToolError that says nothing was committed."""
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
                raise cause from None
            raise self._lost(what, exc) from exc
        except ray.exceptions.RayError as exc:
            raise self._lost(what, exc) from exc

    def _lost(self, what: str, exc: Exception) -> ToolError:
        return ToolError(f"{what}: a Ray worker was lost ({type(exc).__name__}) and its task "
                         f"failed after {self.max_retries} retries; nothing was written or "
                         "cached. Run the command again (finished builds are cached); the "
                         "workers' logs are under the Ray session's logs folder")

    # builds ---------------------------------------------------------------------------------

    def run(self, fn: Callable, *args, what: str = "the build", **kwargs):
        """``fn(*args, **kwargs)`` in a Ray task (retried if its worker dies); its result."""
        with self.session() as ray:
            task = ray.remote(max_retries=self.max_retries)(_call)
            return self._get(ray, task.remote(fn, CRASH_ONCE_MARKER, args, kwargs), what)

    def encode_texts(self, texts: list[str], model: str, *, batch_size: int = 64,
                     device: str = "cpu", quiet: bool = False) -> np.ndarray:
        """[len(texts), D] float32 vectors in order, encoded by a pool of encoder actors.

        The batches are the local engine's (rows ``k*batch_size`` onwards): blocks hold
        whole batches, so each batch meets the model exactly as it does in one process.
        """
        rows = len(texts)
        if rows == 0:
            encoder = self.load_encoder(Path(model), device)
            return np.zeros((0, int(encoder.get_sentence_embedding_dimension() or 0)),
                            dtype=np.float32)
        with self.session() as ray:
            actors = max(1, self.encoder_actors)
            per_block = batch_size * max(1, math.ceil(rows / batch_size / (4 * actors)))
            table = pa.table({"row": np.arange(rows, dtype=np.int64),
                              "text": pa.array(texts, type=pa.string())})
            blocks = [table.slice(start, per_block) for start in range(0, rows, per_block)]
            options = {"num_gpus": self.gpus_per_actor} if self.gpus_per_actor else {}
            encoded = ray.data.from_arrow(blocks).map_batches(
                _EncoderActor, batch_size=batch_size, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                fn_constructor_kwargs={"model": model, "device": device,
                                       "load": self.load_encoder,
                                       "crash_marker": CRASH_ONCE_MARKER},
                max_task_retries=self.max_retries, **options)
            vectors, filled = None, 0
            try:
                for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
                    if vectors is None:
                        vectors = np.empty((rows, batch["vector"].shape[1]), dtype=np.float32)
                    vectors[batch["row"]] = batch["vector"]
                    filled += len(batch["row"])
            except ray.exceptions.RayError as exc:
                raise self._lost(f"encoding with {model}", exc) from exc
        if filled != rows:
            raise ToolError(f"encoding with {model}: {filled} vectors came back for {rows} "
                            "texts; nothing was cached, run the command again")
        return vectors

    # validation -----------------------------------------------------------------------------

    def validate_captions(self, path: str | Path, *, min_group: int = 2,
                          max_group: int | None = None, max_singleton_share: float = 0.9,
                          min_caption_chars: int = 2, max_caption_chars: int = 1000) -> Report:
        """``validate_captions`` of a Parquet caption table, measured by Ray; the same report
        as the local engine's."""
        path = Path(path)
        limits = CaptionLimits(min_group=min_group, max_group=max_group,
                               max_singleton_share=max_singleton_share,
                               min_caption_chars=min_caption_chars,
                               max_caption_chars=max_caption_chars)
        columns = [c for c in CAPTION_SCHEMA if c != IMAGE_PATH]
        frame = read_caption_table(path, columns=columns)  # checks the contract
        if not _is_parquet(path):
            raise InputError(path, "--engine ray reads Parquet caption tables (each worker "
                                   "reads its own rows); write the table as Parquet, or use "
                                   "--engine local")
        measured = None
        if frame.height:
            with self.session() as ray:
                measured = self._measure(ray, path, frame, limits, columns)
        return validate_caption_frame(frame, str(path), min_group=min_group,
                                      max_group=max_group,
                                      max_singleton_share=max_singleton_share,
                                      min_caption_chars=min_caption_chars,
                                      max_caption_chars=max_caption_chars, measured=measured)

    def _measure(self, ray, path: Path, frame: pl.DataFrame, limits: CaptionLimits,
                 columns: list[str]) -> CaptionMeasurements:
        partitions = self._partitions(ray)
        slices = min(partitions, frame.height)
        bounds = [frame.height * i // slices for i in range(slices + 1)]
        task = ray.remote(max_retries=self.max_retries, num_returns=2)(_measure_slice)
        refs = [task.remote(str(path), columns, start, stop, limits, partitions,
                            CRASH_ONCE_MARKER)
                for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
        lean_refs, count_refs = [r[0] for r in refs], [r[1] for r in refs]
        # the groups, each seen whole: one partition of the stable hash of match_id per call
        per_group = (ray.data.from_arrow_refs(lean_refs)
                     .groupby(PARTITION)
                     .map_groups(_partition_group_stats, batch_format="pyarrow"))
        try:
            groups = pl.concat([pl.from_arrow(t) for t in
                                self._get(ray, per_group.to_arrow_refs(), "measuring groups")])
        except ray.exceptions.RayError as exc:
            raise self._lost("measuring groups", exc) from exc
        groups = groups.sort(MATCH_ID)
        lean = pl.concat([pl.from_arrow(t) for t in self._get(ray, lean_refs, "measuring rows")])
        counts = self._get(ray, count_refs, "measuring rows")
        return CaptionMeasurements.assemble(
            frame.lazy(), limits, lean.drop(ROW, PARTITION), combine_counts(counts),
            (groups.drop(IMAGE), groups.get_column(IMAGE)))


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == PARQUET_MAGIC


# Per-partition functions: what each task or actor runs ---------------------------------------
# Thin wrappers over the library's functions (the local engine runs the same ones in one
# process); each is a module-level function so Ray ships it by reference.

def _call(fn: Callable, crash_marker: str | None, args: tuple, kwargs: dict):
    _crash_once(crash_marker)
    return fn(*args, **kwargs)


def _measure_slice(path: str, columns: list[str], start: int, stop: int,
                   limits: CaptionLimits, partitions: int, crash_marker: str | None):
    """``measure_rows`` of rows ``start:stop`` of the table, each row tagged with its row
    number and the partition of its ``match_id``."""
    _crash_once(crash_marker)
    frame = pl.scan_parquet(path).select(columns).slice(start, stop - start)
    lean, counts = measure_rows(frame, limits, first_row=start)
    lean = lean.with_columns(
        pl.int_range(start, start + lean.height, dtype=pl.Int64).alias(ROW),
        pl.Series(PARTITION, partition_of(lean.get_column(MATCH_ID).to_numpy(), partitions)))
    return lean.to_arrow(), counts


def _partition_group_stats(batch: pa.Table) -> pa.Table:
    """``group_stats`` of one partition's rows (whole groups), in row order."""
    lean = pl.from_arrow(batch).sort(ROW)
    groups, image = group_stats(lean)
    return groups.with_columns(image.alias(IMAGE)).to_arrow()


class _EncoderActor:
    """One model copy: loads the encoder once, then encodes the batches it is given."""

    def __init__(self, model: str, device: str, load: Callable, crash_marker: str | None):
        self.encoder = load(Path(model), device)
        self.crash_marker = crash_marker

    def __call__(self, batch: dict) -> dict:
        _crash_once(self.crash_marker)
        texts = batch["text"].tolist()
        vectors = self.encoder.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                      show_progress_bar=False)
        return {"row": batch["row"], "vector": np.asarray(vectors, dtype=np.float32)}
