"""The epoch planner every batch sampler shares: arrays in, the epoch's batches out.

No torch here, and no Python loop over rows, groups or batches: the plan is built with whole-array
numpy operations (a shuffle, segment arithmetic, gathers of a matrix's rows, a transpose), so
it can be tested and benchmarked on its own; the only loops step through fixed-size chunks or
segment sizes. Row indices are int32 below 2**31 rows (half the memory of int64), int64 above.
At 100M rows memory sets the speed: a shuffle whose rows stay in cache is several times faster
than one over the whole array, and a fresh array costs its first-touch page faults, so an epoch
makes few arrays as large as the plan (``tests/samplers/test_samplers_planner_scale.py``
bounds the bytes per row).

How an epoch is dealt. The data is cut into *units* (``per_group`` rows of one group for the
grouped sampler, one row for the diverse sampler). Each *member* (a group, or a document) owns a
contiguous run of units; members that must never meet in one batch (groups that share a duplicate
key) are joined into one *component*. Components are laid out in a random order, each one's
units next to each other, and the sequence is cut into ``units_per_batch`` columns of ``B``
units; every column gives one unit to every batch. A run of ``L`` units spans consecutive
positions, so with ``L <= B * cap`` it puts at most ``cap`` units into any batch, as long as the
pieces of a run split over columns go to different batches. Each column is dealt to the batches
in its own random order (so two runs do not meet again and again), except for a short prefix
that every column deals in the same order and that holds exactly those split pieces
(``_fixed_prefixes``). ``B`` is the largest batch count for which the components, each capped at
``B * cap`` units, still fill ``B`` full batches, which is also the largest number of full
batches any plan under the cap can have. The batch order is then shuffled, and each rank takes
every ``world_size``-th batch of that one global plan. (In the code every column is put in
random order whole, in place, by one gather: the columns share a few random orders, each column
rotated by its own offset, which mixes runs as independent shuffles would at a fifth of their
cost (``_shuffle_rows``); the prefixes are put back by a swap and the batch order is folded into
that swap, so a transpose into the plan is the only other pass: ``_deal_columns``.)

When every component is a single unit (groups of ``per_group`` to ``2 * per_group - 1`` rows, no
duplicate keys), runs cannot meet twice, and the random component order cut into consecutive
batches is already a uniformly random plan: that case skips the dealing.

Rows inside a member are shuffled every epoch where their order changes the plan: a group with
more rows than ``per_group`` (which rows form its slots), and a member with more units than an
epoch can place (which of them are placed). Shuffles of many small segments run as per-row
shuffles of one matrix per segment size (``_shuffle_segments``), each row of which stays in cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SMALL_GROUP_POLICIES = ("drop", "error")
_EXACT_WIDTHS = 64  # segments up to this size are shuffled in matrices of their exact size
_CHUNK = 1 << 24  # rows per step where a whole-array temporary of int64 would double the memory
_GATHER = 1 << 18  # entries per step of a gather or scan through a small reused buffer


def index_dtype(n: int) -> np.dtype:
    """The integer type of row indices into ``n`` rows: int32 below 2**31, else int64."""
    return np.dtype(np.int32) if n < 2**31 else np.dtype(np.int64)


@dataclass(frozen=True)
class Plan:
    """One epoch's batches: ``rows[offsets[i]:offsets[i + 1]]`` are the row indices of batch ``i``.

    Rows of one group sit next to each other inside a grouped batch, so a batch of ``G`` groups
    with ``k`` rows each can be viewed as ``[G, k]``.
    """

    rows: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, i: int) -> np.ndarray:
        return self.rows[self.offsets[i]:self.offsets[i + 1]]

    def batch_ids(self) -> np.ndarray:
        """The batch number of every entry of ``rows``."""
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    def take(self, batch_indices: np.ndarray) -> Plan:
        """The plan made of the given batches, in the given order."""
        batch_indices = np.asarray(batch_indices, dtype=np.int64)
        sizes = np.diff(self.offsets)
        if len(sizes) and (sizes == sizes[0]).all():  # batches of one size: a reshape
            size = int(sizes[0])
            rows = self.rows.reshape(-1, size)[batch_indices].reshape(-1)
            return Plan(rows, np.arange(len(batch_indices) + 1, dtype=np.int64) * size)
        starts = self.offsets[batch_indices]
        sizes = sizes[batch_indices]
        offsets = np.zeros(len(batch_indices) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], sizes)
        return Plan(self.rows[np.repeat(starts, sizes) + within], offsets)

    def for_rank(self, rank: int, world_size: int) -> Plan:
        """Batches ``rank, rank + world_size, ...``, the same number on every rank.

        The last ``len(self) % world_size`` batches of the global plan go to no rank, so that
        no rank waits for a batch the others never get.
        """
        if world_size == 1:
            return self
        per_rank = len(self) // world_size
        return self.take(np.arange(per_rank, dtype=np.int64) * world_size + rank)


@dataclass(frozen=True)
class Layout:
    """What an epoch plan is dealt from; computed once per sampler, independent of the epoch.

    Attributes:
        rows: the rows that can be placed, sorted by member, then by row.
        member_starts: where each member's rows start in ``rows``.
        member_units: how many units each member has (``size // unit_rows``).
        component: the component of each member (``None``: every member is its own).
        unit_rows: rows per unit.
        units_per_batch: units in one full batch.
        cap: units of one component that one batch may hold.
        full_batches: full batches in every epoch (``B`` above).
        has_tail: whether ``drop_last=False`` adds one smaller, last batch.
        stats: counts a user may want reported (members, rows that can never be placed, ...).
        shuffled: the members whose rows are shuffled every epoch, as ``_size_classes``.
        component_members: members sorted by component (with ``component`` only).
        component_sizes: members of each component (with ``component`` only).
        component_shuffled: the components of several members, as ``_size_classes`` of
            ``component_members``: their members' order is shuffled every epoch.
    """

    rows: np.ndarray
    member_starts: np.ndarray
    member_units: np.ndarray
    component: np.ndarray | None
    unit_rows: int
    units_per_batch: int
    cap: int
    full_batches: int
    has_tail: bool
    stats: dict = field(default_factory=dict)
    shuffled: tuple = ()
    component_members: np.ndarray | None = None
    component_sizes: np.ndarray | None = None
    component_shuffled: tuple = ()

    @property
    def n_members(self) -> int:
        return len(self.member_starts)

    @property
    def single_units(self) -> bool:
        """Every component is one unit: a random order of them is already a random plan."""
        return self.component is None and bool((self.member_units == 1).all())


def _rank_within_runs(keys: np.ndarray) -> np.ndarray:
    """For a sequence whose equal keys are contiguous: each entry's position within its run."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    lengths = np.diff(np.append(starts, n))
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)


