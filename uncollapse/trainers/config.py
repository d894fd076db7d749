"""What every recipe's config shares: the run directory, the device, the length of the run, the
optimiser and schedule, precision, checkpoints, guards and monitors.

Each recipe has its own dataclass (``uncollapse.trainers.<recipe>.config``) that extends
``TrainConfig`` with its data and model options; the resolved config is written to
``RUN_DIR/config.json`` and read back by ``--resume``, ``uncollapse evaluate`` and
``uncollapse serve``.

An option's bounds and choices are declared once, on its field (``option``, ``input_file``):
``check()`` enforces them for the Python API and ``uncollapse train`` derives its Click types
from the same metadata, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from uncollapse.atomic import atomic_path
from uncollapse.errors import InputError

__all__ = ["DEVICES", "ON_COLLAPSE", "PRECISIONS", "TrainConfig", "check_options", "input_file",
           "new_default", "option", "range_words", "read_run_config"]

PRECISIONS = ("bf16", "fp32")
DEVICES = ("auto", "cuda", "cpu")
ON_COLLAPSE = ("warn", "stop")


def option(default: Any = None, *, at_least: float | None = None, above: float | None = None,
           at_most: float | None = None, below: float | None = None,
           choices: tuple[str, ...] | None = None) -> Any:
    """A config field with its accepted values: ``at_least``/``above`` (a closed or open lower
    bound), ``at_most``/``below`` (a closed or open upper bound) or ``choices``.

    The metadata keys are ``min``, ``max``, ``min_open``, ``max_open`` and ``choices``.
    """
    if at_least is not None and above is not None or at_most is not None and below is not None:
        raise TypeError("give at most one lower bound (at_least or above) and one upper bound "
                        "(at_most or below)")
    metadata: dict[str, Any] = {}
    if at_least is not None or above is not None:
        metadata.update(min=above if at_least is None else at_least, min_open=at_least is None)
    if at_most is not None or below is not None:
        metadata.update(max=below if at_most is None else at_most, max_open=at_most is None)
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return field(default=default, metadata=metadata)


def input_file(default: str | None = "", *, required: bool = True) -> Any:
    """A config field naming a file the run reads (``--captions``, ``--sequences``, ...)."""
    return field(default=default, metadata={"input": True, "required": required})


def new_default(name: str, default: Any) -> Any:
    """``TrainConfig``'s field ``name`` with another default; its bounds and choices are kept
    (a recipe that trains best with other engine settings, e.g. a smaller batch)."""
    return field(default=default, metadata=TrainConfig.__dataclass_fields__[name].metadata)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def range_words(metadata) -> str:
    """``at least 1``, ``greater than 0``, ``at most 5`` or ``in [0, 1)``: the accepted range of
    a field's metadata, worded as the command line words it."""
    low, high = metadata.get("min"), metadata.get("max")
    if high is None:
        return f"{'greater than' if metadata['min_open'] else 'at least'} {_number(low)}"
    if low is None:
        return f"{'less than' if metadata['max_open'] else 'at most'} {_number(high)}"
    return (f"in {'(' if metadata['min_open'] else '['}{_number(low)}, {_number(high)}"
            f"{')' if metadata['max_open'] else ']'}")


def _within(value: float, metadata) -> bool:
    low, high = metadata.get("min"), metadata.get("max")
    # written so that NaN, which compares false to everything, is out of range
    above_low = low is None or (value > low if metadata["min_open"] else value >= low)
    below_high = high is None or (value < high if metadata["max_open"] else value <= high)
    return bool(above_low and below_high)


def bound_problem(spec, value) -> str | None:
    """What is wrong with ``value`` for the field ``spec`` against its declared bounds or
    choices (``must be at least 1, got 0``), or None; None is an unset option."""
    metadata = spec.metadata
    if value is None:
        return None
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        return f"must be one of {choices}, got {value!r}"
    if "min" not in metadata and "max" not in metadata:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if not _within(value, metadata):
        return f"must be {range_words(metadata)}, got {value}"
    return None


def check_options(config) -> None:
    """Raise ValueError naming the first field of ``config`` outside its declared bounds or
    choices (``batch_size must be at least 1, got 0``)."""
    for spec in fields(config):
        problem = bound_problem(spec, getattr(config, spec.name))
        if problem is not None:
            raise ValueError(f"{spec.name} {problem}")


