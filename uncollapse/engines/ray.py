"""The Ray engine (``--engine ray``, extra ``ray``): the library's own functions, run by Ray.

The engine knows no family: a build or a check hands it the functions to run (the same ones
the local engine runs in one process) and gets their results back.

- ``check_partitions``: a Parquet table's rows are read in slices by Ray tasks, tagged with
  a partition made by a stable hash of a group key such as ``match_id`` (``partition_key``
  of ``uncollapse.engines.local``: splitmix64, never Python's ``hash``), and the local
  engine's per-partition function sees every group whole, through Ray Data's
  ``groupby(partition).map_groups`` (``validate captions``: ``check_captions_partition``).
- ``encode_texts``: an encoder as a Ray Data actor pool (``map_batches`` with a class,
  ``ActorPoolStrategy(size=N)``, ``num_gpus`` per actor), so embedding spreads over every GPU
  of a cluster; each actor loads the model once (``build sequences --encoder``).
- ``map_partitions``: a function per partition of a table's groups (the same stable hash of
  ``doc_id``), in Ray tasks (``build chunks``: documents split into chunks).
- ``map_groups``: a function per partition of a table's groups (the same stable hash of
  ``doc_id``), the table handed over in blocks of rows and grouped by Ray Data's
  ``groupby(partition).map_groups`` on the workers (``build sequences``: the windows cut by
  ``sequence_partition``).
- ``map_slices`` and ``group_slices``: a function on each slice of a Parquet table's rows,
  and a function on each partition (the stable hash of ``match_id``) of the rows the slices
  give (``build captions`` from Parquet files in the flickr30k layout: the kept image ids of
  each slice, then each partition's rows finished as the local engine finishes its own).
- ``run``: one function in a Ray task (``build captions`` from any other source: reading it).

Builds run inside the cache's build (``Cache.build``): what the workers return is written to
the entry's temporary directory and committed once, by one rename; a worker that dies leaves
nothing committed, after Ray has retried its task ``max_retries`` times.

``RAY_ADDRESS`` (or ``--ray-address``) connects to a running cluster; without one a local Ray
starts (no dashboard, the workers' output kept out of the terminal). The workers must read
the input files at the same path (a shared file system) and run the same uncollapse.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from uncollapse.engines.local import partition_key
from uncollapse.errors import ToolError
from uncollapse.extras import require

__all__ = ["ADDRESS_ENV", "RayEngine"]

ADDRESS_ENV = "RAY_ADDRESS"
ROW = "row"
"""A row's position in the whole table, as the per-partition functions read it."""
PARTITION, RESULT = "_partition", "_result"

