"""The run directory: ``config.json``, ``metrics.jsonl``, ``checkpoints/``, ``eval.json``.

A training writes into a directory that is new, empty, or holds a run (its ``config.json``);
anything else (a folder of the user's files, a link to one, a path below a file) is refused
before anything is written (``RunDir.inspect``). One training at a time holds the directory's
lock (``run_lock``).

Checkpoints are written atomically (temporary file, then rename) as ``step-00001234.pt`` with
their SHA-256 beside them (``checkpoints``); the newest two are kept. Loading takes the newest one
whose digest and contents check out, so a checkpoint cut short by a crash, or damaged later,
falls back to the one before it and says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from pathlib import Path

from uncollapse.atomic import TEMP_MARK, atomic_path
from uncollapse.errors import InputError, ToolError
from uncollapse.paths import DIRECTORY, file_kind
from uncollapse.report import to_jsonable
from uncollapse.trainers import checkpoints
from uncollapse.trainers.config import bound_problem
from uncollapse.trainers.run_lock import LOCK_NAME, OWNER_NAME

KEEP_CHECKPOINTS = 2
WRITTEN_BEFORE_FIRST_CHECKPOINT = ("config.json", "preflight.json", "metrics.jsonl",
                                   "checkpoints", "tensorboard")
"""What a run writes before its first checkpoint: removed when it stops that early."""
BOOKKEEPING = frozenset({LOCK_NAME, OWNER_NAME})

NEW, EMPTY, RUN, UNFINISHED = "new", "empty", "run", "unfinished"


class RunDir:
    """Paths and files of one training run."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.eval = self.path / "eval.json"

    def holds_a_run(self) -> bool:
        """Whether a run has written here (its config or a checkpoint)."""
        return self.config.exists() or any(self.checkpoints.glob("step-*.pt"))

    def create(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    # what is there ----------------------------------------------------------------------
    def inspect(self) -> str:
        """``new`` (nothing there yet), ``empty``, ``run`` (a run with a checkpoint or an
        evaluation) or ``unfinished`` (a run stopped before its first checkpoint).

        Raises:
            ToolError: anything else: a file, a path below a file, a link to nowhere, or a
                directory holding files that are not a run's (named in the message).
        """
        where = _describe(self.path)
        try:
            info = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            _check_can_create(self.path)
            return NEW
        except OSError as exc:
            raise ToolError(f"{where}: cannot be examined ({exc.strerror}); check the path and "
                            "the permissions of its folders") from exc
        if file_kind(info.st_mode) != DIRECTORY:
            raise ToolError(f"{where}: is a {file_kind(info.st_mode)}, not a directory; give a "
                            "new or empty directory as --out, or a run's directory with --resume")
        try:
            entries = sorted(os.listdir(self.path))
        except OSError as exc:
            raise ToolError(f"{where}: cannot be listed ({exc.strerror})") from exc
        own = [e for e in entries if e in BOOKKEEPING or TEMP_MARK in e]
        rest = [e for e in entries if e not in own]
        if rest == ["checkpoints"] and not any(self.checkpoints.iterdir()):
            rest = []
        if not rest:
            return EMPTY
        if "config.json" not in rest:
            shown = ", ".join(rest[:8]) + (f" and {len(rest) - 8} more" if len(rest) > 8 else "")
            raise ToolError(f"{where}: holds files that are not an uncollapse run's ({shown}) "
                            "and no config.json; training there could replace them. Give a new "
                            "or empty directory as --out")
        recipe = self.recipe()
        if recipe is None:
            raise ToolError(f"{self.config}: is not the config of an uncollapse run (no known "
                            "'recipe'); give a new or empty directory as --out")
        if self.checkpoint_paths() or self.eval.exists():
            return RUN
        return UNFINISHED

    def recipe(self) -> str | None:
        """The recipe named by ``config.json``, or None when it is not a run's config."""
        try:
            values = json.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        name = values.get("recipe") if isinstance(values, dict) else None
        return name if isinstance(name, str) and name else None

    def read_config(self, config_class) -> dict:
        """The options of ``config.json`` that ``config_class`` has, each checked against the
        field's type, then all by the config's own ``check()``: a damaged or hand-edited config
        is an InputError naming the option (each option's bounds are those its flag accepts).
        """
        try:
            values = json.loads(self.config.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InputError(self.config, f"no such file; is {self.path} a run directory "
                             "written by `uncollapse train`?") from exc
        except (OSError, ValueError) as exc:
            raise InputError(self.config, f"cannot be read as JSON ({exc})") from exc
        if not isinstance(values, dict):
            raise InputError(self.config, f"holds a JSON {type(values).__name__}; expected the "
                             "object of a run's options")
        checked = {}
        for field in dataclasses.fields(config_class):
            if field.name not in values:
                continue
            value = values[field.name]
            if not _has_type(value, str(field.type)):
                raise InputError(self.config, f"option {field.name!r} is {value!r:.60}; "
                                 f"expected {field.type}. The file was changed since training")
            problem = bound_problem(field, value)
            if problem is not None:
                raise InputError(self.config, f"option {field.name!r}: the value {problem}; the "
                                 "file was changed since training")
            checked[field.name] = value
        try:
            config_class.from_dict(checked).check()
        except (ValueError, TypeError) as exc:
            raise InputError(self.config, f"{exc}; the file was changed since training") \
                from None
        return checked

    def remove_unfinished(self) -> None:
        """Delete what a run writes before its first checkpoint (nothing else)."""
        for name in WRITTEN_BEFORE_FIRST_CHECKPOINT:
            path = self.path / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    # metrics ----------------------------------------------------------------------------
    def append_metrics(self, record: dict) -> None:
        """One JSON line per logged step (non-finite floats as "nan"/"inf")."""
        line = json.dumps(to_jsonable(record), allow_nan=False) + "\n"
        try:
            with open(self.metrics, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:
            raise checkpoints.no_space_error(
                self.metrics, exc, f"the metrics of step {record.get('step')}",
                "the run stopped; free space, then continue it with --resume (a torn last "
                "line is dropped)") from exc

    def read_metrics(self) -> list[dict]:
        """Every record of ``metrics.jsonl``. A last line cut short (no newline, not JSON: a
        write interrupted by a full disk or a crash) is dropped with a warning; any other line
        that is not JSON is an InputError naming it."""
        if not self.metrics.exists():
            return []
        text = self.metrics.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == len(lines) and not text.endswith("\n"):
                    warnings.warn(f"{self.metrics}, line {number}: dropped a torn last line "
                                  f"({len(line)} characters, no newline), left by a write that "
                                  "was cut short", RuntimeWarning, stacklevel=2)
                    break
                raise InputError(self.metrics, f"not a JSON line ({exc})", line=number) from exc
            if not isinstance(record, dict):
                raise InputError(self.metrics, "not a JSON object", line=number)
            records.append(record)
        return records

    def truncate_metrics(self, step: int) -> None:
        """Drop lines of steps after ``step`` (a resumed run writes them again)."""
        if self.metrics.exists():
            kept = [r for r in self.read_metrics() if _step_of(r) <= step]
            self.write_metrics(kept)

    def write_metrics(self, records: list[dict]) -> None:
        with atomic_path(self.metrics) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    def write_json(self, path: Path, values: dict) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(to_jsonable(values), indent=2, allow_nan=False) + "\n")

    # checkpoints ------------------------------------------------------------------------
    def checkpoint_paths(self) -> list[Path]:
        """Checkpoints, newest first."""
        return sorted(self.checkpoints.glob("step-*.pt"), reverse=True)

    def save_checkpoint(self, step: int, state: dict) -> Path:
        """Write ``step-<step>.pt`` and its digest; keep the newest ``KEEP_CHECKPOINTS``."""
        path = self.checkpoints / f"step-{step:08d}.pt"
        checkpoints.save(path, state)
        for old in self.checkpoint_paths()[KEEP_CHECKPOINTS:]:
            checkpoints.remove(old)
        kept = {p.name for p in self.checkpoint_paths()}
        for side in self.checkpoints.glob(f"step-*.pt{checkpoints.DIGEST_SUFFIX}"):
            if side.name.removesuffix(checkpoints.DIGEST_SUFFIX) not in kept:
                side.unlink(missing_ok=True)  # a digest whose checkpoint never landed
        return path

    def load_checkpoint(self, map_location="cpu", fits=None) -> tuple[dict, Path]:
        """The newest checkpoint whose digest and contents check out; a newer one that does not
        is skipped with a warning naming it and the one used instead.

        ``fits(state, path)``, when given, puts the state to use (into a model, an optimiser)
        and raises CheckpointError when it does not fit: such a checkpoint is skipped too.

        Raises:
            CheckpointError: no checkpoint passes (each one and its fault are named).
        """
        broken: list[checkpoints.CheckpointError] = []
        tried: set[Path] = set()
        # a training may write a newer checkpoint and remove older ones while this reads: a
        # file that vanished is no fault, and the newer ones are looked for again
        for _ in range(5):
            vanished = False
            for path in self.checkpoint_paths():
                if path in tried:
                    continue
                tried.add(path)
                try:
                    state = checkpoints.load(path, map_location=map_location)
                    if fits is not None:
                        fits(state, path)
                except checkpoints.CheckpointError as exc:
                    if not path.exists():
                        vanished = True
                        break
                    broken.append(exc)
                    continue
                if broken:
                    warnings.warn(f"skipped damaged checkpoint(s): "
                                  f"{'; '.join(map(str, broken))}. Using {path.name} (step "
                                  f"{state['step']}), the newest good one", RuntimeWarning,
                                  stacklevel=2)
                return state, path
            if not vanished:
                break
        if broken:
            raise checkpoints.CheckpointError(
                self.checkpoints, f"no checkpoint can be used: {'; '.join(map(str, broken))}")
        raise checkpoints.CheckpointError(
            self.checkpoints, "holds no checkpoint (step-*.pt); is this a run directory "
            "written by `uncollapse train`?")

    def check_checkpoints(self) -> list[str]:
        """The faults of the checkpoints present (digest or contents), one line each."""
        faults = []
        for path in self.checkpoint_paths():
            try:
                checkpoints.load(path)
            except checkpoints.CheckpointError as exc:
                faults.append(str(exc))
        return faults


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
          "None": (type(None),)}


def _has_type(value, annotation: str) -> bool:
    """Whether ``value`` (from JSON) fits a field annotated ``annotation`` (``int | None``);
    an annotation other than these plain types is not checked."""
    names = [n.strip() for n in annotation.split("|")]
    if any(n not in _TYPES for n in names):
        return True
    if isinstance(value, bool) and "bool" not in names:
        return False
    return any(isinstance(value, _TYPES[n]) for n in names)


def _step_of(record: dict) -> float:
    step = record.get("step")
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else -1


def _describe(path: Path) -> str:
    """``PATH`` or, for a link, ``PATH (a link to TARGET)``."""
    if path.is_symlink():
        return f"{path} (a link to {os.path.realpath(path)})"
    return str(path)


def _check_can_create(path: Path) -> None:
    """Raise ToolError when ``path`` cannot become a directory: a parent is a file, or a
    dangling link is in the way."""
    if os.path.islink(path):
        raise ToolError(f"{path}: is a link to {os.readlink(path)}, which does not exist; remove "
                        "the link or give another --out")
    for parent in path.absolute().parents:
        try:
            info = os.stat(parent)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise ToolError(f"{path}: its folder {parent} cannot be examined "
                            f"({exc.strerror})") from exc
        if file_kind(info.st_mode) != DIRECTORY:
            raise ToolError(f"{path}: cannot be a directory: {parent} is a "
                            f"{file_kind(info.st_mode)}; give a path in a folder")
        return