@dataclass
class TrainConfig:
    """Options of the training engine (every recipe has them).

    Args:
        out: the run directory (config, metrics, checkpoints, evaluation).
        device: ``auto`` (CUDA when available), ``cuda`` or ``cpu``.
        steps: optimiser steps to run; ``epochs`` instead gives the length in epochs.
        epochs: length in epochs of the sampler's plan (instead of ``steps``).
        minutes: wall-clock minutes of training, alone or as a cap on ``steps``/``epochs``:
            the loop stops at the first step past them (with several ranks, the first logged
            step, every ``log_every``), and the cosine decay runs over them (the steps so far,
            extrapolated to the budget). Set-up before the first step and the final
            evaluation are not counted.
        batch_size: rows per batch.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up from 0 to ``lr``; cosine decay to ``lr * min_lr_ratio`` after.
        min_lr_ratio: the learning rate at the end, as a share of ``lr``.
        grad_clip: clip the gradient norm to this (0 turns it off).
        ema_decay: keep an exponential moving average of the weights, ``decay`` per step
            (e.g. 0.999; 0 turns it off). The average is what is evaluated, checkpointed as
            the run's model (evaluate, serve and report use it) and projected; the training
            weights are kept beside it in each checkpoint for ``--resume``.
        precision: ``bf16`` (autocast on CUDA; CPU runs in fp32) or ``fp32``.
        compile: ``torch.compile`` the model with its loss (one process; the model alone
            under DDP). Needs a C++ compiler on a CPU; pays off on a GPU, where the first
            steps wait for the compilation (docs/training.md).
        cuda_graphs: with ``compile``, on a GPU, in one process: capture the compiled loss and
            its backward in CUDA graphs (``torch.compile`` mode ``reduce-overhead``), which
            removes the launch cost of the many small kernels of a small model.
        seed: seed of the model's initialisation, the sampler's plans and every draw.
        resume: continue the run of the run directory from its latest readable checkpoint
            (without it, a directory that already holds a run is refused).
        log_every: write a line of ``metrics.jsonl`` (and check the loss guard) every N steps.
        checkpoint_every: write a checkpoint every N steps (and at the end).
        monitor_every: run the collapse monitor every N steps ...
        monitor_warmup: ... from this step on (before it the model is untrained).
        on_collapse: ``warn`` (log and go on) or ``stop`` (end the run with an error).
        force: start even when the pre-flight check of the inputs finds errors.
        tensorboard: also write TensorBoard event files to ``out/tensorboard``.
        quiet: no progress bar, and no progress lines.
        progress_every: off a terminal (a log file, nohup, CI), write a progress line (step,
            loss, samples/s, ETA) to stderr at the first --log-every step after each this many
            seconds; on a terminal a progress bar shows the same.
    """

    out: str = "run"
    device: str = option("auto", choices=DEVICES)
    steps: int | None = option(None, at_least=1)
    epochs: float | None = option(None, above=0)
    minutes: float | None = option(None, above=0)
    batch_size: int = option(256, at_least=1)
    lr: float = option(1e-3, at_least=0)
    weight_decay: float = option(0.01, at_least=0)
    warmup_steps: int = option(50, at_least=0)
    min_lr_ratio: float = option(0.1, at_least=0, at_most=1)
    grad_clip: float = option(1.0, at_least=0)
    ema_decay: float = option(0.0, at_least=0, below=1)
    precision: str = option("bf16", choices=PRECISIONS)
    compile: bool = False
    cuda_graphs: bool = False
    seed: int = option(0, at_least=0, at_most=2**32 - 1)
    resume: bool = False
    log_every: int = option(10, at_least=1)
    checkpoint_every: int = option(500, at_least=1)
    monitor_every: int = option(100, at_least=1)
    monitor_warmup: int = option(100, at_least=0)
    on_collapse: str = option("warn", choices=ON_COLLAPSE)
    force: bool = False
    tensorboard: bool = False
    quiet: bool = False
    progress_every: float = option(30.0, above=0)

    recipe = ""

    def check(self) -> None:
        """Raise ValueError naming the first option out of its range (declared on the field) or
        a combination of options that cannot run; a recipe adds its own combinations."""
        if self.steps is None and self.epochs is None and self.minutes is None:
            raise ValueError("give steps, epochs or minutes (the length of the run)")
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give steps or epochs, not both")
        if self.cuda_graphs and not self.compile:
            raise ValueError("cuda_graphs captures the compiled loss: set compile=True too")
        check_options(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        """The config of ``values``, ignoring keys this class does not have (older runs)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"recipe": getattr(self, "recipe", None), **self.to_dict()},
                                      indent=2) + "\n")


def read_run_config(run_dir: str | Path) -> dict:
    """The ``config.json`` of a run directory, as a dict (``recipe`` says which recipe)."""
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(path, f"no such file; is {run_dir} a run directory written by "
                         "`uncollapse train`?") from exc
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})", line=exc.lineno) from exc