CRASH_ONCE_MARKER: str | None = None
"""Tests only: while this file exists, the next task or actor batch deletes it and kills its
worker (``os._exit``), as a machine lost mid-build would. Nothing in the package sets it."""


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
        group_partitions: ``check_partitions`` hands each call whole groups (partitions of a
            stable hash of the key, through Ray Data's groupby shuffle). False: each task
            checks its own slice of rows, and no row moves: exact too where the partials
            merge across any partitioning (the caption check's do), and faster (BENCHMARKS.md,
            "Engines").
        load_encoder: ``load(model_dir, device)`` for the encoder actors, instead of the one
            the build passes (a stand-in model in tests and benchmarks).

    Example:
        >>> engine = RayEngine(address="ray://head:10001")
        >>> report = validate_captions("captions.parquet", engine=engine)
    """

    address: str | None = None
    num_cpus: int | None = None
    partitions: int | None = None
    max_retries: int = 3
    encoder_actors: int = 1
    gpus_per_actor: float = 0
    quiet: bool = False
    load_encoder: Callable | None = None
    group_partitions: bool = True

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

    def encode_texts(self, texts: list[str], model: str, *, load: Callable,
                     batch_size: int = 64, device: str = "cpu",
                     quiet: bool = False) -> np.ndarray:
        """[len(texts), D] float32 vectors in order, encoded by a pool of encoder actors, each
        holding the model ``load(model_dir, device)`` gives.

        The batches are the local engine's (rows ``k*batch_size`` onwards): blocks hold
        whole batches, so each batch meets the model exactly as it does in one process. An
        actor whose worker dies is restarted by Ray Data and its batch encoded again.
        """
        load = self.load_encoder or load
        rows = len(texts)
        if rows == 0:
            encoder = load(Path(model), device)
            return np.zeros((0, int(encoder.get_sentence_embedding_dimension() or 0)),
                            dtype=np.float32)
        with self.session() as ray:
            actors = max(1, self.encoder_actors)
            per_block = batch_size * max(1, math.ceil(rows / batch_size / (4 * actors)))
            table = pa.table({"row": np.arange(rows, dtype=np.int64),
                              "text": pa.array(texts, type=pa.string())})
            blocks = [table.slice(start, per_block) for start in range(0, rows, per_block)]
            encoded = ray.data.from_arrow(blocks).map_batches(
                _EncoderActor, batch_size=batch_size, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                fn_constructor_kwargs={"model": model, "device": device,
                                       "load": load,
                                       "crash_marker": CRASH_ONCE_MARKER},
                num_gpus=self.gpus_per_actor or None)
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

    # tables ---------------------------------------------------------------------------------

    def map_partitions(self, fn: Callable, table: pl.DataFrame, *, key: str,
                       what: str = "the build") -> list:
        """``fn(rows)`` for each partition of ``table`` by ``partition_key(key)`` (whole
        groups, rows in order), in Ray tasks; the results, in partition order."""
        with self.session() as ray:
            partitions = self._partitions(ray)
            tagged = table.with_columns(pl.Series(PARTITION,
                                                  partition_key(table, key, partitions)))
            pieces = tagged.partition_by(PARTITION, maintain_order=True, include_key=False,
                                         as_dict=True)
            task = ray.remote(max_retries=self.max_retries)(_call)
            refs = [task.remote(fn, CRASH_ONCE_MARKER, (piece,), {})
                    for _, piece in sorted(pieces.items())]
            return self._get(ray, refs, what)

    def map_groups(self, fn: Callable, blocks: Iterable[pl.DataFrame], *, key: str,
                   what: str = "the build") -> list:
        """``fn(rows)`` for each partition of the groups of a table handed over in ``blocks``
        (polars DataFrames of consecutive rows, in order), on the workers.

        Each block goes to Ray's object store as it comes (the caller reads one at a time),
        its rows tagged with their position in the table (``row``) and the partition of their
        ``key`` (``partition_key``); Ray Data's ``groupby(...).map_groups`` then hands ``fn``
        the rows of each partition: whole groups, in row order, as a polars DataFrame of the
        blocks' columns and ``row`` (``build sequences``: ``sequence_partition``).

        Returns:
            What ``fn`` returned (anything picklable), one per partition that holds rows.
        """
        with self.session() as ray:
            partitions = self._partitions(ray)
            refs, start = [], 0
            for block in blocks:
                tagged = block.with_columns(
                    pl.int_range(start, start + block.height, dtype=pl.Int64).alias(ROW),
                    pl.Series(PARTITION, partition_key(block, key, partitions)))
                refs.append(ray.put(tagged.to_arrow()))
                start += block.height
            if not refs:
                return []
            return self._per_partition(ray, refs, functools.partial(
                _partition_task, fn, (ROW,), (), CRASH_ONCE_MARKER), what)

    def check_partitions(self, files: list[str | Path], columns: list[str], *, key: str,
                         per_partition: Callable, what: str = "checking the table") -> list:
        """``per_partition(rows)`` for each partition of the groups of a Parquet table.

        The table is ``files`` (one file, or shards whose rows follow each other in this
        order). Ray tasks read it in slices of rows, tagging each row with its position in the
        table (``row``) and the partition of its ``key`` (``partition_key``); Ray Data's
        ``groupby(...).map_groups`` then hands ``per_partition`` the rows of each partition:
        whole groups, in row order, as a polars DataFrame of ``columns`` and ``row``.

        With ``group_partitions`` off, ``per_partition`` runs in the reading task on its slice
        of rows instead (groups may be cut between slices; nothing is shuffled).

        Returns:
            What ``per_partition`` returned (anything picklable), one per partition (or slice)
            that holds rows.
        """
        files, rows = _parquet_rows(files)
        if rows == 0:
            return []
        with self.session() as ray:
            partitions = self._partitions(ray)
            ranges = self._slice_ranges(ray, rows)
            if not self.group_partitions:
                task = ray.remote(max_retries=self.max_retries)(_check_slice)
                return self._get(ray, [task.remote(files, columns, start, stop, per_partition,
                                                   CRASH_ONCE_MARKER)
                                       for start, stop in ranges], what)
            task = ray.remote(max_retries=self.max_retries)(_read_slice)
            refs = [task.remote(files, columns, start, stop, key, partitions, CRASH_ONCE_MARKER)
                    for start, stop in ranges]
            return self._per_partition(ray, refs, functools.partial(
                _partition_task, per_partition, (ROW,), (), None), what)

    def _per_partition(self, ray, refs: list, task: Callable, what: str) -> list:
        """``task`` on each partition of the rows the tables ``refs`` hold (tagged with
        ``PARTITION``), by Ray Data's groupby; each partition's pickled result, unpickled one
        block of results at a time."""
        grouped = (ray.data.from_arrow_refs(refs).groupby(PARTITION)
                   .map_groups(task, batch_format="pyarrow", max_retries=self.max_retries))
        try:
            refs = grouped.to_arrow_refs()
        except ray.exceptions.RayError as exc:
            raise self._lost(what, exc) from exc
        results = []
        for ref in refs:
            table = self._get(ray, ref, what)
            if table.num_rows:  # the shuffle's empty blocks come back without a result
                results.extend(pickle.loads(value.as_buffer()) for value in table.column(RESULT))
            del table
        return results

    def _slice_ranges(self, ray, rows: int, slice_rows: int | None = None
                      ) -> list[tuple[int, int]]:
        """``(start, stop)`` of equal slices of ``rows`` rows: one per partition, or more where
        a slice would exceed ``slice_rows``."""
        least = math.ceil(rows / slice_rows) if slice_rows else 1
        slices = max(1, min(rows, max(self._partitions(ray), least)))
        bounds = [rows * i // slices for i in range(slices + 1)]
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    def map_slices(self, files: list[str | Path], columns: list[str], fn: Callable, *,
                   shared=None, slice_rows: int = 200_000, what: str = "the build") -> list:
        """``fn(frame, start, shared)`` on each slice of rows of the Parquet table ``files``
        (``frame``: the slice's ``columns``, from row ``start``), in Ray tasks; the results in
        row order. ``shared`` is put in Ray's object store once for every task."""
        files, rows = _parquet_rows(files)
        with self.session() as ray:
            shared_ref = ray.put(shared)
            task = ray.remote(max_retries=self.max_retries)(_map_slice)
            refs = [task.remote(files, columns, start, stop, fn, shared_ref, CRASH_ONCE_MARKER)
                    for start, stop in self._slice_ranges(ray, rows, slice_rows)]
            return self._get(ray, refs, what)

    def group_slices(self, files: list[str | Path], columns: list[str], *,
                     read_slice: Callable, key: str, per_partition: Callable, shared=None,
                     slice_rows: int = 200_000, what: str = "the build") -> list:
        """``per_partition(rows)`` for each partition of the rows ``read_slice`` makes.

        Ray tasks read the Parquet table ``files`` in slices (as ``map_slices``), and
        ``read_slice(frame, start, shared)`` turns each into rows holding the int64 ``key``;
        each row is tagged with the partition of its key (``partition_key``: whole groups in
        one partition), and Ray Data's ``groupby(...).map_groups`` hands ``per_partition``
        the rows of a partition in the order ``read_slice`` made them, slice after slice.

        Returns:
            What ``per_partition`` returned (anything picklable), one per partition that
            holds rows.
        """
        files, rows = _parquet_rows(files)
        if rows == 0:
            return []
        with self.session() as ray:
            partitions = self._partitions(ray)
            shared_ref = ray.put(shared)
            task = ray.remote(max_retries=self.max_retries)(_map_slice)
            tag = functools.partial(_tag_partitions, read_slice, key, partitions)
            refs = [task.remote(files, columns, start, stop, tag, shared_ref, CRASH_ONCE_MARKER)
                    for start, stop in self._slice_ranges(ray, rows, slice_rows)]
            return self._per_partition(ray, refs, functools.partial(
                _partition_task, per_partition, ORDER, ORDER, None), what)


def _parquet_rows(files: list) -> tuple[list[str], int]:
    """The Parquet table ``files`` as paths the workers can take, and its number of rows."""
    files = [str(f) for f in files]
    return files, pl.scan_parquet(files).select(pl.len()).collect().item()


# What the tasks and actors run around the functions they are given ---------------------------

def _call(fn: Callable, crash_marker: str | None, args: tuple, kwargs: dict):
    _crash_once(crash_marker)
    return fn(*args, **kwargs)


def _rows(files: list[str], columns: list[str], start: int, stop: int) -> pl.DataFrame:
    """Rows ``start:stop`` of the table, with their position in it."""
    return (pl.scan_parquet(files).select(columns).slice(start, stop - start).collect()
            .with_row_index(ROW, offset=start).with_columns(pl.col(ROW).cast(pl.Int64)))


def _read_slice(files: list[str], columns: list[str], start: int, stop: int, key: str,
                partitions: int, crash_marker: str | None) -> pa.Table:
    """Rows ``start:stop`` of the table, with their position and the partition of their key."""
    _crash_once(crash_marker)
    rows = _rows(files, columns, start, stop)
    return rows.with_columns(pl.Series(PARTITION, partition_key(rows, key, partitions))).to_arrow()


def _check_slice(files: list[str], columns: list[str], start: int, stop: int,
                 per_partition: Callable, crash_marker: str | None):
    _crash_once(crash_marker)
    return per_partition(_rows(files, columns, start, stop))


def _partition_task(fn: Callable, order: tuple, drop: tuple, crash_marker: str | None,
                    batch: pa.Table) -> pa.Table:
    """``fn`` on one partition's rows, sorted by ``order``, without ``PARTITION`` and ``drop``;
    its result pickled into one ``RESULT`` value."""
    _crash_once(crash_marker)
    rows = pl.from_arrow(batch).sort(*order).drop(PARTITION, *drop)
    # large_binary: a partition's result (a build's windows) may pass 2 GB
    return pa.table({RESULT: pa.array([pickle.dumps(fn(rows), protocol=5)],
                                      type=pa.large_binary())})


ORDER = ("_slice_start", "_position")
"""A row's place among the rows ``read_slice`` made: its slice's first row, its position."""


def _map_slice(files: list[str], columns: list[str], start: int, stop: int, fn: Callable,
               shared, crash_marker: str | None):
    _crash_once(crash_marker)
    frame = pl.scan_parquet(files).select(columns).slice(start, stop - start).collect()
    return fn(frame, start, shared)


def _tag_partitions(read_slice: Callable, key: str, partitions: int, frame: pl.DataFrame,
                    start: int, shared) -> pa.Table:
    rows = read_slice(frame, start, shared)
    return rows.with_columns(
        pl.Series(PARTITION, partition_key(rows, key, partitions)),
        pl.lit(start, dtype=pl.Int64).alias(ORDER[0]),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER[1])).to_arrow()


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
