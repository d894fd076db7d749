"""The training loop every recipe runs, in one function you can read top to bottom.

Order: config -> run directory (checked, then locked: one writer) -> pre-flight check -> data on
the device -> model -> AdamW -> (resume: options compared, checkpoint verified and loaded) ->
the first write -> compile -> steps -> evaluation. Nothing is written before the first write, so
a refused or failed start leaves the directory as it was; Ctrl-C before the first checkpoint
removes what the run wrote (``_leave``). The data path costs next to nothing: each epoch's
batch plan is copied to the device once, and a step gathers its batch there by indexing, so
there is no per-step host work and no per-step host-to-device copy. The host reads values back
only every ``log_every`` steps (loss guard, metrics) and at monitor steps.

Any recipe of ``uncollapse.families.RECIPES`` runs here (``recipe_class`` finds its class by
name).

Data parallel under ``torchrun`` or ``srun`` (``distributed.py``): every rank builds the same
recipe, its sampler deals the rank its own slice of the epoch's global plan, the model is wrapped
in ``DistributedDataParallel`` after ``build_model``, and the contrastive losses compare each
rank's rows with the global batch (``gather.py``). Logged terms are averaged over ranks, so the
loss guard and the collapse monitor decide the same on every rank; only rank 0 writes the run
directory (config, metrics, checkpoints) and evaluates. A checkpoint records the world size and
every rank's RNG state; it resumes at the same world size only. Rank 0 holds the run
directory's lock.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from uncollapse import families
from uncollapse.atomic import atomic_path
from uncollapse.errors import InputError, ToolError
from uncollapse.extras import require
from uncollapse.trainers import checkpoints, distributed, resume
from uncollapse.trainers.compiling import compile_for_training, step_begins, use_cuda_graphs
from uncollapse.trainers.config import TrainConfig, read_run_config
from uncollapse.trainers.ema import ExponentialAverage, averaged_model
from uncollapse.trainers.recipe import PreflightError, Recipe, recipe_class
from uncollapse.trainers.run_dir import EMPTY, NEW, RUN, UNFINISHED, RunDir
from uncollapse.trainers.run_lock import RunLock
from uncollapse.trainers.schedule import learning_rate
from uncollapse.validators.collapse.monitor import CollapseError, CollapseMonitor, LossGuard

__all__ = ["ProgressLines", "RunResult", "describe_device", "evaluate_run", "load_run",
           "resolve_device", "save_projection", "train"]

logger = logging.getLogger("uncollapse")
UNBOUNDED_STEPS = 1 << 62  # a run of minutes alone: no step limit of its own
training_clock = time.monotonic  # the clock of a run's wall-clock budget (tests replace it)


@dataclass
class RunResult:
    """What ``train`` returns: where the run lives, its last step, and its evaluation."""

    run_dir: RunDir
    step: int
    evaluation: dict  # empty on ranks other than 0, which do not evaluate
    rank: int = 0


def train(recipe_class: type[Recipe], config: TrainConfig, *,
          allow_change: Iterable[str] | str = ()) -> RunResult:
    """Train ``recipe_class`` with ``config``; see the module docstring for the order of work.

    ``config.out`` must be new, empty, or hold a run (with ``config.resume``, of this recipe
    and with the same options, except those named in ``allow_change``: see
    ``uncollapse.trainers.resume``). Nothing is written until the inputs passed their check, and
    with ``resume`` until the checkpoint was loaded into the model and optimiser. One training
    at a time holds the run directory's lock.

    Raises:
        PreflightError: the inputs failed their check (unless ``config.force``).
        LossGuardError: a loss term went non-finite or below its declared bound.
        CollapseError: the monitor found a collapse and ``config.on_collapse == "stop"``.
        ResumeMismatch: ``resume`` with options that differ from the run's.
        CheckpointError: ``resume`` and no checkpoint passes its digest and checks.
        RunLocked: another training holds the run directory.
        TrainingInterrupted: Ctrl-C (a KeyboardInterrupt saying what it left).
    """
    config.check()
    ranks, device = distributed.start(config.device)
    try:
        result = _train(recipe_class, config, ranks, device, allow_change)
        distributed.wait_for_all(ranks)
        return result
    finally:
        distributed.stop(ranks)


def _train(recipe_class: type[Recipe], config: TrainConfig, ranks: distributed.Ranks,
           device: torch.device, allow_change) -> RunResult:
    # run directory -------------------------------------------------------------------------
    run = RunDir(config.out)
    if not ranks.is_main:  # rank 0 checks, creates and locks the directory; only it writes there
        return _train_locked(recipe_class, config, run, allow_change, _Progress(), ranks, device)
    # refuse a file, a path below one, a folder of other files, or resume without a run, before
    # anything is created (a directory that holds a run is judged under its lock)
    found = run.inspect()
    if found in (NEW, EMPTY):
        _check_target(run, found, config, recipe_class)
    created = _missing_folders(run.path)
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolError(f"{run.path}: cannot create the run directory ({exc.strerror})") from exc
    lock = RunLock(run.path)
    try:
        lock.acquire()
    except BaseException:
        _remove_folders(created)  # still empty unless the holder made them at the same moment
        raise
    progress = _Progress()
    try:
        return _train_locked(recipe_class, config, run, allow_change, progress, ranks,
                             device)
    except KeyboardInterrupt:
        raise TrainingInterrupted(_leave(run, lock, created, progress, interrupted=True)) \
            from None
    except BaseException:
        if not progress.wrote:
            _leave(run, lock, created, progress, interrupted=False)
        raise
    finally:
        lock.release()


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a training; ``str()`` says whether a resumable run was left."""