def _ranges(starts: np.ndarray, lengths: np.ndarray, dtype, step: int = 1) -> np.ndarray:
    """``starts[i], starts[i] + step, ...`` (``lengths[i]`` values) for every ``i``, concatenated.

    One array of the output's size: a cumulative sum of ``step`` with a jump where each range
    begins, instead of an ``arange`` plus a ``repeat`` of the same size. ``dtype`` must hold
    every value and the total length.
    """
    if len(lengths) and lengths.min() <= 0:
        keep = lengths > 0
        starts, lengths = starts[keep], lengths[keep]
    starts, lengths = starts.astype(dtype, copy=False), lengths.astype(dtype, copy=False)
    out = np.full(int(lengths.sum(dtype=np.int64)), step, dtype=dtype)
    if len(out):
        first = np.cumsum(lengths, dtype=dtype) - lengths
        out[first[0]] = starts[0]
        out[first[1:]] = starts[1:] - (starts[:-1] + (lengths[:-1] - 1) * step)
        np.cumsum(out, out=out)
    return out


def max_full_batches(component_units: np.ndarray, units_per_batch: int, cap: int) -> int:
    """Largest ``b`` with ``sum(min(units, b * cap)) >= b * units_per_batch``.

    That is the most full batches any plan can fill when a component may put at most ``cap``
    units into one batch (and so at most ``b * cap`` into ``b`` batches).
    """
    units = np.asarray(component_units, dtype=np.int64)
    if len(units) == 0:
        return 0
    # how many components have fewer than v units, and their units, for every v: from a count
    # of each unit size when the sizes are small, else from the sorted sizes
    if int(units.max()) < 1 << 24:
        counts = np.bincount(units)
        fewer = np.concatenate(([0], np.cumsum(counts)))
        below = np.concatenate(([0], np.cumsum(counts * np.arange(len(counts)))))

        def components_below(limit: int) -> int:
            return min(limit, len(counts))
    else:
        units = np.sort(units)
        fewer = np.arange(len(units) + 1)
        below = np.concatenate(([0], np.cumsum(units)))

        def components_below(limit: int) -> int:
            return int(np.searchsorted(units, limit, side="left"))

    def fits(b: int) -> bool:
        limit = b * cap
        at = components_below(limit)
        n_below = int(fewer[at])
        return int(below[at]) + (len(component_units) - n_below) * limit >= b * units_per_batch

    # fits(b) - b * units_per_batch is concave in b and fits(0) holds, so the feasible b form
    # one interval starting at 0: bisect for its end.
    lo, hi = 0, int(below[-1]) // units_per_batch
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _dense_ids(ids: np.ndarray) -> np.ndarray:
    return np.unique(ids, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _sort_members(ids) -> tuple[np.ndarray, np.ndarray]:
    """``(rows sorted by member then row, rows per member)`` for a 1-d array of ids (ints or
    strings); rows in :func:`index_dtype`, sizes int64."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-d array, got shape {ids.shape}")
    if len(ids) == 0:
        raise ValueError("there are no rows to sample from")
    n = len(ids)
    dtype = index_dtype(n)
    if ids.dtype.kind == "b":
        ids = ids.view(np.uint8)
    if ids.dtype.kind not in "iu":
        ids = _dense_ids(ids)
    low, high = int(ids.min()), int(ids.max())
    row_bits = max(1, (n - 1).bit_length())
    if high >= 1 << 63 or (high - low).bit_length() + row_bits > 63:
        ids = _dense_ids(ids)  # ids too far apart to pack beside a row number into an int64
        low, high = 0, int(ids.max())
    if n == 1 or bool((ids[1:] >= ids[:-1]).all()):  # already grouped, in order
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        return np.arange(n, dtype=dtype), np.diff(np.append(starts, n)).astype(np.int64)
    # Every rank must lay the rows out identically, whatever sort its CPU runs: sort the unique
    # keys (id << row_bits) | row, which any sort puts in one order, and read the rows back
    # from their low bits. Built in chunks so that no int64 temporary of n is made beside it.
    key = np.arange(n, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        part = ids[start:start + _CHUNK].astype(np.int64)
        part -= low
        part <<= row_bits
        key[start:start + _CHUNK] |= part
    key.sort()
    if high - low < 4 * n:
        sizes = np.zeros(high - low + 1, dtype=np.int64)
        for start in range(0, n, _CHUNK):
            sizes += np.bincount(ids[start:start + _CHUNK].astype(np.int64) - low,
                                 minlength=len(sizes))
        sizes = sizes[sizes > 0]
    else:
        member = key >> row_bits
        starts = np.flatnonzero(np.concatenate(([True], member[1:] != member[:-1])))
        del member
        sizes = np.diff(np.append(starts, n))
    np.bitwise_and(key, (1 << row_bits) - 1, out=key)
    return key.astype(dtype), sizes.astype(np.int64)


def link_groups(member: np.ndarray, keys: np.ndarray, n_members: int) -> np.ndarray:
    """Component of each member, joining members that share a key (directly or through others).

    ``member`` and ``keys`` give one entry per row. Components are numbered ``0..n-1``.
    """
    _, key = np.unique(np.asarray(keys), return_inverse=True)
    key = key.reshape(-1).astype(np.int64)
    pairs = np.unique(np.stack([key, member]), axis=1)
    # Only keys held by two or more members link anything.
    shared = np.flatnonzero(np.bincount(pairs[0]) > 1)
    pairs = pairs[:, np.isin(pairs[0], shared)]
    label = np.arange(n_members, dtype=np.int64)
    if pairs.shape[1]:
        edge_key, edge_member = pairs
        key_label = np.empty(int(key.max()) + 1, dtype=np.int64)
        while True:  # min-label propagation; each pass is whole-array, passes ~ graph diameter
            key_label.fill(n_members)
            np.minimum.at(key_label, edge_key, label[edge_member])
            new = label.copy()
            np.minimum.at(new, edge_member, key_label[edge_key])
            new = new[new]  # pointer jumping: follow labels to their own label
            if np.array_equal(new, label):
                break
            label = new
    return np.unique(label, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _size_classes(starts: np.ndarray, sizes: np.ndarray) -> tuple:
    """Segments ``[starts[i], starts[i] + sizes[i])`` grouped for ``_shuffle_segments``: one
    ``(width, starts, sizes)`` per width, ``sizes`` None where every segment fills its width.

    Segments up to ``_EXACT_WIDTHS`` long are grouped by their exact size, longer ones by the
    power of two at or above it (padded while they are shuffled).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if len(sizes) == 0:
        return ()
    width = sizes.copy()
    long = sizes > _EXACT_WIDTHS
    width[long] = 1 << np.ceil(np.log2(sizes[long])).astype(np.int64)
    order = np.argsort(width, kind="stable")
    width = width[order]
    bounds = np.flatnonzero(np.concatenate(([True], width[1:] != width[:-1], [True])))
    classes = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):  # one step per width, at most ~90
        chosen = order[lo:hi]
        w = int(width[lo])
        classes.append((w, starts[chosen], None if w <= _EXACT_WIDTHS else sizes[chosen]))
    return tuple(classes)


