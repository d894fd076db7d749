"""What every planned batch sampler shares: epochs, ranks, exact length and resuming."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
from torch.utils.data import BatchSampler, Sampler

from uncollapse.samplers.distributed import (
    accelerate_wrapper,
    initialised_group,
    lightning_epoch,
    rank_and_world_size,
    ranks_of_sampler,
)
from uncollapse.samplers.planner import Layout, Plan, epoch_batches, plan_epoch

STATE_VERSION = 3  # 3: columns dealt by rotations of shared random orders; 2: by a shuffle
# per column. A state of another version would resume another plan

ACCELERATE_RECIPE = ("build the sampler with rank=0, world_size=1 so that accelerate deals its "
                     "batches to the processes (keep drop_last=True), or do not pass the "
                     "DataLoader to accelerator.prepare (the sampler then splits the batches "
                     "across ranks itself)")


class EpochLink:
    """What a training library finds at ``batch_sampler.sampler``: PyTorch Lightning and
    Hugging Face accelerate call ``set_epoch`` there at the start of every epoch, and this
    passes it on to the batch sampler, so their epoch count selects its plan."""

    def __init__(self, batch_sampler: PlannedBatchSampler):
        self.batch_sampler = batch_sampler

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


class PlannedBatchSampler(BatchSampler):
    """A batch sampler whose epoch is one plan from :func:`~uncollapse.samplers.planner.plan_epoch`.

    Subclasses build the :class:`~uncollapse.samplers.planner.Layout`; this class turns it into
    batches: every rank computes the same global plan for ``(seed, epoch)`` and takes batches
    ``rank, rank + world_size, ...``, the same number on every rank.

    Epochs: ``set_epoch(e)`` selects the plan of the next pass; without it, every new pass
    (every ``iter()``, whether or not the previous one ran to its end) moves on to the next
    epoch, so a loop that never calls ``set_epoch``, or stops after ``len(loader)`` batches,
    still gets a new plan each epoch. A pass fixes its epoch at its first batch, not at
    ``iter()``; one that PyTorch Lightning starts takes the epoch Lightning is about to set
    (its loops create a worker loader's iterator, which draws batches at once, before they
    call ``set_epoch`` on a resumed run).

    Resuming: ``len()`` is always the whole epoch on this rank; a pass of a loaded state's
    epoch skips the batches that state has done, as torchdata's ``StatefulDataLoader`` and
    the training libraries that count steps against ``len()`` expect.

    Ranks: ``rank``/``world_size`` if given, else those of ``sampler`` (a
    ``DistributedSampler``, as PyTorch Lightning passes when it re-creates the batch sampler),
    else those of the ``torch.distributed`` group, read when the sampler is first used after
    the group is initialised (so a sampler built before the training library starts the group
    still splits its batches across ranks).
    """

    def __new__(cls, *args, **kwargs):
        # PyTorch Lightning re-creates a batch sampler it cannot capture the arguments of as
        # cls(sampler, batch_size=..., drop_last=...); say what to do before __init__ fails
        if args and isinstance(args[0], Sampler):
            raise TypeError(
                f"{cls.__name__} got a {type(args[0]).__name__} where its ids belong: PyTorch "
                f"Lightning re-creates a batch sampler this way to add its DistributedSampler "
                f"when the DataLoader was built outside a *_dataloader hook. {cls.__name__} "
                f"splits its batches across ranks itself: build the DataLoader inside "
                f"train_dataloader() of the LightningModule or LightningDataModule (Lightning "
                f"then passes the rank as sampler=), or pass "
                f"Trainer(use_distributed_sampler=False)")
        return super().__new__(cls)

    def __init__(self, layout: Layout, *, seed: int, rank: int | None,
                 world_size: int | None, kind: str, sampler=None):
        Sampler.__init__(self)  # not BatchSampler's: it wraps a sampler of indices
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if sampler is not None:
            self._ranks: tuple[int, int] | None = ranks_of_sampler(sampler, rank, world_size)
        elif rank is None and world_size is None:
            self._ranks = initialised_group()
        else:
            self._ranks = rank_and_world_size(rank, world_size)
        self.seed = int(seed)
        self.sampler = EpochLink(self)
        self._layout = layout
        self._kind = kind
        self._global_batches = epoch_batches(layout)
        self._epoch = 0
        self._chosen = True  # the next pass uses self._epoch as it is
        self._pass = 0  # the pass that moves the state; older iterators no longer do
        self._running = False  # whether pass self._pass has started and not ended
        self._digest: str | None = None
        self._resume_at = 0  # batches of self._epoch that its next pass skips
        self._yielded = 0
        self._check_ranks()

    @property
    def rank(self) -> int:
        return self._rank_and_world_size()[0]

    @property
    def world_size(self) -> int:
        return self._rank_and_world_size()[1]

    def _rank_and_world_size(self) -> tuple[int, int]:
        if self._ranks is None:
            group = initialised_group()
            if group is None:
                return 0, 1
            self._ranks = group
            self._check_ranks()
        return self._ranks

    def _check_ranks(self) -> None:
        world_size = self.world_size
        if self._global_batches // world_size == 0:
            raise ValueError(f"an epoch has only {self._global_batches} batches, fewer than "
                             f"world_size {world_size}: every rank needs at least one; "
                             f"lower batch_size or use fewer ranks")

    @property
    def _per_rank(self) -> int:
        return self._global_batches // self.world_size

    @property
    def stats(self) -> dict:
        """The layout's counts and the epoch's shape on this rank (see the subclass)."""
        layout = self._layout
        stats = dict(layout.stats)
        stats.update({
            "batches_per_epoch": self._global_batches,
            "batches_per_rank": self._per_rank,
            "batches_left_for_rank_balance": self._global_batches % self.world_size,
            "rows_in_full_batches": layout.full_batches * layout.units_per_batch
            * layout.unit_rows,
            "has_smaller_last_batch": layout.has_tail,
        })
        return stats

    @property
    def epoch(self) -> int:
        """The epoch of the pass in progress (or of the last one, or of the next one after
        ``set_epoch`` or ``load_state_dict``)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Use the plan of ``epoch`` for the next pass (call it on every rank).

        Selecting the epoch a loaded state is in keeps its resume point; any other epoch starts
        from its first batch. Selecting the epoch of the pass in progress changes nothing
        (PyTorch Lightning does so after the pass has started).
        """
        epoch = int(epoch)
        if self._running and epoch == self._epoch:
            return
        if epoch != self._epoch:
            # a resume point (or a pass left part-way) belongs to its own epoch only
            self._resume_at = 0
            self._detach()
        self._yielded = self._resume_at
        self._epoch = epoch
        self._chosen = True

    def _detach(self) -> None:
        """Leave the pass in progress, if any: its iterator goes on, without moving the state."""
        self._pass += 1
        self._running = False

    def data_digest(self) -> str:
        """A digest of what the plans are dealt from (the rows of each group or document and
        the batch shape): a saved state only resumes a sampler with the same digest."""
        if self._digest is None:
            layout = self._layout
            digest = hashlib.blake2b(digest_size=16)
            for array in (layout.rows, layout.member_units, layout.component):
                if array is not None:
                    digest.update(array.dtype.str.encode())
                    digest.update(np.ascontiguousarray(array).data)
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
        placed = self.global_plan(epoch).offsets[self._per_rank * self.world_size]
        return int(self.stats["rows"] - placed)

    def __len__(self) -> int:
        """Batches of one epoch on this rank, also when a pass resumes part-way through one."""
        return self._per_rank

    def __iter__(self) -> Iterator[list[int]]:
        # The pass starts at its first next(), not at iter(): a DataLoader with workers calls
        # iter() twice per pass and drops the first iterator unused.
        self._check_wrapper(accelerate_wrapper(self))
        epoch = lightning_epoch()
        if epoch is None:
            epoch = self._epoch if self._chosen else self._epoch + 1
        if epoch != self._epoch:
            self._resume_at = 0
        self._detach()
        self._epoch, self._chosen, self._running = epoch, False, True
        this_pass, start = self._pass, self._resume_at
        self._yielded = start
        plan = self.plan(epoch)
        for i in range(start, len(plan)):
            if this_pass == self._pass:
                self._yielded = i + 1
            yield plan.batch(i).tolist()
        if this_pass == self._pass:
            self._resume_at = 0  # the epoch is done: a later pass of it is a whole one
            self._running = False

    def _check_wrapper(self, wrapper) -> None:
        """Refuse a Hugging Face accelerate loader that would deal this sampler's batches
        to the processes a second time, or pad them with repeated rows."""
        if wrapper is None or type(wrapper).__name__ not in ("BatchSamplerShard",
                                                              "DataLoaderDispatcher"):
            return
        if self.world_size > 1:
            raise RuntimeError(
                f"accelerate's prepared DataLoader deals batches to the processes itself, and "
                f"this {type(self).__name__} already gives rank {self.rank} of "
                f"{self.world_size} its own batches: each process would see only "
                f"1/{self.world_size} of them and the rest of the rows would be dropped every "
                f"epoch; {ACCELERATE_RECIPE}")
        if not self.drop_last:
            raise RuntimeError(
                f"accelerate's prepared DataLoader fills a smaller last batch (drop_last=False) "
                f"with rows of the first batches, which repeats rows in the epoch and breaks "
                f"the {type(self).__name__}'s batches; use drop_last=True")
        processes = getattr(wrapper, "num_processes", 1)
        if getattr(wrapper, "split_batches", False):
            self._check_split(processes)

    def _check_split(self, pieces: int) -> None:
        """Raise if a batch cut into ``pieces`` equal pieces (accelerate's ``split_batches``)
        breaks the guarantee; subclasses whose batches have structure override this."""

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
        self._detach()
        self._epoch = int(state["epoch"])
        self._resume_at = done
        self._yielded = done
        self._chosen = True
