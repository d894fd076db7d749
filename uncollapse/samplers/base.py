"""What every planned batch sampler shares: epochs, ranks, exact length and resuming."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from uncollapse.samplers.distributed import rank_and_world_size
from uncollapse.samplers.planner import Layout, Plan, epoch_batches, plan_epoch

STATE_VERSION = 1


class PlannedBatchSampler(Sampler[list[int]]):
    """A batch sampler whose epoch is one plan from :func:`~uncollapse.samplers.planner.plan_epoch`.

    Subclasses build the :class:`~uncollapse.samplers.planner.Layout`; this class turns it into
    batches: every rank computes the same global plan for ``(seed, epoch)`` and takes batches
    ``rank, rank + world_size, ...``, the same number on every rank.

    Epochs: ``set_epoch(e)`` selects the plan; a pass that runs to the end moves on to the next
    epoch by itself, so a training loop that never calls ``set_epoch`` still gets a new plan
    each epoch (an explicit ``set_epoch`` always wins).
    """

    def __init__(self, layout: Layout, *, seed: int, rank: int | None,
                 world_size: int | None, kind: str):
        super().__init__()
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.rank, self.world_size = rank_and_world_size(rank, world_size)
        self.seed = int(seed)
        self._layout = layout
        self._kind = kind
        self._global_batches = epoch_batches(layout)
        self._per_rank = self._global_batches // self.world_size
        if self._per_rank == 0:
            raise ValueError(f"an epoch has only {self._global_batches} batches, fewer than "
                             f"world_size {self.world_size}: every rank needs at least one; "
                             f"lower batch_size or use fewer ranks")
        self._epoch = 0
        self._digest: str | None = None
        self._resume_at = 0
        self._yielded = 0
        rows_full = layout.full_batches * layout.units_per_batch * layout.unit_rows
        self.stats = dict(layout.stats)
        self.stats.update({
            "batches_per_epoch": self._global_batches,
            "batches_per_rank": self._per_rank,
            "batches_left_for_rank_balance": self._global_batches % self.world_size,
            "rows_in_full_batches": rows_full,
            "has_smaller_last_batch": layout.has_tail,
        })

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Use the plan of ``epoch`` from the next pass on (call it on every rank).

        Selecting the epoch a loaded state is in keeps its resume point; any other epoch starts
        from its first batch.
        """
        if int(epoch) != self._epoch:
            # a resume point (or a pass left part-way) belongs to its own epoch only
            self._resume_at = 0
            self._yielded = 0
        self._epoch = int(epoch)

    def data_digest(self) -> str:
        """A digest of what the plans are dealt from (the rows of each group or document and
        the batch shape): a saved state only resumes a sampler with the same digest."""
        if self._digest is None:
            layout = self._layout
            digest = hashlib.blake2b(digest_size=16)
            for array in (layout.rows, layout.member_units, layout.component):
                if array is not None:
                    digest.update(np.ascontiguousarray(array, dtype=np.int64).data)
                digest.update(b"|")
            digest.update(repr((layout.unit_rows, layout.units_per_batch, layout.cap,
                                layout.full_batches, layout.has_tail)).encode())
            self._digest = digest.hexdigest()
        return self._digest

    def global_plan(self, epoch: int | None = None) -> Plan:
        """The plan of all ranks together for ``epoch`` (default: the current one)."""
        return plan_epoch(self._layout, self.seed, self._epoch if epoch is None else epoch)

    def plan(self, epoch: int | None = None) -> Plan:
        """This rank's batches for ``epoch`` (default: the current one)."""
        return self.global_plan(epoch).for_rank(self.rank, self.world_size)

    def rows_unplaced(self, epoch: int | None = None) -> int:
        """Rows that no batch of any rank holds in ``epoch``: small groups, rows beyond a
        multiple of ``per_group``, rows over a cap, the part of a batch that drop_last drops, and
        batches left out so that every rank has the same number."""
        placed = self.global_plan(epoch).take(np.arange(self._per_rank * self.world_size))
        return int(self.stats["rows"] - len(placed.rows))

    def __len__(self) -> int:
        """Batches the next pass yields (fewer than a full epoch after ``load_state_dict``)."""
        return self._per_rank - self._resume_at

    def __iter__(self) -> Iterator[list[int]]:
        plan = self.plan()
        start = self._resume_at
        self._yielded = start
        for i in range(start, len(plan)):
            self._yielded = i + 1
            yield plan.batch(i).tolist()
        self._resume_at = 0
        self._yielded = 0
        self._epoch += 1

    def state_dict(self, batches_done: int | None = None) -> dict:
        """Where this rank stands, to resume with :meth:`load_state_dict`.

        Args:
            batches_done: batches of the current epoch the training loop has finished. By
                default, the batches this sampler has handed out; pass the loop's own count
                when a ``DataLoader`` prefetches batches ahead of the loop.
        """
        done = self._yielded if batches_done is None else int(batches_done)
        return {"version": STATE_VERSION, "kind": self._kind, "seed": self.seed,
                "epoch": self._epoch, "batches_done": done, "rank": self.rank,
                "world_size": self.world_size, "batches_per_rank": self._per_rank,
                "data": self.data_digest()}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next pass yields exactly the batches of ``state``'s epoch not yet done.

        Raises:
            ValueError: the state comes from a sampler with another kind, seed, world size,
                epoch length or data, so its batches would not line up with this one's.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"sampler state version {state.get('version')} is not "
                             f"{STATE_VERSION}; it was saved by another version of uncollapse")
        mine = self.state_dict()
        for key in ("kind", "seed", "world_size", "batches_per_rank", "data"):
            if state.get(key) != mine[key]:
                raise ValueError(f"cannot resume: the saved state has {key}={state.get(key)!r} "
                                 f"but this sampler has {mine[key]!r}; build the sampler with "
                                 f"the same data and arguments as the run that saved it")
        done = int(state["batches_done"])
        if not 0 <= done <= self._per_rank:
            raise ValueError(f"cannot resume: batches_done={done} is outside "
                             f"0..{self._per_rank}, the batches of one epoch on this rank")
        self._epoch = int(state["epoch"])
        self._resume_at = done
        self._yielded = done