@dataclass
class _Progress:
    """How far a training got: whether it wrote anything, and its newest checkpoint."""

    wrote: bool = False
    step: int = 0
    checkpoint: Path | None = None


def _missing_folders(path: Path) -> list[Path]:
    """The folders of ``path`` that do not exist yet, innermost first (what mkdir creates)."""
    missing = []
    for folder in (path, *path.absolute().parents):
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing


def _remove_folders(folders: list[Path]) -> None:
    """Remove the folders a run created, innermost first, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _leave(run: RunDir, lock: RunLock, created: list[Path], progress: _Progress, *,
           interrupted: bool) -> str:
    """Clean up after a training that stopped early; say what is left.

    A run with a checkpoint stays (resumable). One without is removed: what it wrote, its lock
    files, and the directory when this training created it (with the folders above it that it
    created, unless Ctrl-C stopped it).
    """
    where = f"at step {progress.step}" if progress.wrote else "before training started"
    if progress.checkpoint is not None:
        return (f"interrupted {where}: {run.path} holds a resumable run (newest checkpoint "
                f"{progress.checkpoint.name}); continue it with --resume")
    if progress.wrote:
        run.remove_unfinished()
    lock.remove_files()
    # a refused or failed start leaves none of the folders it made; an interrupted training
    # removes its run directory and keeps the folders above it (where other runs go)
    _remove_folders(created[:1] if interrupted else created)
    if not interrupted:
        return ""
    left = "removed it" if created and not run.path.exists() else "left it as it was"
    return (f"interrupted {where}, before the first checkpoint: nothing to resume; removed "
            f"what the run had written to {run.path} and {left}. Run the same command again to "
            "start over")


def _check_target(run: RunDir, found: str, config: TrainConfig, recipe_class) -> None:
    """Refuse a run directory that does not fit the request: a run without ``resume``, no run
    (or a run of another recipe) with it."""
    if config.resume and found in (NEW, EMPTY):
        raise ValueError(f"resume: {run.path} holds no run to continue (no config.json); run "
                         "without resume=True to start one")
    if config.resume and found == UNFINISHED:
        raise ValueError(f"resume: {run.path} holds a run stopped before its first checkpoint, "
                         "so there is nothing to resume; run without resume=True to start it "
                         "over")
    if not config.resume and found == RUN:
        raise ValueError(f"{run.path} already holds a run; pass resume=True to continue it, "
                         "or choose a new out directory")
    if found in (RUN, UNFINISHED) and run.recipe() != recipe_class.name:
        raise ValueError(f"{run.path} holds a run of the {run.recipe()} recipe, not of "
                         f"{recipe_class.name}; choose a new out directory")


def _train_locked(recipe_class: type[Recipe], config: TrainConfig, run: RunDir, allow_change,
                  progress: _Progress, ranks: distributed.Ranks,
                  device: torch.device) -> RunResult:
    # run directory (again, now that this process holds it), resume options, device ---------
    found = run.inspect()
    _check_target(run, found, config, recipe_class)
    changes = {}
    if config.resume:
        changes = resume.check(run.path, run.read_config(type(config)), config.to_dict(),
                               allow_change)
    torch.manual_seed(config.seed)
    recipe = recipe_class(config, device)

    # pre-flight: refuse broken inputs before any GPU time is spent; nothing is written -------
    preflight = recipe.preflight()
    blocking = [f for f in preflight.errors
                if not config.force or f.code in recipe.unforceable]
    if blocking:
        raise PreflightError(preflight, forceable=not any(
            f.code in recipe.unforceable for f in blocking))

    # data on the device, model, optimiser -------------------------------------------------
    recipe.setup()
    if recipe.sampler is None:
        raise ValueError("no training rows: the evaluation split holds every row; choose "
                         "another eval split")
    distributed.broadcast_tensors([getattr(recipe, n) for n in recipe.replicated], ranks)
    model = recipe.build_model().to(device)
    # DDP copies rank 0's weights to every rank; constructing it waits for every rank, so all
    # have checked the run directory above before rank 0 writes to it below
    wrapped = distributed.wrap(model, ranks, device)
    if ranks.rank > 0:  # dropout masks and probes of their own; rank 0 keeps the seed's stream
        torch.manual_seed(config.seed + 1_000_003 * ranks.rank)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=config.lr, betas=(0.9, 0.95),
                                  fused=device.type == "cuda")
    ema = averaged_model(model, config.ema_decay)
    per_epoch = recipe.batches_per_epoch()
    total_steps = (config.steps or (max(1, math.ceil(config.epochs * per_epoch))
                                    if config.epochs else UNBOUNDED_STEPS))
    budget = config.minutes * 60 if config.minutes else None
    step, epoch, batch_in_epoch = 0, 0, 0

    # resume: model, optimiser, step, sampler position and RNG, exactly as they were; all in
    # memory, so a checkpoint that does not fit leaves the run directory as it was -------------
    if config.resume:
        what = "this run's model and optimiser" + (
            f" (changed: {', '.join(changes)})" if changes else "")
        state, path = run.load_checkpoint(map_location=device, fits=lambda state, path: (
            checkpoints.fit(path, lambda: _restore(state, model, optimizer, recipe, device,
                                                   ranks, path, ema), what)))
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        progress.checkpoint = path

    # the first write: the run directory holds this run from here on ---------------------------
    progress.wrote, progress.step = True, step
    device_used = describe_device(device)
    if ranks.is_main:
        if found == UNFINISHED:
            run.remove_unfinished()
        run.create()
        run.write_json(run.config, {"recipe": config.recipe, **config.to_dict(),
                                    "world_size": ranks.world_size, "device_used": device_used})
        run.write_json(run.path / "preflight.json", preflight.to_dict())
        if config.resume:
            run.truncate_metrics(step)
            if changes:
                run.append_metrics(resume.change_record(step, changes))
        else:
            run.metrics.unlink(missing_ok=True)

    graphs = use_cuda_graphs(config.cuda_graphs, ranks.distributed, ranks.is_main)
    compiled = (compile_for_training(recipe, wrapped, distributed=ranks.distributed,
                                     cuda_graphs=graphs)
                if config.compile else wrapped)
    # a CUDA graph's outputs are overwritten by its next replay: keep copies of the terms
    keep = (lambda v: v.detach().clone()) if graphs else (lambda v: v.detach())
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if device.type == "cuda" and config.precision == "bf16"
                else contextlib.nullcontext())
    guard = LossGuard(recipe.lower_bounds)
    monitor = CollapseMonitor(every=config.monitor_every,
                              on_finding="raise" if config.on_collapse == "stop" else "warn")
    writer = _tensorboard(run) if config.tensorboard and ranks.is_main else None

    def save(at_step: int) -> None:
        rng = {"cpu": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        rng_of_ranks = distributed.objects_of_ranks(rng, ranks)  # every rank, at every save
        if not ranks.is_main:
            return
        progress.checkpoint = run.save_checkpoint(at_step, {
            "step": at_step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
            "model": (ema.module if ema else model).state_dict(),
            "optimizer": optimizer.state_dict(),
            **({"train_model": model.state_dict(), "ema_updates": ema.updates}
               if ema is not None else {}),
            "sampler": recipe.sampler.state_dict(batches_done=batch_in_epoch),
            "rng": rng, "world_size": ranks.world_size,
            **({"rng_of_ranks": rng_of_ranks} if ranks.distributed else {}),
            "recipe": recipe.name, "model_config": recipe.model_config()})

    # the loop ---------------------------------------------------------------------------------
    recipe.on_epoch(epoch)
    plan = recipe.epoch_plan(epoch)
    pending: list[tuple[int, dict[str, torch.Tensor]]] = []  # terms not yet read back
    schedule_steps = total_steps  # with a time budget: re-estimated at every logged step
    bar = tqdm(total=total_steps if total_steps < UNBOUNDED_STEPS else None, initial=step,
               desc=f"train {recipe.name}", leave=False,
               dynamic_ncols=True,
               disable=config.quiet or not sys.stderr.isatty() or not ranks.is_main)
    model.train()
    clock, samples_since = time.perf_counter(), 0
    lines = ProgressLines(f"train {recipe.name}", total_steps, step, config.progress_every,
                          on=not config.quiet and not sys.stderr.isatty() and ranks.is_main)
    first_record = not config.resume  # a resumed run keeps the records it had
    started = training_clock()
    while step < total_steps:
        if batch_in_epoch == len(plan):
            epoch, batch_in_epoch = epoch + 1, 0
            recipe.sampler.set_epoch(epoch)
            recipe.on_epoch(epoch)
            plan = recipe.epoch_plan(epoch)
        lr = learning_rate(step, peak=config.lr, warmup_steps=config.warmup_steps,
                           total_steps=schedule_steps, min_ratio=config.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr

        rows = plan[batch_in_epoch]
        step_begins(graphs)
        with autocast:
            out = recipe.step(compiled, rows)
        out.loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)

        pending.append((step, {"loss": keep(out.loss),
                               **{k: keep(v) for k, v in out.terms.items()}}))
        samples_since += rows.shape[0]
        step, batch_in_epoch = step + 1, batch_in_epoch + 1
        progress.step = step

        record = {}
        if step - 1 >= config.monitor_warmup and (step - 1) % config.monitor_every == 0:
            # the global batch on every rank, so every rank reaches the same verdict
            probe = {k: distributed.gather_rows(v, ranks) for k, v in out.probe.items()}
            record.update(distributed.raise_together(ranks, device, _monitor, recipe, monitor,
                                                     step - 1, probe, ranks.is_main))
        if step % config.log_every == 0 or step == total_steps or record:
            values = _read_back(pending, ranks)  # averaged over ranks
            distributed.raise_together(ranks, device, _check, guard, values)
            pending.clear()
            elapsed = time.perf_counter() - clock
            last = values[-1][1]
            record = {"step": step, "epoch": epoch, "lr": lr, **last, **record,
                      "samples_per_s": samples_since * ranks.world_size / elapsed
                      if elapsed > 0 else math.nan}
            if first_record:  # the run's first record names the device it ran on
                record["device_used"], first_record = device_used, False
            lines.at(step, last["loss"], record["samples_per_s"])
            if ranks.is_main:
                run.append_metrics(record)
            if writer is not None:
                for key, value in record.items():
                    if isinstance(value, (int, float)) and key != "step":
                        writer.add_scalar(key, value, step)
            bar.set_postfix(loss=f"{last['loss']:.4g}",
                            samples_s=f"{record['samples_per_s']:.0f}")
            clock, samples_since = time.perf_counter(), 0
        bar.update(1)
        # one process reads its clock every step; ranks agree at the logged steps
        if budget is not None and (not ranks.distributed or step % config.log_every == 0):
            schedule_steps, out_of_time = _time_budget(step, training_clock() - started, budget,
                                                       total_steps, ranks, device)
            if out_of_time:
                total_steps = step
        if step % config.checkpoint_every == 0 and step < total_steps:
            save(step)
    bar.close()
    save(step)

    # evaluation, once: rank 0 ---------------------------------------------------------------
    if not ranks.is_main:
        return RunResult(run, step, {}, ranks.rank)
    evaluated = ema.module if ema else model
    evaluated.eval()
    with torch.no_grad(), autocast:
        evaluation, arrays = recipe.evaluate(evaluated)
    evaluation = {"recipe": recipe.name, "step": step, "device_used": device_used, **evaluation}
    run.write_json(run.eval, evaluation)
    save_projection(run, arrays)
    if writer is not None:
        writer.close()
    return RunResult(run, step, evaluation)


def _time_budget(step: int, elapsed: float, budget: float, total_steps: int,
                 ranks: distributed.Ranks, device: torch.device) -> tuple[int, bool]:
    """Where a run of ``budget`` wall-clock seconds stands ``elapsed`` seconds in: the step count
    its schedule decays over (the steps so far extrapolated to the budget, at most
    ``total_steps``) and whether it is out of time. Rank 0's clock decides for every rank, so
    all take the same learning rate and stop at the same step."""
    estimate = min(total_steps, max(step + 1, round(step * budget / max(elapsed, 1e-9))))
    decision = torch.tensor([estimate, float(elapsed >= budget)], dtype=torch.float64,
                            device=device)
    distributed.broadcast_tensors([decision], ranks)
    return int(decision[0]), bool(decision[1])


def _restore(state: dict, model, optimizer, recipe: Recipe, device: torch.device,
             ranks: distributed.Ranks, path: Path, ema: ExponentialAverage | None) -> None:
    """Put a checkpoint's state into the model, optimiser, sampler and this rank's RNGs (a
    checkpoint of another world size is refused first)."""
    distributed.check_resume_world_size(state.get("world_size", 1), ranks, path)
    if (ema is not None) != ("train_model" in state):
        raise ValueError("the run kept an exponential average of its weights and this resume "
                         "does not, or the other way round (--ema-decay)")
    model.load_state_dict(state.get("train_model", state["model"]))
    if ema is not None:
        ema.load(state["model"], state["ema_updates"])
    optimizer.load_state_dict(state["optimizer"])
    recipe.sampler.load_state_dict(state["sampler"])
    rng = state.get("rng_of_ranks", [state["rng"]])[ranks.rank]
    torch.set_rng_state(rng["cpu"])
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)


def describe_device(device: torch.device) -> str:
    """The device a run used, as a person names it: ``cuda:0 NVIDIA H100 80GB HBM3`` or
    ``cpu`` (``--device auto`` says only what was asked)."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


