"""Content digests of files, directories and source code; large inputs are read once."""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import NamedTuple

from uncollapse.cache.crashpoints import crash_point
from uncollapse.digests import sha256_file
from uncollapse.errors import ToolError


def canonical_json(value) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def sha256_json(value) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


RACY_NS = 2 * 10**9
"""A file changed less than this long before its stamp was taken may change again without
moving the stamp (timestamps are only as fine as the file system's clock tick): such a file is
re-read, not trusted by its stamp, when the build checks its inputs before committing."""


def stamp_of(st: os.stat_result) -> tuple[int, int, int, int]:
    """(inode, size, mtime, ctime): any replace, resize or write moves at least one of them."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Seen(NamedTuple):
    """One file as it was when its digest was taken: its stamp (taken before it was read),
    its SHA-256, and whether it had changed so recently that the stamp cannot vouch for it."""

    stamp: tuple[int, int, int, int]
    sha256: str
    racy: bool


class Snapshot(NamedTuple):
    """An input's digest and what it was taken of: every file read (by its path as walked)
    and, for a folder, the links to folders that were not followed (name, target)."""

    digest: str
    files: dict[str, Seen]
    links: tuple[tuple[str, str], ...] = ()


class DigestMemo:
    """SHA-256 of input files, remembered by (path, inode, size, mtime, ctime).

    A second build over a large unchanged input does not read it again; any change of size,
    mtime, inode (a replaced file) or ctime makes it re-hash. ctime matters: an edit in place
    that keeps the size and restores the mtime (``touch -d``, ``cp -p``, ``os.utime``) still
    moves the ctime, which no user call can set back.
    """

    TABLE = "input_digests"

    def __init__(self, db_path: str | os.PathLike):
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.hashed_bytes = 0  # bytes actually read by this object, for tests and reports
        try:
            self._create()
        except ToolError as exc:
            if type(exc.__cause__) is not sqlite3.DatabaseError:  # not a damaged file
                raise
            # only a memo: a damaged one (not a database, malformed) is started afresh
            self.db_path.unlink()
            self._create()

    def _create(self):
        with self._database() as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (path TEXT PRIMARY KEY, "
                       "inode INTEGER, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, "
                       "sha256 TEXT)")

    def _connect(self):
        return sqlite3.connect(self.db_path, timeout=30)

    def file(self, path: str | os.PathLike) -> str:
        return self.seen(path).sha256

    def seen(self, path: str | os.PathLike) -> Seen:
        """The digest of one file, with the stamp it had before it was read."""
        path = Path(path).resolve()
        st = path.stat()
        stamp = stamp_of(st)
        racy = st.st_ctime_ns > time.time_ns() - RACY_NS
        with self._database() as db:
            row = db.execute(f"SELECT inode, size, mtime_ns, ctime_ns, sha256 FROM {self.TABLE} "
                             "WHERE path=?", (str(path),)).fetchone()
        if row and tuple(row[:4]) == stamp:
            return Seen(stamp, row[4], racy)
        digest = sha256_file(path)
        self.hashed_bytes += st.st_size
        crash_point("input-hashed")
        with self._database() as db:
            db.execute(f"INSERT OR REPLACE INTO {self.TABLE} VALUES (?,?,?,?,?,?)",
                       (str(path), *stamp, digest))
        return Seen(stamp, digest, racy)

    @contextlib.contextmanager
    def _database(self):
        try:
            with self._connect() as db:
                yield db
        except sqlite3.Error as exc:
            raise ToolError(f"the cache directory {self.db_path.parent} cannot be written "
                            f"(its record of input digests, {self.db_path.name}: {exc}); point "
                            "the cache at a writable directory with --cache-dir DIR or "
                            "UNCOLLAPSE_CACHE=DIR") from exc

    def path(self, path: str | os.PathLike) -> str:
        """Digest of a file, or of a directory as its sorted (relative path, file digest) list."""
        return self.snapshot(path).digest

    def snapshot(self, path: str | os.PathLike) -> Snapshot:
        """``path``'s digest and what it was taken of (see ``changed_since``).

        A folder's digest covers every file below it by relative path and content, following
        links to files and to folders inside it (each folder once), so every file that a glob
        inside the folder can reach is part of it; a link to a folder outside it is part of it
        as the link's target, not followed.
        """
        path = Path(path)
        if not path.is_dir():
            seen = self.seen(path)
            return Snapshot(seen.sha256, {str(path): seen})
        files, links = walk_folder(path)
        seen = {str(p): self.seen(p) for _, p in files}
        parts = [[rel, seen[str(p)].sha256] for rel, p in files]
        parts += [[rel, {"link": target}] for rel, target in links]
        return Snapshot(sha256_json(parts), seen, tuple(links))


def walk_folder(root: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """Every regular file below ``root`` as (relative posix path, path), sorted, and the links
    to folders that lead out of it (or back into a folder already walked) as (relative path,
    link target). Links to files are followed wherever they lead."""
    real_root = os.path.realpath(root)
    walked = {real_root}
    files, links = [], []
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue  # a dangling or looping link: no file to read
            if is_file:
                files.append((rel, Path(entry.path)))
            elif is_dir and entry.is_symlink():
                real = os.path.realpath(entry.path)
                inside = real == real_root or real.startswith(real_root + os.sep)
                if inside and real not in walked:
                    walked.add(real)
                    pending.append((Path(entry.path), rel + "/"))
                else:
                    links.append((rel, os.readlink(entry.path)))
            elif is_dir:
                walked.add(os.path.realpath(entry.path))
                pending.append((Path(entry.path), rel + "/"))
    return sorted(files), sorted(links)


def changed_since(path: str | os.PathLike, snapshot: Snapshot) -> str | None:
    """What changed in file or folder ``path`` since ``snapshot`` was taken, in words (None
    when nothing did). A file counts as changed when its stamp moved, even if its bytes are
    back to what they were: the builder may have read it in between."""
    path = Path(path)
    if path.is_dir():
        files, links = walk_folder(path)
        now = {str(p) for _, p in files}
        added, gone = sorted(now - set(snapshot.files)), sorted(set(snapshot.files) - now)
        if added or gone:
            return "; ".join(([f"{', '.join(added[:3])} appeared"] if added else [])
                             + ([f"{', '.join(gone[:3])} went away"] if gone else []))
        if tuple(links) != snapshot.links:
            return "a link to a folder inside it changed"
    for name, seen in snapshot.files.items():
        try:
            st = os.stat(name)
        except OSError:
            return f"{name} went away"
        if stamp_of(st) != seen.stamp:
            return f"{name} was replaced or written to"
        if seen.racy and sha256_file(name) != seen.sha256:
            return f"{name} was written to"
    return None


def _module_files(name: str, whole_package: bool) -> list[Path]:
    """The source file of a module; of a package, its ``__init__.py`` or all its files."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"cannot find the Python source of module {name}")
    origin = Path(spec.origin)
    if origin.name == "__init__.py" and whole_package:
        return sorted(origin.parent.rglob("*.py"))
    return [origin]


