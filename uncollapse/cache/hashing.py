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
from pathlib import Path

from uncollapse.cache.crashpoints import crash_point
from uncollapse.errors import ToolError

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def sha256_json(value) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


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
        path = Path(path).resolve()
        st = path.stat()
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._database() as db:
            row = db.execute(f"SELECT inode, size, mtime_ns, ctime_ns, sha256 FROM {self.TABLE} "
                             "WHERE path=?", (str(path),)).fetchone()
        if row and tuple(row[:4]) == stamp:
            return row[4]
        digest = sha256_file(path)
        self.hashed_bytes += st.st_size
        crash_point("input-hashed")
        with self._database() as db:
            db.execute(f"INSERT OR REPLACE INTO {self.TABLE} VALUES (?,?,?,?,?,?)",
                       (str(path), *stamp, digest))
        return digest

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
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            return sha256_json([[p.relative_to(path).as_posix(), self.file(p)] for p in files])
        return self.file(path)


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
    found = set()
    for node in ast.walk(ast.parse(file.read_bytes())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if (n == root or n.startswith(root + ".")) and _is_module(n))
    return found


def source_digest(modules: tuple[str, ...]) -> str:
    """Digest of the Python source of ``modules`` (a package listed here counts all its files)
    and of every module of their own top-level package that they import, directly or through
    others (an imported package counts its ``__init__.py``).

    Part of every cache key, so fixing a builder's code, or a helper it calls, can never serve
    a stale result.
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
    parts = []
    for root, file in sorted(files):
        root_dir = Path(importlib.util.find_spec(root).origin).parent
        relative = file.relative_to(root_dir) if file.is_relative_to(root_dir) else file.name
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        parts.append([root, Path(relative).as_posix(), digest])
    return sha256_json(parts)