class ProgressLines:
    """Progress off a terminal, where a bar cannot redraw: one line on stderr
    (``train lvm: step 120/1000 (12%), loss 0.4321, 8,512 samples/s, ETA 1m43s``) at the first
    logged step after every ``every`` seconds. ``on`` False: nothing."""

    def __init__(self, name: str, total_steps: int, start_step: int, every: float, *, on: bool):
        self.name, self.total, self.every, self.on = name, total_steps, every, on
        self.start_step = start_step
        self.started = self.last = time.perf_counter()

    def at(self, step: int, loss: float, samples_per_s: float) -> None:
        now = time.perf_counter()
        if not self.on or now - self.last < self.every:
            return
        self.last = now
        done = step - self.start_step
        if self.total >= UNBOUNDED_STEPS:  # a run of minutes: no step count to go by
            where, eta = f"step {step}", "set by --minutes"
        else:
            where = f"step {step}/{self.total} ({100 * step // self.total}%)"
            eta = _duration((self.total - step) * (now - self.started) / done if done > 0
                            else math.nan)
        print(f"{self.name}: {where}, loss {loss:.4g}, {samples_per_s:,.0f} samples/s, "
              f"ETA {eta}", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{hours}h{minutes:02d}m" if hours else
            f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s")


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; "
                         "use device 'cpu' or 'auto'")
    return torch.device(device)