def _shuffle_segments(values: np.ndarray, classes: tuple, rng: np.random.Generator) -> None:
    """Shuffle every segment of ``classes`` (from ``_size_classes``) of ``values`` in place.

    The segments of one width form the rows of one matrix, shuffled row by row with
    ``Generator.permuted``; padded widths fill the row's end with -1 (``values`` are
    non-negative), which the shuffle scatters and the write-back drops.
    """
    for width, starts, sizes in classes:  # one step per width, at most ~90
        if sizes is None:
            windows = np.lib.stride_tricks.sliding_window_view(values, width, writeable=True)
            block = windows[starts]
            rng.permuted(block, axis=1, out=block)
            windows[starts] = block
        else:
            columns = np.arange(width, dtype=np.int64)
            where = starts.astype(np.int64)[:, None] + columns
            valid = columns < sizes[:, None]
            block = np.full(where.shape, -1, dtype=values.dtype)
            block[valid] = values[where[valid]]
            rng.permuted(block, axis=1, out=block)
            values[where[valid]] = block[block >= 0]


def grouped_layout(group_ids, batch_size: int, per_group: int, *, drop_last: bool = True,
                   small_groups: str = "drop", exclude_duplicates=None) -> Layout:
    """The layout of a grouped plan: ``batch_size // per_group`` groups of ``per_group`` rows.

    Raises:
        ValueError: the request cannot be met, with the reason.
    """
    if per_group < 1:
        raise ValueError(f"per_group must be at least 1, got {per_group}")
    if batch_size < per_group or batch_size % per_group:
        raise ValueError(f"batch_size {batch_size} is not a multiple of per_group {per_group}: a "
                         f"batch holds whole groups of {per_group} rows; use a batch_size such "
                         f"as {max(1, batch_size // per_group) * per_group}")
    if small_groups not in SMALL_GROUP_POLICIES:
        raise ValueError(f"small_groups must be one of {SMALL_GROUP_POLICIES}, "
                         f"got {small_groups!r}")
    group_ids = np.asarray(group_ids)
    order, sizes = _sort_members(group_ids)
    groups_per_batch = batch_size // per_group
    eligible = sizes >= per_group
    n_small = int((~eligible).sum())
    if n_small and small_groups == "error":
        first_rows = order[np.cumsum(sizes) - sizes]
        example = group_ids[first_rows[~eligible][:5]].tolist()
        raise ValueError(f"{n_small} groups have fewer than per_group={per_group} rows (e.g. "
                         f"{example}); pass small_groups='drop' to leave them out, or lower "
                         f"per_group")
    n_eligible = int(eligible.sum())
    if n_eligible < groups_per_batch:
        raise ValueError(f"only {n_eligible} groups have at least {per_group} rows, but one "
                         f"batch of {batch_size} needs {groups_per_batch} distinct groups; lower "
                         f"batch_size or per_group")
    dtype = order.dtype
    rows = order if n_small == 0 else order[np.repeat(eligible, sizes)]
    del order
    member_sizes = sizes[eligible]
    member_starts = (np.cumsum(member_sizes) - member_sizes).astype(dtype)
    member_units = (member_sizes // per_group).astype(dtype)

    component = component_members = component_sizes = None
    component_shuffled: tuple = ()
    if exclude_duplicates is not None:
        keys = np.asarray(exclude_duplicates)
        if keys.shape != group_ids.shape:
            raise ValueError(f"exclude_duplicates has {len(keys)} keys for {len(group_ids)} rows; "
                             f"pass one key per row")
        kept_member = np.repeat(np.arange(n_eligible, dtype=np.int64), member_sizes)
        component = link_groups(kept_member, keys[rows], n_eligible)
        if component.max() == n_eligible - 1:
            component = None  # no key links two groups
        else:
            component_members = np.argsort(component, kind="stable").astype(dtype)
            component_sizes = np.bincount(component)
            several = component_sizes > 1
            component_shuffled = _size_classes(
                (np.cumsum(component_sizes) - component_sizes)[several], component_sizes[several])
    component_units = (member_units if component is None
                       else np.bincount(component, weights=member_units).astype(np.int64))
    full = max_full_batches(component_units, groups_per_batch, cap=1)
    if full == 0:
        raise ValueError(f"no full batch of {groups_per_batch} distinct groups can be formed: "
                         f"only {len(component_units)} sets of groups are not linked by a "
                         f"duplicate key; lower batch_size or pass exclude_duplicates=None")
    total_units = int(member_units.sum())
    stats = {
        "rows": len(group_ids),
        "groups": len(sizes),
        "eligible_groups": n_eligible,
        "small_groups": n_small,
        "rows_in_small_groups": int(sizes[~eligible].sum()),
        "linked_group_sets": 0 if component is None else int(
            (np.bincount(component) > 1).sum()),
    }
    # which rows of a group fill its slots changes every epoch
    mixed = member_sizes > per_group
    return Layout(rows=rows, member_starts=member_starts, member_units=member_units,
                  component=component, unit_rows=per_group, units_per_batch=groups_per_batch,
                  cap=1, full_batches=full, has_tail=not drop_last and total_units > full *
                  groups_per_batch, stats=stats,
                  shuffled=_size_classes(member_starts[mixed], member_sizes[mixed]),
                  component_members=component_members, component_sizes=component_sizes,
                  component_shuffled=component_shuffled)


def diverse_layout(doc_ids, batch_size: int, max_per_doc: int, *,
                   drop_last: bool = True) -> Layout:
    """The layout of a diverse plan: batches of ``batch_size`` rows, ``max_per_doc`` per document.

    Raises:
        ValueError: the request cannot be met, with the reason.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_per_doc < 1:
        raise ValueError(f"max_per_doc must be at least 1, got {max_per_doc}")
    rows, sizes = _sort_members(doc_ids)
    member_starts = (np.cumsum(sizes) - sizes).astype(rows.dtype)
    full = max_full_batches(sizes, batch_size, cap=max_per_doc)
    if full == 0:
        most = int(np.minimum(sizes, max_per_doc).sum())
        raise ValueError(f"one batch of {batch_size} rows cannot be filled with at most "
                         f"{max_per_doc} rows per document: the {len(sizes)} documents give at "
                         f"most {most} rows; lower batch_size or raise max_per_doc")
    stats = {"rows": len(rows), "docs": len(sizes), "largest_doc": int(sizes.max())}
    # Each row is its own unit and the column orders are random, so the order of a document's
    # rows changes nothing, except which rows of a document larger than an epoch can place
    # are placed: those documents are shuffled.
    over = sizes > full * max_per_doc
    return Layout(rows=rows, member_starts=member_starts, member_units=sizes.astype(rows.dtype),
                  component=None, unit_rows=1, units_per_batch=batch_size, cap=max_per_doc,
                  full_batches=full, has_tail=not drop_last and len(rows) > full * batch_size,
                  stats=stats, shuffled=_size_classes(member_starts[over], sizes[over]))


def _fixed_prefixes(run_units: np.ndarray, n_columns: int, n_batches: int) -> np.ndarray:
    """For each column of the dealt sequence, how many leading positions it deals in place.

    Dealing position ``x`` of every column to batch ``x`` keeps every run within its cap, but
    then a run meets the same neighbours' runs in each of its batches. So each column is dealt
    in its own random order instead, except for a prefix that all columns deal in the same
    order: the head of a run continued from an earlier column, and the head (in its last
    column) of the run that continues into the next one. A run split over columns occupies
    the end of its first column and the prefix of its last; keeping those prefixes in place
    keeps the two pieces in different batches, as plain dealing would.
    """
    n = n_columns * n_batches
    ends = np.cumsum(run_units, dtype=run_units.dtype)  # below 2**31 when the rows are
    first = np.arange(n_columns, dtype=np.int64) * n_batches
    last = first + n_batches - 1
    into = np.searchsorted(ends, first, side="right")  # the run holding each column's first
    head_in = np.where(ends[into] - run_units[into] < first,
                       np.minimum(np.minimum(ends[into], n) - first, n_batches), 0)
    out_of = np.searchsorted(ends, last, side="right")  # ... and its last position
    end = np.minimum(ends[out_of], n)
    leaving = end > last + 1
    final_column = (end - 1) // n_batches
    head_out = np.where(leaving, end - final_column * n_batches, 0)
    return np.maximum(head_in, head_out)


def _deal_columns(columns: np.ndarray, fixed: np.ndarray, batch_order: np.ndarray,
                  rng: np.random.Generator) -> None:
    """Deal every row of ``columns`` (a column of the sequence; non-negative values) to the
    batches, in place: entry ``i`` of a row goes to the plan's batch ``i``.

    A row's first ``fixed[c]`` entries are dealt in place (entry ``x`` to the batch dealt
    ``x``, which is the plan's batch ``i`` where ``batch_order[i] == x``), every arrangement of
    the rest over the other batches equally likely. Done with one in-place shuffle of every row
    (``_shuffle_rows``: each row in uniformly random order, the rows not independent of each
    other): the kept entries are marked (bitwise not, so negative) first, and afterwards each
    marked entry that landed outside the kept places swaps with an unmarked one that landed
    inside them; by symmetry a row's unmarked entries are still in uniform random order.
    """
    held = np.flatnonzero(fixed > 0)
    kept_row = np.repeat(held, fixed[held])
    kept_at = _ranges(np.zeros(len(held), dtype=np.int64), fixed[held], np.int64)
    kept = columns[kept_row, kept_at]
    columns[kept_row, kept_at] = ~kept
    _shuffle_rows(columns, rng)
    if len(held) == 0:
        return
    # where each kept entry goes: the plan's batch that was dealt its place
    batch_of = np.empty_like(batch_order)
    batch_of[batch_order] = np.arange(len(batch_order), dtype=batch_order.dtype)
    home = batch_of[kept_at]
    landed = columns[kept_row, home]
    row, column = _negatives(columns, held)
    away = batch_order[column] >= fixed[row]  # marked entries outside their kept places
    columns[row[away], column[away]] = landed[landed >= 0]
    columns[kept_row, home] = kept


def _shuffle_rows(columns: np.ndarray, rng: np.random.Generator) -> None:
    """Put every row of ``columns`` in uniformly random order, in place, with one gather
    instead of a shuffle per row.

    Rows share a few random orders of their ``n`` places, each row rotated by its own offset:
    row ``r`` becomes ``row[order[(i - shift[r]) % n]]``, where the rows that share an order
    (at most ``n`` of them) all have different shifts. Each row on its own is in uniformly
    random order; two rows are not independent, but places ``x`` of one row and ``y`` of
    another land in one batch only where the order puts them exactly the difference of the two
    shifts apart, which is no likelier for neighbouring places than for any others. So runs of
    neighbouring places (a document's rows) meet the runs of other rows as often as under
    independent shuffles (``tests/samplers/test_samplers_mixing.py``), where a rotation alone
    would make two runs that meet once meet along their whole overlap. A shuffle of every row
    (``Generator.permuted``) costs about 15 ns per entry here, five times the gather.
    """
    n_rows, n = columns.shape
    if n_rows == 0 or n < 2:
        return
    n_orders = -(-n_rows // n)
    places = np.broadcast_to(np.arange(n, dtype=np.intp), (n_orders, n))
    orders = rng.permuted(places, axis=1)
    shifts = rng.permuted(places, axis=1).reshape(-1)[:n_rows]  # n different ones per order
    order_of = np.arange(n_rows, dtype=np.intp) // n
    # rotated[o, n - s] is order o rotated by s: a view of the order written twice
    rotated = np.lib.stride_tricks.sliding_window_view(
        np.concatenate((orders, orders), axis=1), n, axis=1)
    step = max(1, _GATHER // n)
    dealt = np.empty((min(step, n_rows), n), dtype=columns.dtype)
    row_starts = (np.arange(len(dealt), dtype=np.intp) * n)[:, None]
    for start in range(0, n_rows, step):  # chunks of rows, ~40 at 10M entries
        rows = columns[start:start + step]
        count = len(rows)
        index = rotated[order_of[start:start + step], n - shifts[start:start + step]]
        index += row_starts[:count]
        np.take(rows.reshape(-1), index, out=dealt[:count])
        rows[...] = dealt[:count]


def _negatives(columns: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(row, column)`` of every negative entry of the given rows (ascending), in row-major
    order; scanned a few rows at a time into one small mask (a mask of the whole matrix would be
    a fresh allocation as large as the scan)."""
    step = max(1, _GATHER // columns.shape[1])
    mask = np.empty((min(step, len(rows)), columns.shape[1]), dtype=bool)
    every_row = len(rows) == len(columns)
    found_row, found_column = [], []
    for start in range(0, len(rows), step):  # chunks of rows, ~400 at 100M entries
        chosen = rows[start:start + step]
        part = mask[:len(chosen)]
        np.less(columns[start:start + step] if every_row else columns[chosen], 0, out=part)
        r, c = np.divmod(np.flatnonzero(part), columns.shape[1])
        found_row.append(chosen[r])
        found_column.append(c)
    return np.concatenate(found_row), np.concatenate(found_column)


def _take_units(rows: np.ndarray, unit_starts: np.ndarray, unit_rows: int,
                out: np.ndarray | None = None) -> np.ndarray:
    """The rows of the given units, one after another, written to ``out`` (a new array if
    None; it may be ``unit_starts`` itself when ``unit_rows`` is 1).

    A chunk at a time: a fresh index array as large as the output (``np.take`` makes an intp
    copy of int32 indices) would cost more in first-touch page faults than the gather
    (measured here: 1.6 s to touch 400 MB on a loaded machine, 0.1 s to write into memory
    already touched).
    """
    n = len(unit_starts) * unit_rows
    if out is None:
        out = np.empty(n, dtype=rows.dtype)
    step = max(1, _GATHER // unit_rows)
    index = np.empty((min(step, len(unit_starts)), unit_rows), dtype=np.intp)
    within = np.arange(unit_rows, dtype=np.intp)
    for start in range(0, len(unit_starts), step):  # chunks of units, ~400 at 100M rows
        starts = unit_starts[start:start + step]
        where = out[start * unit_rows:(start + len(starts)) * unit_rows]
        if unit_rows == 1:  # np.take reads each index before it writes the same place
            np.take(rows, starts, out=where, mode="clip")
            continue
        part = index[:len(starts)]
        np.add(starts[:, None], within, out=part)
        np.take(rows, part.reshape(-1), out=where, mode="clip")  # "clip": unbuffered
    return out


def _offsets(n_full: int, full_size: int, tail_size: int | None) -> np.ndarray:
    sizes = np.full(n_full + (tail_size is not None), full_size, dtype=np.int64)
    if tail_size is not None:
        sizes[-1] = tail_size
    return np.concatenate(([0], np.cumsum(sizes)))


def _plan_single_units(layout: Layout, rows: np.ndarray, rng: np.random.Generator) -> Plan:
    starts = layout.member_starts.copy()  # one unit per member: its start
    rng.shuffle(starts)
    n_full, per_batch, k = layout.full_batches, layout.units_per_batch, layout.unit_rows
    # every unit is its own run, so what the full batches leave (fewer than one batch) is
    # the smaller last batch, whole
    placed = len(starts) if layout.has_tail else n_full * per_batch
    tail = (placed - n_full * per_batch) * k if layout.has_tail else None
    return Plan(_take_units(rows, starts[:placed], k), _offsets(n_full, per_batch * k, tail))


def _run_order(layout: Layout,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The epoch's order of members: ``(start of each member's rows, its units, units of
    each run)``, in that order; components in random order, the members of one component
    next to each other."""
    starts, units = layout.member_starts, layout.member_units
    if layout.component is None:
        if starts.dtype == np.int32:
            # one shuffle of (start, units) pairs packed into int64s: no gathers at random
            packed = starts.astype(np.int64) << 32
            packed |= units
            rng.shuffle(packed)
            units = (packed & 0xFFFFFFFF).astype(np.int32)
            packed >>= 32
            return packed.astype(np.int32), units, units
        member_order = np.arange(layout.n_members, dtype=starts.dtype)
        rng.shuffle(member_order)
        return starts[member_order], units[member_order], units[member_order]
    members = layout.component_members
    if layout.component_shuffled:
        members = members.copy()
        _shuffle_segments(members, layout.component_shuffled, rng)
    sizes = layout.component_sizes
    component_order = rng.permutation(len(sizes))
    member_order = members[_ranges((np.cumsum(sizes) - sizes)[component_order],
                                   sizes[component_order], np.int64)]
    component_units = np.bincount(layout.component, weights=units).astype(np.int64)
    return starts[member_order], units[member_order], component_units[component_order]


def _plan_runs(layout: Layout, rows: np.ndarray, rng: np.random.Generator) -> Plan:
    n_full, per_batch, k = layout.full_batches, layout.units_per_batch, layout.unit_rows
    n_dealt = n_full * per_batch
    member_starts, member_units, run_units = _run_order(layout, rng)
    # the epoch's sequence of units, by where each starts in rows
    sequence = _ranges(member_starts, member_units, rows.dtype, step=k)
    del member_starts, member_units
    placeable_units = np.minimum(run_units, n_full * layout.cap)
    placeable = None
    if (placeable_units < run_units).any():  # runs longer than the epoch can place
        run_first = np.cumsum(run_units) - run_units
        in_run = np.arange(len(sequence), dtype=np.int64) - np.repeat(run_first, run_units)
        placeable = np.flatnonzero(in_run < n_full * layout.cap)
        del in_run
    tail = _tail(layout, sequence, run_units, placeable) if layout.has_tail else None
    dealt = sequence[:n_dealt] if placeable is None else sequence[placeable[:n_dealt]]
    del placeable
    if k == 1:
        _take_units(rows, dealt, 1, out=dealt)  # deal the row numbers themselves
    columns = dealt.reshape(per_batch, n_full)
    batch_order = rng.permutation(n_full).astype(rows.dtype)
    _deal_columns(columns, _fixed_prefixes(placeable_units, per_batch, n_full), batch_order,
                  rng)
    n_tail = 0 if tail is None else len(tail) * k
    out = np.empty(n_dealt * k + n_tail, dtype=rows.dtype)
    if k == 1:
        out[:n_dealt].reshape(n_full, per_batch)[...] = columns.T
    else:
        _take_units(rows, np.ascontiguousarray(columns.T).reshape(-1), k, out=out)
    del sequence, dealt, columns
    if tail is not None:
        _take_units(rows, tail, k, out=out[n_dealt * k:])
    return Plan(out, _offsets(n_full, per_batch * k, None if tail is None else n_tail))


def _tail(layout: Layout, sequence: np.ndarray, run_units: np.ndarray,
          placeable: np.ndarray | None) -> np.ndarray:
    """The units of the smaller last batch: of the units no full batch holds, in sequence order,
    at most ``cap`` of each run, at most one batch."""
    n_dealt = layout.full_batches * layout.units_per_batch
    left = np.ones(len(sequence), dtype=bool)
    left[np.arange(n_dealt) if placeable is None else placeable[:n_dealt]] = False
    left = np.flatnonzero(left)
    run = np.repeat(np.arange(len(run_units)), run_units)[left]
    return sequence[left[_rank_within_runs(run) < layout.cap][:layout.units_per_batch]]


def plan_epoch(layout: Layout, seed: int, epoch: int) -> Plan:
    """The global plan of one epoch: a pure function of ``(layout, seed, epoch)``.

    Full batches come first, in random order; the smaller last batch (``has_tail``) comes last.
    """
    # SFC64: of numpy's generators the fastest at the bounded draws of a shuffle (7% over
    # PCG64 here), which are most of an epoch's time
    rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence([int(seed), int(epoch)])))
    rows = layout.rows
    if layout.shuffled:
        rows = rows.copy()
        _shuffle_segments(rows, layout.shuffled, rng)
    if layout.single_units:
        return _plan_single_units(layout, rows, rng)
    return _plan_runs(layout, rows, rng)


def epoch_batches(layout: Layout) -> int:
    """Number of batches of every epoch's global plan."""
    return layout.full_batches + int(layout.has_tail)
