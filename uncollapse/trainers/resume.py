"""What ``--resume`` may change: nothing that alters the run, unless the user says so.

A resumed run continues exactly where it stopped, so every option that shapes the training
(model, data, batches, optimiser, schedule, seed, loss) must equal the run's ``config.json``. The
options in ``FREE_ON_RESUME`` only say where and how loudly the run goes and may differ. Any
other option can be changed deliberately by naming it (``allow_change``, ``--allow-change``);
the change is recorded in ``metrics.jsonl`` at the step where it took effect.
"""

from __future__ import annotations

import os

from uncollapse.digests import sha256_file
from uncollapse.errors import ToolError

FREE_ON_RESUME = frozenset({"out", "resume", "device", "quiet", "compile", "cuda_graphs",
                            "tensorboard", "force", "log_every", "checkpoint_every",
                            "progress_every"})
INPUT_OPTIONS = frozenset({"captions", "text_features", "image_features", "sequences", "scenes",
                           "embeddings", "attributes"})
"""Options that name input files: given as another path, the same bytes are no change (the
data moved, or the command runs from another folder)."""


class ResumeMismatch(ToolError):
    """``--resume`` with options that differ from the run's (exit 2, nothing written)."""

    def __init__(self, run_dir, changes: dict[str, tuple], *, flag=lambda name: name):
        self.run_dir = run_dir
        self.changes = changes
        listed = "; ".join(f"{flag(name)}: {old!r} in the run, {new!r} now"
                           for name, (old, new) in changes.items())
        names = ",".join(changes)
        super().__init__(
            f"{run_dir}: cannot resume exactly, {len(changes)} option(s) differ from the run's "
            f"config.json: {listed}. Nothing was written. Give the run's values (or leave the "
            f"options out on the command line), or change them deliberately with "
            f"{flag('allow_change')} {names} (recorded in metrics.jsonl; options that change the "
            "model's shapes cannot change on resume: start a new run)")


def normalise(names) -> set[str]:
    """``["lr", "--batch-size", "temperature"]`` or ``"lr,batch-size"`` -> field names."""
    if isinstance(names, str):
        names = names.split(",")
    return {n.strip().lstrip("-").replace("-", "_") for n in names if n.strip()}


def changed_options(saved: dict, current: dict) -> dict[str, tuple]:
    """``{name: (run's value, new value)}`` for every option that shapes the run and differs
    (options a run's config.json does not have, written by an older version, are not compared)."""
    return {name: (saved[name], value) for name, value in current.items()
            if name not in FREE_ON_RESUME and name in saved and not _same(saved[name], value)
            and not (name in INPUT_OPTIONS and _same_bytes(saved[name], value))}


def check(run_dir, saved: dict, current: dict, allow_change=()) -> dict[str, tuple]:
    """The allowed changes of a resume, or ResumeMismatch naming each one not allowed.

    Raises:
        ValueError: ``allow_change`` names an option the config does not have.
    """
    allowed = normalise(allow_change)
    unknown = sorted(allowed - set(current))
    if unknown:
        raise ValueError(f"allow_change names unknown option(s) {', '.join(unknown)}; the options "
                         f"are {', '.join(sorted(set(current) - FREE_ON_RESUME))}")
    changes = changed_options(saved, current)
    refused = {k: v for k, v in changes.items() if k not in allowed}
    if refused:
        raise ResumeMismatch(run_dir, refused)
    return changes


def change_record(step: int, changes: dict[str, tuple]) -> dict:
    """The ``metrics.jsonl`` line of a resume that changed options."""
    return {"step": step, "event": "resume",
            "changed": {k: {"from": old, "to": new} for k, (old, new) in changes.items()}}


def _same_bytes(a, b) -> bool:
    """Whether the files ``a`` and ``b`` both exist and hold the same bytes."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    try:
        if os.path.samefile(a, b):
            return True
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        return sha256_file(a) == sha256_file(b)
    except OSError:
        return False




def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
