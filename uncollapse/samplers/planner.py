"""The epoch planner every batch sampler shares: arrays in, the epoch's batches out.

No torch here, and no Python loop over rows, groups or batches: the plan is built with whole-array
numpy operations (a sort, segment arithmetic, ``np.repeat`` and one reshape), so it can be tested
and benchmarked on its own.

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
(``_column_orders``). ``B`` is the largest batch count for which the components, each capped at
``B * cap`` units, still fill ``B`` full batches, which is also the largest number of full
batches any plan under the cap can have. The batch order is then shuffled, and each rank takes
every ``world_size``-th batch of that one global plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SMALL_GROUP_POLICIES = ("drop", "error")


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
        starts = self.offsets[batch_indices]
        sizes = self.offsets[batch_indices + 1] - starts
        offsets = np.zeros(len(batch_indices) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], sizes)
        return Plan(self.rows[np.repeat(starts, sizes) + within], offsets)

    def for_rank(self, rank: int, world_size: int) -> Plan:
        """Batches ``rank, rank + world_size, ...``, the same number on every rank.

        The last ``len(self) % world_size`` batches of the global plan go to no rank, so that
        no rank waits for a batch the others never get.
        """
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
        mixed: positions in ``rows`` whose order within their member changes the plan (members
            with more rows than one unit); only these are shuffled each epoch.
        mixed_key: the sort key base of those positions (their member, shifted left 31 bits).
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
    mixed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    mixed_key: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_members(self) -> int:
        return len(self.member_starts)


def _rank_within_runs(keys: np.ndarray) -> np.ndarray:
    """For a sequence whose equal keys are contiguous: each entry's position within its run."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    lengths = np.diff(np.append(starts, n))
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)


def max_full_batches(component_units: np.ndarray, units_per_batch: int, cap: int) -> int:
    """Largest ``b`` with ``sum(min(units, b * cap)) >= b * units_per_batch``.

    That is the most full batches any plan can fill when a component may put at most ``cap``
    units into one batch (and so at most ``b * cap`` into ``b`` batches).
    """
    units = np.sort(np.asarray(component_units, dtype=np.int64))
    below = np.concatenate(([0], np.cumsum(units)))

    def fits(b: int) -> bool:
        limit = b * cap
        n_below = int(np.searchsorted(units, limit, side="left"))
        return int(below[n_below]) + (len(units) - n_below) * limit >= b * units_per_batch

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


