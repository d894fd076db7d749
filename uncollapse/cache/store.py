"""The content-addressed artifact store (docs/cache.md).

An entry lives at ``<root>/<stage>/<key[:2]>/<key>/``. It is built in a temporary directory
beside it (``.tmp-<key>-...``) under the key's lock, checked, sealed (files read-only, each
file's SHA-256 and fingerprint in ``manifest.json``, written last) and renamed into place, so
a crash leaves a stray temporary directory (ignored, and removed by ``clear`` once its owner is
gone) and never a half entry. A hit is served only after its files matched the manifest
(``integrity``); a bad entry is reported, removed and built again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from uncollapse import __version__
from uncollapse.cache.crashpoints import crash_point
from uncollapse.cache.hashing import (
    DigestMemo,
    Snapshot,
    changed_since,
    sha256_json,
    source_changed,
    source_digest,
)
from uncollapse.cache.integrity import (
    MANIFEST,
    check_files,
    fingerprint,
    manifest_problem,
    sha256_nofollow,
)
from uncollapse.cache.lock import (
    SharedHold,
    file_lock,
    remove_lock_file,
    try_exclusive,
    wait_for_readers,
)
from uncollapse.cache.outputs import check_output
from uncollapse.errors import ToolError

TMP_PREFIX = ".tmp-"
READERS_TIMEOUT_S = 15.0
STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
KEY = re.compile(r"[0-9a-f]{64}")
TMP_KEY = re.compile(r"^\.tmp-(?:old-)?([0-9a-f]{12,64})-")


def default_root() -> Path:
    """``$UNCOLLAPSE_CACHE``, else the platform's cache directory (``$XDG_CACHE_HOME/uncollapse``,
    else ``~/.cache/uncollapse`` on Linux). An empty or relative ``XDG_CACHE_HOME`` is ignored,
    as the XDG specification says; a root that needs a home directory nobody can name is a
    ToolError saying what to set."""
    if env := os.environ.get("UNCOLLAPSE_CACHE", "").strip():
        return _expand_home(env, f"UNCOLLAPSE_CACHE={env!r}")
    if sys.platform == "darwin":
        return _home("the platform cache directory") / "Library" / "Caches" / "uncollapse"
    if os.name == "nt":
        local = os.environ.get("LOCALAPPDATA", "").strip()
        base = Path(local) if local else _home("the platform cache directory")
        return base / "uncollapse" / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "uncollapse"
    return _home("the cache directory (XDG_CACHE_HOME is not set)") / ".cache" / "uncollapse"


_NO_ROOT_FIX = ("set UNCOLLAPSE_CACHE=DIR (or XDG_CACHE_HOME=DIR) to an absolute path, or pass "
                "--cache-dir DIR")


def _home(needed_for: str) -> Path:
    try:
        return Path.home()
    except (RuntimeError, KeyError, OSError) as exc:
        raise ToolError(f"{needed_for} lies in the home directory, and there is no home "
                        "directory (HOME is not set and this user has no entry in the "
                        f"password database); {_NO_ROOT_FIX}") from exc


def _expand_home(value: str, where: str) -> Path:
    try:
        return Path(value).expanduser()
    except (RuntimeError, KeyError, OSError) as exc:
        user = value[1:].split("/", 1)[0]
        whose = f"user {user!r} is unknown" if user else "there is no home directory (HOME " \
            "is not set and this user has no entry in the password database)"
        raise ToolError(f"{where}: cannot expand '~' ({whose}); {_NO_ROOT_FIX}") from exc


def check_stage_name(name: str) -> str:
    """``name`` if it is a plain stage name (one directory under the root), else ToolError."""
    if not isinstance(name, str) or not STAGE_NAME.fullmatch(name) or ".." in name:
        raise ToolError(f"stage {name!r} is not a stage name: a stage is one plain directory "
                        "name under the cache root (letters, digits, '-', '_', '.'; no '/', "
                        "no '..'), such as captions or chunks; `uncollapse cache ls` lists them")
    return name


@dataclass(frozen=True)
class Stage:
    """A build step whose outputs are cached.

    Args:
        name: the stage's name (a directory under the cache root).
        version: bump it when the output changes for a reason the source digest cannot see.
        modules: the stage's own modules (a package counts all its files); every module of
            the same top-level package that they import is part of the key too.
        format_version: version of the output format.
    """

    name: str
    version: int
    modules: tuple[str, ...]
    format_version: int = 1

    def __post_init__(self):
        check_stage_name(self.name)


@dataclass
class Entry:
    """A cache entry. One returned by ``Cache.build`` holds the entry's use lock while it
    lives (``release()`` lets go earlier), so ``cache clear`` never removes it under a reader.
    ``broken`` says why an entry found by ``Cache.entries`` cannot be used."""

    stage: str
    key: str
    path: Path
    manifest: dict
    hit: bool = False
    broken: str | None = None
    hold: SharedHold | None = field(default=None, repr=False, compare=False)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def files(self) -> dict:
        return {} if self.broken else self.manifest["files"]

    @property
    def result(self) -> dict:
        """What the builder returned besides its files (for example its build report)."""
        return self.manifest.get("result", {})

    def release(self) -> None:
        if self.hold is not None:
            self.hold.release()


@dataclass
class BuildOutput:
    """What a builder function returns: row counts, schemas and any result to keep."""

    rows: dict = field(default_factory=dict)
    schema: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("rows", "schema", "result"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"BuildOutput.{name} must be a dict keyed by output file name "
                                f"(e.g. rows={{'table.parquet': 1000}}), got "
                                f"{type(getattr(self, name)).__name__}")


def stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Cache:
    """A content-addressed store of built artifacts.

    Example:
        >>> cache = Cache("/tmp/uc-cache")
        >>> entry = cache.build(Stage("demo", 1, ("uncollapse.cache.store",)), options={},
        ...                     inputs={}, builder=lambda out: (out / "a.txt").write_text("a")
        ...                     and BuildOutput())
    """

    def __init__(self, root: str | os.PathLike | None = None,
                 warn: Callable[[str], None] = stderr_warning):
        self.root = Path(root) if root is not None else default_root()
        self.warn = warn
        self._digests: DigestMemo | None = None

    @property
    def digests(self) -> DigestMemo:
        """The input-digest memo, opened on first use (``cache path`` and ``ls`` never need
        to write)."""
        if self._digests is None:
            with self._writing(self.root):
                self._digests = DigestMemo(self.root / ".digests.sqlite")
        return self._digests

    @contextlib.contextmanager
    def _writing(self, where: Path):
        try:
            yield
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ToolError(f"the cache directory {self.root} cannot be written ({where}: "
                            f"{reason}); point the cache at a writable directory with "
                            "--cache-dir DIR or UNCOLLAPSE_CACHE=DIR") from exc

    # keys -----------------------------------------------------------------------------------
    def key_inputs(self, stage: Stage, *, options: Mapping, inputs: Mapping) -> dict:
        """Everything that can change a stage's output, as plain JSON values.

        ``inputs`` maps a role to a file or directory path (hashed by content, and named: the
        path decides how the file is read and what the build report says) or to a dict
        ``{"digest": ...}`` for inputs that are not local files (a hub dataset's fingerprint).
        """
        return self._key_inputs(stage, options, inputs)[0]

    def _key_inputs(self, stage: Stage, options: Mapping, inputs: Mapping
                    ) -> tuple[dict, dict[str, Snapshot]]:
        """The key inputs, and a snapshot of each local input by its path (to tell, before
        committing, that the builder read the very bytes the key names)."""
        input_digests, snapshots = {}, {}
        for role, value in inputs.items():
            if isinstance(value, Mapping):
                input_digests[role] = dict(value)
            else:
                path = Path(value)
                if not path.exists():
                    raise ToolError(f"{path}: input does not exist")
                self._check_outside(path)
                snapshot = self.digests.snapshot(path)
                snapshots[str(value)] = snapshot
                input_digests[role] = {"sha256": snapshot.digest, "path": str(value)}
        key_inputs = {"stage": stage.name, "stage_version": stage.version,
                      "code": source_digest(stage.modules), "options": dict(options),
                      "inputs": input_digests, "format_version": stage.format_version}
        return key_inputs, snapshots

    def _check_outside(self, folder: Path) -> None:
        """Refuse an input folder that holds the cache: the cache's own files would be part of
        the folder's digest (a new key on every build, never a hit), and a reader of the folder
        could take cached outputs for input."""
        if not folder.is_dir():
            return
        root, real = os.path.realpath(self.root), os.path.realpath(folder)
        if root == real or root.startswith(real.rstrip(os.sep) + os.sep):
            raise ToolError(f"the cache directory {self.root} lies inside the input folder "
                            f"{folder}: its own files would become part of the input, so no "
                            "build could ever be found again. Put the cache outside the folder "
                            "with --cache-dir DIR or UNCOLLAPSE_CACHE=DIR")

    @staticmethod
    def _check_inputs_unchanged(snapshots: Mapping[str, Snapshot]) -> None:
        """Refuse to commit when an input is not what it was when the key was computed: the
        output would be stored under the key of other bytes than those it was built from."""
        for path, snapshot in snapshots.items():
            change = changed_since(path, snapshot)
            if change is not None:
                raise ToolError(f"{path}: the input changed while it was being built ({change}); "
                                "nothing was cached, since the output may not match the bytes "
                                "its key names. Build again once nothing writes to the input "
                                "(copy it first if another program keeps changing it)")

    @staticmethod
    def key(key_inputs: Mapping) -> str:
        return sha256_json(key_inputs)

    def entry_dir(self, stage: str, key: str) -> Path:
        return self.root / check_stage_name(stage) / key[:2] / key

    # build ----------------------------------------------------------------------------------
    def build(self, stage: Stage, *, options: Mapping, inputs: Mapping,
              builder: Callable[[Path], BuildOutput], rebuild: bool = False,
              check: Callable[[Path, BuildOutput], None] | None = None) -> Entry:
        """Return the cached entry for these inputs, building it with ``builder`` on a miss.

        ``builder(out_dir)`` writes its files into ``out_dir`` and returns a ``BuildOutput``.
        ``check(out_dir, output)``, when given, raises if the output is not fit to keep
        (beyond the checks every output gets: files present, row counts readable back); an
        output is committed only if the builder and every check succeeded.
        """
        key_inputs, snapshots = self._key_inputs(stage, options, inputs)
        key = self.key(key_inputs)
        final = self.entry_dir(stage.name, key)
        crash_point("key-computed")
        with contextlib.ExitStack() as held:
            with self._writing(final.parent):  # makes the folders (a clear may race it)
                held.enter_context(file_lock(final.parent / f"{key}.lock"))
            crash_point("locked")
            entry = None if rebuild else self._serve(stage.name, key, final)
            if entry is None:
                manifest = self._commit(stage, key, key_inputs, final, builder, check,
                                        snapshots)
                entry = Entry(stage.name, key, final, manifest, hit=False)
                crash_point("committed")
            with self._writing(final.parent):  # still under the build lock: clear waits
                hold = SharedHold(final.parent / f"{key}.use")
        entry.hold = hold
        crash_point("returned")
        return entry

    def _serve(self, stage: str, key: str, final: Path) -> Entry | None:
        """The entry at ``final`` if every file matches its manifest; a bad one is reported
        and removed (None: build it)."""
        if not os.path.lexists(final):
            return None
        manifest, problem = _load_manifest(final, stage, key)
        problems = [problem] if problem else []
        if manifest is not None:
            found, refreshed = check_files(final, manifest["files"])
            problems += [p.line() for p in found]
            if not found and refreshed:
                self._refresh(final, manifest, refreshed)
        if not problems:
            crash_point("hit-checked")
            return Entry(stage, key, final, manifest, hit=True)
        crash_point("bad-found")
        self.warn(f"cache entry {stage} {key[:16]} is not what its manifest promises and was "
                  f"not served: {'; '.join(problems)}. Removed it; building it again.")
        with self._writing(final):
            trash = final.parent / f"{TMP_PREFIX}{key}-bad-{os.getpid()}-{time.time_ns()}"
            self._wait_for_readers(stage, key, final)
            os.replace(final, trash)
            crash_point("bad-moved")
            self._remove(trash)
        crash_point("bad-removed")
        return None

    def _wait_for_readers(self, stage: str, key: str, final: Path) -> None:
        """Before an entry is moved away, let the processes still reading it finish (bounded:
        a reader that never lets go gets a warning, not a hang)."""
        if not wait_for_readers(final.parent / f"{key}.use", READERS_TIMEOUT_S):
            self.warn(f"cache entry {stage} {key[:16]} is still held by another process after "
                      f"{READERS_TIMEOUT_S:g} s; replacing it anyway")

    def _refresh(self, final: Path, manifest: dict, refreshed: dict) -> None:
        """Write back fingerprints that moved while the content stayed (a copied or restored
        cache), so the next hit is cheap again. Best effort: a read-only cache still serves."""
        for name, fp in refreshed.items():
            manifest["files"][name]["fingerprint"] = fp
        with contextlib.suppress(OSError):
            _write_manifest(final, manifest, replace=True)
            crash_point("refreshed")

    def _commit(self, stage: Stage, key: str, key_inputs: dict, final: Path,
                builder: Callable[[Path], BuildOutput],
                check: Callable[[Path, BuildOutput], None] | None,
                snapshots: Mapping[str, Snapshot]) -> dict:
        with self._writing(final.parent):
            tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{key}-", dir=final.parent))
        try:
            crash_point("tmp-created")
            output = builder(tmp)
            crash_point("built")
            check_output(tmp, output)
            if check is not None:
                check(tmp, output)
            self._check_inputs_unchanged(snapshots)
            if (edited := source_changed(stage.modules)) is not None:
                raise ToolError(f"{edited}: the source of stage {stage.name} changed while it "
                                "was being built, so the output may come from other code than "
                                "its key names; nothing was cached. Build again (in a new "
                                "process if this one had loaded the file)")
            crash_point("checked")
            with self._writing(tmp):
                manifest = _manifest(stage, key, key_inputs, tmp, output)
                crash_point("sealed")
                _write_manifest(tmp, manifest)
            with self._writing(final):
                if os.path.lexists(final):
                    trash = final.parent / f"{TMP_PREFIX}{key}-old-{os.getpid()}-{time.time_ns()}"
                    self._wait_for_readers(stage.name, key, final)
                    os.replace(final, trash)
                    crash_point("old-moved")
                    os.replace(tmp, final)
                    crash_point("replaced")
                    self._remove(trash)
                else:
                    os.replace(tmp, final)
                    crash_point("renamed")
                _fsync_dir(final.parent)
        finally:
            if os.path.lexists(tmp):
                self._remove(tmp)
        return manifest

    # inspection -----------------------------------------------------------------------------
    def _stage_dirs(self, stage: str | None) -> list[Path]:
        if stage is not None:
            check_stage_name(stage)
        if not self.root.is_dir():  # the root itself may be a link (a cache on another disk)
            return []
        names = [stage] if stage else sorted(os.listdir(self.root))
        return [self.root / n for n in names
                if STAGE_NAME.fullmatch(n) and _is_plain_dir(self.root / n)]

    def _slots(self, stage: str | None):
        """(stage, bucket directory, name) of every entry and leftover, without following
        links."""
        for stage_dir in self._stage_dirs(stage):
            for bucket in sorted(os.listdir(stage_dir)):
                if not _is_plain_dir(stage_dir / bucket):
                    continue
                for name in sorted(os.listdir(stage_dir / bucket)):
                    yield stage_dir.name, stage_dir / bucket, name

    def stage_names(self) -> list[str]:
        """The stages that have a directory under the root."""
        return [d.name for d in self._stage_dirs(None)]

    def entries(self, stage: str | None = None) -> list[Entry]:
        """Every entry (of one stage), the unusable ones with ``broken`` saying why."""
        found = []
        for stage_name, bucket, name in self._slots(stage):
            if not KEY.fullmatch(name):
                continue
            manifest, problem = _load_manifest(bucket / name, stage_name, name)
            found.append(Entry(stage_name, name, bucket / name, manifest or {}, hit=True,
                               broken=problem))
        return found

    def find(self, key_prefix: str) -> Entry:
        """The one entry whose key starts with ``key_prefix``."""
        matches = [e for e in self.entries() if e.key.startswith(key_prefix)]
        if not matches:
            raise ToolError(f"no cache entry with key {key_prefix!r} under {self.root}; "
                            "run `uncollapse cache ls` to see the keys")
        if len(matches) > 1:
            raise ToolError(f"key prefix {key_prefix!r} matches {len(matches)} entries; "
                            "give more characters")
        return matches[0]

    def explain(self, key_a: str, key_b: str) -> list[tuple[str, object, object]]:
        """The key inputs that differ between two entries, as (dotted path, a, b)."""
        a, b = self.find(key_a), self.find(key_b)
        for entry in (a, b):
            if entry.broken:
                raise ToolError(f"{entry.path / MANIFEST}: {entry.broken}; remove the entry "
                                f"with `uncollapse cache clear --stage {entry.stage}`")
        return _diff(a.manifest["key_inputs"], b.manifest["key_inputs"])

    def clear(self, stage: str | None = None) -> int:
        """Remove all entries (of one stage) and leftovers of dead builds; return how many
        entries went. What a live build holds is kept (see ``clear_counts``)."""
        return self.clear_counts(stage)[0]

    def clear_counts(self, stage: str | None = None) -> tuple[int, int]:
        """``clear``, returning (entries removed, entries kept because a live process holds
        them). Leftovers are removed only when no live build holds their key's lock; the lock
        files of removed entries go too, and then the folders left empty."""
        removed = kept = 0
        for _, bucket, name in list(self._slots(stage)):
            if KEY.fullmatch(name):
                locks = [bucket / f"{name}.lock", bucket / f"{name}.use"]
            elif match := TMP_KEY.match(name):
                prefix = match.group(1)
                locks = sorted(bucket.glob(f"{prefix}*.lock"))  # held while a build runs
            else:
                continue  # lock files (below), and anything the cache did not make
            with self._writing(bucket), try_exclusive(*locks) as free:
                if free:
                    self._remove(bucket / name)
                    if KEY.fullmatch(name):
                        for lock in locks:
                            remove_lock_file(lock)
                removed += bool(free and KEY.fullmatch(name))
                kept += bool(not free and KEY.fullmatch(name))
        self._clear_locks(stage)
        return removed, kept

    def _clear_locks(self, stage: str | None) -> None:
        """Remove the lock files of keys that have no entry and no build in progress, then
        the bucket and stage folders left empty."""
        slots = list(self._slots(stage))
        names = {(bucket, name) for _, bucket, name in slots}
        building = {(bucket, match.group(1)) for _, bucket, name in slots
                    if (match := TMP_KEY.match(name))}
        for _, bucket, name in slots:
            key, _, kind = name.partition(".")
            if kind not in ("lock", "use") or not KEY.fullmatch(key) or (bucket, key) in names \
                    or any(b == bucket and key.startswith(p) for b, p in building):
                continue  # not a lock file, or its entry or a build's leftover is still there
            locks = [bucket / f"{key}.lock", bucket / f"{key}.use"]
            with self._writing(bucket), try_exclusive(*locks) as free:
                if free and not os.path.lexists(bucket / key):
                    for lock in locks:
                        remove_lock_file(lock)
        for stage_dir in self._stage_dirs(stage):
            for bucket in os.listdir(stage_dir):
                if _is_plain_dir(stage_dir / bucket):
                    with contextlib.suppress(OSError):  # not empty: something lives there
                        os.rmdir(stage_dir / bucket)
            with contextlib.suppress(OSError):
                os.rmdir(stage_dir)

    def _remove(self, path: Path) -> None:
        """Delete ``path`` (a directory tree, a file or a link, never what a link points to),
        after checking that it lies inside the cache root."""
        root = self.root.resolve()
        parent = path.parent.resolve()
        if parent != root and root not in parent.parents:
            raise ToolError(f"refusing to delete {path}: it is not inside the cache root {root}")
        if _is_plain_dir(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)


def _is_plain_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _load_manifest(entry_dir: Path, stage: str, key: str) -> tuple[dict | None, str | None]:
    """(manifest, None) for a usable manifest, else (None, why not)."""
    path = entry_dir / MANIFEST
    try:
        if not _is_plain_dir(entry_dir):
            return None, "the entry is not a plain directory"
        if stat.S_ISLNK(os.lstat(path).st_mode):
            return None, "the manifest is a symbolic link"
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            manifest = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        return None, "the manifest is missing"
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"the manifest cannot be read ({type(exc).__name__}: {exc})"
    problem = manifest_problem(manifest, stage=stage, key=key)
    return (None, problem) if problem else (manifest, None)


def _manifest(stage: Stage, key: str, key_inputs: dict, out_dir: Path,
              output: BuildOutput) -> dict:
    """Seal the files of ``out_dir`` (read-only) and describe each: SHA-256, bytes and the
    fingerprint taken after sealing."""
    files = {}
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        name = path.relative_to(out_dir).as_posix()
        os.chmod(path, 0o444)
        digest, st = sha256_nofollow(path)
        files[name] = {"sha256": digest, "bytes": st.st_size, "fingerprint": fingerprint(st)}
    return {"key": key, "stage": stage.name, "key_inputs": key_inputs, "files": files,
            "rows": output.rows, "schema": output.schema, "result": output.result,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "uncollapse_version": __version__}


def _write_manifest(entry_dir: Path, manifest: dict, *, replace: bool = False) -> None:
    """Write the manifest durably and read-only; ``replace`` swaps it in atomically."""
    target = entry_dir / MANIFEST
    path = entry_dir / f"{TMP_PREFIX}{MANIFEST}" if replace else target
    with open(path, "w") as fh:
        fh.write(json.dumps(manifest, indent=2, default=str))
        fh.flush()
        crash_point("manifest-written")
        os.fsync(fh.fileno())
    os.chmod(path, 0o444)
    crash_point("manifest-synced")
    if replace:
        os.replace(path, target)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _diff(a, b, prefix: str = "") -> list[tuple[str, object, object]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [(prefix, a, b)]
