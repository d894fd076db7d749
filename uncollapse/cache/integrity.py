"""Is a cache entry still exactly what its manifest says? Checked on every hit, cheaply.

At commit every file of an entry is made read-only and its fingerprint (size, mtime, inode,
ctime) goes into the manifest beside its SHA-256. A hit compares fingerprints only (one
``lstat`` per file); a file whose fingerprint moved (edited, replaced, copied, restored from a
backup) is hashed in full, and served only if its SHA-256 still matches. Nothing is followed:
names are checked to stay inside the entry, every path component is ``lstat``-ed and must be
a plain directory or a regular file, and files are opened with ``O_NOFOLLOW``. A user cannot
set a file's ctime, so an edit that restores size and mtime still moves the fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from uncollapse.cache.hashing import sha256_json
from uncollapse.digests import BLOCK

MANIFEST = "manifest.json"
SHA256 = re.compile(r"[0-9a-f]{64}")


class Problem(NamedTuple):
    """Why one file of an entry cannot be served: ``kind`` is ``missing``, ``mismatch`` or
    ``unsafe`` (a link, a special file, or a name leaving the entry)."""

    file: str
    kind: str
    what: str

    def line(self) -> str:
        return f"{self.file}: {self.what}"


def fingerprint(st: os.stat_result) -> dict:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
            "ctime_ns": st.st_ctime_ns}


def manifest_problem(manifest, *, stage: str, key: str) -> str | None:
    """What makes a parsed manifest unusable (None when it is well formed for this entry)."""
    if not isinstance(manifest, dict):
        return f"the manifest is a JSON {type(manifest).__name__}, not an object"
    missing = [k for k in ("key", "stage", "key_inputs", "files") if k not in manifest]
    if missing:
        return f"the manifest lacks {', '.join(missing)}"
    if manifest["key"] != key or manifest["stage"] != stage:
        return (f"the manifest is for {manifest['stage']!r} {str(manifest['key'])[:16]}, "
                f"not for the entry it sits in ({stage!r} {key[:16]})")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        return "the manifest lists no files"
    for name, meta in files.items():
        if not (isinstance(meta, dict) and isinstance(meta.get("sha256"), str)
                and SHA256.fullmatch(meta["sha256"]) and type(meta.get("bytes")) is int):
            return f"the manifest's record of {name!r} lacks a sha256 or a byte count"
    rows = manifest.get("rows", {})
    if not isinstance(rows, dict) or any(type(v) is not int for v in rows.values()):
        return "the manifest's row counts are not whole numbers"
    if not isinstance(manifest["key_inputs"], dict):
        return "the manifest's key inputs are not an object"
    if sha256_json(manifest["key_inputs"]) != key:
        return "the manifest's key inputs do not hash to the entry's key"
    return None


def member(entry_dir: Path, name: str) -> tuple[Path | None, Problem | None]:
    """The path of file ``name`` of an entry, checked component by component with ``lstat``:
    (path, None) for a regular file inside the entry, else (None, the problem)."""
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if not parts or name.startswith("/") or "\\" in name or any(p in (".", "..")
                                                                  for p in parts):
        return None, Problem(str(name), "unsafe", "the name leaves the entry directory")
    path = entry_dir
    for i, part in enumerate(parts):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None, Problem(name, "missing", "missing from the entry")
        if stat.S_ISLNK(st.st_mode):
            return None, Problem(name, "unsafe",
                                 f"is a symbolic link (to {os.readlink(path)}), never followed")
        last = i == len(parts) - 1
        if last and not stat.S_ISREG(st.st_mode):
            return None, Problem(name, "unsafe", "is not a regular file")
        if not last and not stat.S_ISDIR(st.st_mode):
            return None, Problem(name, "unsafe", f"{part} is not a directory")
    return path, None


def sha256_nofollow(path: Path) -> tuple[str, os.stat_result]:
    """SHA-256 of a regular file opened without following a link, with its ``fstat``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        digest = hashlib.sha256()
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest(), st


def check_files(entry_dir: Path, files: dict, *, full: bool = False
                ) -> tuple[list[Problem], dict[str, dict]]:
    """Check every file of an entry against its manifest record.

    Returns the problems and, for files that matched by content after their fingerprint had
    moved (or had none), their new fingerprints. ``full`` hashes every file (``cache verify``).
    """
    try:
        top = os.lstat(entry_dir)
    except FileNotFoundError:
        return [Problem(".", "missing", "the entry directory is gone")], {}
    if not stat.S_ISDIR(top.st_mode):
        return [Problem(".", "unsafe", "the entry is not a plain directory (a link?)")], {}
    problems, refreshed = [], {}
    for name, meta in files.items():
        path, problem = member(entry_dir, name)
        if problem:
            problems.append(problem)
            continue
        st = os.lstat(path)
        if st.st_size != meta["bytes"]:
            problems.append(Problem(name, "mismatch", f"holds {st.st_size:,} bytes, the "
                                                      f"manifest says {meta['bytes']:,}"))
            continue
        if not full and meta.get("fingerprint") == fingerprint(st):
            continue
        try:
            digest, st = sha256_nofollow(path)
        except OSError as exc:
            problems.append(Problem(name, "unsafe", f"cannot be read safely ({exc})"))
            continue
        if digest != meta["sha256"]:
            moved = [k for k, v in fingerprint(st).items()
                     if (meta.get("fingerprint") or {}).get(k) != v]
            problems.append(Problem(name, "mismatch", "its SHA-256 differs from the manifest "
                                    f"(changed since it was built: {', '.join(moved)})"))
        elif meta.get("fingerprint") != fingerprint(st):
            refreshed[name] = fingerprint(st)
    return problems, refreshed