def _sort_members(ids) -> tuple[np.ndarray, np.ndarray]:
    """``(rows sorted by member, rows per member)`` for a 1-d array of ids (ints or strings)."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-d array, got shape {ids.shape}")
    if len(ids) == 0:
        raise ValueError("there are no rows to sample from")
    if ids.dtype.kind not in "iub":
        ids = np.unique(ids, return_inverse=True)[1].reshape(-1)
    ids = ids.astype(np.int64)
    n = len(ids)
    low, span = int(ids.min()), int(ids.max()) - int(ids.min()) + 1
    # Every rank must lay the rows out identically, whatever sort its CPU runs: with unique
    # keys (id, row) any sort gives the one order; it is faster than a stable sort.
    if span * n < 1 << 62:
        order = np.argsort((ids - low) * n + np.arange(n, dtype=np.int64))
    else:
        order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return order.astype(np.int64), np.diff(np.append(starts, len(ids))).astype(np.int64)


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


def _mixed_rows(member_sizes: np.ndarray, unit_rows: int) -> tuple[np.ndarray, np.ndarray]:
    member = np.repeat(np.arange(len(member_sizes), dtype=np.int64), member_sizes)
    mixed = np.flatnonzero(member_sizes[member] > unit_rows)
    return mixed, member[mixed] << 31


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
    rows = order[np.repeat(eligible, sizes)]
    member_sizes = sizes[eligible]
    member_starts = np.concatenate(([0], np.cumsum(member_sizes)[:-1])).astype(np.int64)
    member_units = member_sizes // per_group

    component = None
    if exclude_duplicates is not None:
        keys = np.asarray(exclude_duplicates)
        if keys.shape != group_ids.shape:
            raise ValueError(f"exclude_duplicates has {len(keys)} keys for {len(group_ids)} rows; "
                             f"pass one key per row")
        kept_member = np.repeat(np.arange(n_eligible, dtype=np.int64), member_sizes)
        component = link_groups(kept_member, keys[rows], n_eligible)
        if component.max() == n_eligible - 1:
            component = None  # no key links two groups
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
    mixed, mixed_key = _mixed_rows(member_sizes, per_group)
    return Layout(rows=rows, member_starts=member_starts, member_units=member_units,
                  component=component, unit_rows=per_group, units_per_batch=groups_per_batch,
                  cap=1, full_batches=full, has_tail=not drop_last and total_units > full *
                  groups_per_batch, stats=stats, mixed=mixed, mixed_key=mixed_key)


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
    member_starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    full = max_full_batches(sizes, batch_size, cap=max_per_doc)
    if full == 0:
        most = int(np.minimum(sizes, max_per_doc).sum())
        raise ValueError(f"one batch of {batch_size} rows cannot be filled with at most "
                         f"{max_per_doc} rows per document: the {len(sizes)} documents give at "
                         f"most {most} rows; lower batch_size or raise max_per_doc")
    stats = {"rows": len(rows), "docs": len(sizes), "largest_doc": int(sizes.max())}
    mixed, mixed_key = _mixed_rows(sizes, 1)
    return Layout(rows=rows, member_starts=member_starts, member_units=sizes, component=None,
                  unit_rows=1, units_per_batch=batch_size, cap=max_per_doc, full_batches=full,
                  has_tail=not drop_last and len(rows) > full * batch_size, stats=stats,
                  mixed=mixed, mixed_key=mixed_key)


def _column_orders(component: np.ndarray, n_columns: int, n_batches: int,
                   rng: np.random.Generator) -> np.ndarray:
    """For each column of the dealt sequence, which position goes to batch 0, 1, ... .

    Dealing position ``x`` of every column to batch ``x`` keeps every run within its cap, but
    then a run meets the same neighbours' runs in each of its batches. So each column is dealt
    in its own random order instead, except for a prefix that all columns deal in the same
    order: the head of a run continued from an earlier column, and the head (in its last
    column) of the run that continues into the next one. A run split over columns occupies
    the end of its first column and the prefix of its last; keeping those prefixes in place
    keeps the two pieces in different batches, as plain dealing would.
    """
    n = n_columns * n_batches
    boundary = np.concatenate(([True], component[1:] != component[:-1]))
    run_start = np.maximum.accumulate(np.where(boundary, np.arange(n), 0))
    run_end = np.append(np.flatnonzero(boundary)[1:], n)[np.cumsum(boundary) - 1]
    first = np.arange(n_columns) * n_batches
    last = first + n_batches - 1
    # head of a run that started in an earlier column
    head_in = np.where(run_start[first] < first, np.minimum(run_end[first] - first, n_batches), 0)
    # head, in its final column, of the run that leaves this column
    leaving = run_end[last] > last + 1
    final_column = (run_end[last] - 1) // n_batches
    head_out = np.where(leaving, run_end[last] - final_column * n_batches, 0)
    fixed = np.maximum(head_in, head_out)
    # Unique keys, so that every rank's sort gives the same order: random bits above the
    # position; prefix positions get negative keys in position order.
    position = np.arange(n_batches, dtype=np.int64)
    keys = rng.integers(0, 1 << 24, size=(n_columns, n_batches), dtype=np.int64)
    keys = keys * n_batches + position
    in_prefix = position[None, :] < fixed[:, None]
    keys[in_prefix] = np.broadcast_to(position - n_batches, keys.shape)[in_prefix]
    return np.argsort(keys, axis=1)


def plan_epoch(layout: Layout, seed: int, epoch: int) -> Plan:
    """The global plan of one epoch: a pure function of ``(layout, seed, epoch)``.

    Full batches come first, in random order; the smaller last batch (``has_tail``) comes last.
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    n_members = layout.n_members

    # Shuffle rows within each member; members stay in place, so the key is nearly sorted.
    rows = layout.rows
    if len(layout.mixed):
        noise = rng.integers(0, 1 << 31, size=len(layout.mixed), dtype=np.int64)
        rows = rows.copy()
        rows[layout.mixed] = rows[layout.mixed][np.argsort(layout.mixed_key | noise,
                                                           kind="stable")]

    # Members in random order, those of one component next to each other.
    if layout.component is None:
        member_order = rng.permutation(n_members)
        component_of = None
    else:
        component_rank = rng.permutation(int(layout.component.max()) + 1)
        key = component_rank[layout.component] * n_members + rng.permutation(n_members)
        member_order = np.argsort(key)
        component_of = layout.component

    units = layout.member_units[member_order]
    unit_member = np.repeat(member_order, units)
    unit_in_member = np.arange(len(unit_member), dtype=np.int64) - np.repeat(
        np.cumsum(units) - units, units)
    unit_start = layout.member_starts[unit_member] + unit_in_member * layout.unit_rows
    if component_of is None:
        unit_component, in_component = unit_member, unit_in_member
    else:
        unit_component = component_of[unit_member]
        in_component = _rank_within_runs(unit_component)

    n_full, per_batch = layout.full_batches, layout.units_per_batch
    placeable = np.flatnonzero(in_component < n_full * layout.cap)[:n_full * per_batch]
    columns = placeable.reshape(per_batch, n_full)
    order = _column_orders(unit_component[placeable], per_batch, n_full, rng)
    dealt = np.take_along_axis(columns, order, axis=1).T
    dealt = dealt[rng.permutation(n_full)]
    batches = [dealt.reshape(-1)]
    sizes = [np.full(n_full, per_batch * layout.unit_rows, dtype=np.int64)]
    if layout.has_tail:
        left = np.ones(len(unit_start), dtype=bool)
        left[dealt.reshape(-1)] = False
        left = np.flatnonzero(left)
        tail = left[_rank_within_runs(unit_component[left]) < layout.cap][:per_batch]
        batches.append(tail)
        sizes.append(np.array([len(tail) * layout.unit_rows], dtype=np.int64))
    chosen = np.concatenate(batches)
    row_positions = (unit_start[chosen][:, None]
                     + np.arange(layout.unit_rows, dtype=np.int64)).reshape(-1)
    offsets = np.zeros(sum(len(s) for s in sizes) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(sizes), out=offsets[1:])
    return Plan(rows[row_positions], offsets)


def epoch_batches(layout: Layout) -> int:
    """Number of batches of every epoch's global plan."""
    return layout.full_batches + int(layout.has_tail)