def _monitor(recipe: Recipe, monitor: CollapseMonitor, step: int, probe: dict,
             warn: bool = True) -> dict:
    """The recipe's own monitors plus the collapse monitor's metrics and findings; ``warn``:
    pass their warnings on (rank 0 only, so a run of N ranks warns once)."""
    with warnings.catch_warnings():
        if not warn:
            warnings.simplefilter("ignore")
        record = {f"monitor/{k}": v for k, v in recipe.monitor(probe).items()}
    outputs = probe.get("outputs")
    if outputs is None:
        return record
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = monitor.update(step, outputs.float(), _float_or_none(probe.get("targets")),
                                    labels=probe.get("labels"), groups=probe.get("groups"))
        for warning in caught if warn else ():  # on_collapse="warn": a message, the run goes on
            logger.warning("step %d: %s", step, warning.message)
    except CollapseError:
        raise
    record.update({f"monitor/{k}": v for k, v in values.items()})
    if monitor.last_report is not None and monitor.last_report.findings:
        record["monitor/findings"] = monitor.last_report.codes()
    return record


def _check(guard: LossGuard, values: list[tuple[int, dict]]) -> None:
    for at, terms in values:
        guard.check(at, **terms)


def _float_or_none(tensor):
    return None if tensor is None else tensor.float()