@functools.lru_cache(maxsize=4096)
def _is_module(name: str) -> bool:
    parent, _, _ = name.rpartition(".")
    try:
        if parent and importlib.util.find_spec(parent).submodule_search_locations is None:
            return False  # `from package.module import function`: not a module
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError, ValueError):
        return False


def _imports_within(file: Path, root: str) -> set[str]:
    """Modules of the top-level package ``root`` that ``file`` imports, anywhere in it."""
    return set(_imports_of(file, stamp_of(file.stat()), root))


@functools.lru_cache(maxsize=4096)
def _imports_of(file: Path, stamp: tuple, root: str) -> frozenset[str]:
    """``_imports_within``, remembered while the file's stamp stays."""
    found = set()
    for node in ast.walk(ast.parse(file.read_bytes())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if (n == root or n.startswith(root + ".")) and _is_module(n))
    return frozenset(found)


def source_digest(modules: tuple[str, ...]) -> str:
    """Digest of the Python source of ``modules`` (a package listed here counts all its files)
    and of every module of their own top-level package that they import, directly or through
    others (an imported package counts its ``__init__.py``).

    Part of every cache key, so fixing a builder's code, or a helper it calls, can never serve
    a stale result. The key must name the code that runs, so a file of a module this process
    has already loaded must still be what it was when the process saw it first: after an edit
    (a fix made while a notebook or server keeps running the old code) this raises a
    ToolError instead of keying the old code's output by the new code.
    """
    pending = [(name, True) for name in modules]
    seen, files = set(), set()
    while pending:
        name, whole_package = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        root = name.split(".")[0]
        for file in _module_files(name, whole_package):
            files.add((root, file))
            pending.extend((m, False) for m in _imports_within(file, root) - seen)
    loaded = _loaded_files()
    parts, stamps = [], []
    for root, file in sorted(files):
        root_dir = Path(importlib.util.find_spec(root).origin).parent
        relative = file.relative_to(root_dir) if file.is_relative_to(root_dir) else file.name
        source = file.read_bytes()
        stamps.append((file, _check_loaded_source(file, loaded)))
        digest = hashlib.sha256(source).hexdigest()
        parts.append([root, Path(relative).as_posix(), digest])
    _DIGESTED[tuple(modules)] = stamps
    return sha256_json(parts)


_DIGESTED: dict[tuple[str, ...], list[tuple[Path, tuple[int, int, int, int]]]] = {}


def source_changed(modules: tuple[str, ...]) -> Path | None:
    """A source file of the last ``source_digest(modules)`` that changed since (one ``stat``
    per file, for the check before a build commits), or None."""
    for file, stamp in _DIGESTED.get(tuple(modules), []):
        try:
            if stamp_of(os.stat(file)) != stamp:
                return file
        except OSError:
            return file
    return None


def _source_stamps(package_dir: Path) -> dict[str, tuple[int, int, int, int]]:
    stamps = {}
    for file in package_dir.rglob("*.py"):
        with contextlib.suppress(OSError):
            stamps[os.path.realpath(file)] = stamp_of(file.stat())
    return stamps


# The source files as this process first saw them: this package's own files from the moment
# the cache was imported (next to the builders that import it), any other module's from the
# first key that named it.
_FIRST_SEEN: dict[str, tuple[int, int, int, int]] = _source_stamps(Path(__file__).parents[1])


def _loaded_files() -> dict[str, str]:
    """The real path of the source file of every loaded module, with the module's name."""
    found = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.endswith(".py"):
            found[os.path.realpath(file)] = name
    return found


def _check_loaded_source(file: Path, loaded: dict[str, str]) -> tuple[int, int, int, int]:
    """The file's stamp, after checking that a loaded module's file is as first seen."""
    real = os.path.realpath(file)
    now = stamp_of(os.stat(real))
    first = _FIRST_SEEN.setdefault(real, now)
    if real in loaded and now != first:
        raise ToolError(f"{file}: the source of module {loaded[real]} changed after this "
                        "process loaded it, so the code running here is not the code on disk "
                        "that a cache key would name; nothing was built. Start a new Python "
                        "process (restart the notebook kernel or the server) and build again")
    return now