def _read_back(pending: list[tuple[int, dict[str, torch.Tensor]]],
               ranks: distributed.Ranks = distributed.Ranks()) -> list[tuple[int, dict]]:
    """Every pending step's terms as floats, averaged over ranks, read from the device with one
    synchronisation."""
    if not pending:
        return []
    names = list(pending[0][1])
    stacked = torch.stack([torch.stack([terms[n].float().reshape(()) for n in names])
                           for _, terms in pending])
    stacked = distributed.mean_over_ranks(stacked, ranks).cpu().tolist()
    return [(at, dict(zip(names, row, strict=True)))
            for (at, _), row in zip(pending, stacked, strict=True)]


def save_projection(run: RunDir, arrays: dict) -> None:
    """Arrays for the report's 2-D projection (``projection.npz``), written atomically."""
    if not arrays:
        return
    with atomic_path(run.path / "projection.npz", suffix=".npz") as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})


def _tensorboard(run: RunDir):
    require("tensorboard", "tensorboard", "tensorboard logging (--tensorboard)")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run.path / "tensorboard"))


def load_run(run_dir: str | Path, overrides: dict | None = None, device: str = "auto", *,
             with_path: bool = False):
    """The recipe (set up on its data, or on ``overrides``' data) and the trained model of a run.

    Returns ``(recipe, model)`` with the model in eval mode, from the newest checkpoint whose
    digest and contents check out (``(recipe, model, checkpoint path)`` with ``with_path``).
    """
    run = RunDir(run_dir)
    name = run.recipe()
    known = [entry.name for entry in families.RECIPES]
    if name not in known:
        read_run_config(run_dir)  # a missing or unreadable file says so
        raise InputError(run.config, f"names no known recipe ('recipe': one of "
                         f"{', '.join(known)}); is {run_dir} a run directory?")
    cls = recipe_class(name)
    values = run.read_config(cls.config_class)
    config = cls.config_class.from_dict({**values, **(overrides or {}), "device": device,
                                         "resume": False})
    recipe = cls(config, resolve_device(device))
    recipe.preflight()
    recipe.setup()
    model = recipe.build_model().to(recipe.device)

    def fits(state: dict, path: Path) -> None:
        if state["recipe"] != recipe.name:
            raise checkpoints.CheckpointError(path, f"is a {state['recipe']!r} checkpoint in a "
                                              f"{recipe.name} run")
        checkpoints.fit(path, lambda: model.load_state_dict(state["model"]), "the run's model")

    _, path = run.load_checkpoint(map_location=recipe.device, fits=fits)
    model.eval()
    return (recipe, model, path) if with_path else (recipe, model)


def evaluate_run(run_dir: str | Path, overrides: dict | None = None,
                 device: str = "auto") -> dict:
    """Re-run a run's evaluation from its checkpoint, on its own data or on ``overrides``'."""
    recipe, model, path = load_run(run_dir, overrides, device, with_path=True)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if recipe.device.type == "cuda" and recipe.config.precision == "bf16"
                else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        evaluation, _ = recipe.evaluate(model)
    return {"recipe": recipe.name, "run": str(run_dir), "checkpoint": path.name,
            "data": overrides or {}, **evaluation}
