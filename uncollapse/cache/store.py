"""The content-addressed artifact store (README, "Cache").

An entry lives at ``<root>/<stage>/<key[:2]>/<key>/``. It is built in a temporary directory
beside it, under a lock, and renamed into place with its ``manifest.json`` written last, so a
crash leaves a stray temporary directory (ignored and cleaned by ``clear``) and never a half entry.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from uncollapse import __version__
from uncollapse.cache.hashing import DigestMemo, sha256_file, sha256_json, source_digest
from uncollapse.cache.lock import file_lock
from uncollapse.errors import ToolError

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


def default_root() -> Path:
    """``$UNCOLLAPSE_CACHE``, else the platform's cache directory."""
    if env := os.environ.get("UNCOLLAPSE_CACHE"):
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "uncollapse"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "uncollapse" / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "uncollapse"


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


@dataclass
class Entry:
    stage: str
    key: str
    path: Path
    manifest: dict
    hit: bool = False

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def files(self) -> dict:
        return self.manifest["files"]

    @property
    def result(self) -> dict:
        """What the builder returned besides its files (for example its build report)."""
        return self.manifest.get("result", {})


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


class Cache:
    """A content-addressed store of built artifacts.

    Example:
        >>> cache = Cache("/tmp/uc-cache")
        >>> entry = cache.build(Stage("demo", 1, ("uncollapse.cache.store",)), options={},
        ...                     inputs={}, builder=lambda out: BuildOutput())
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.digests = DigestMemo(self.root / ".digests.sqlite")

    # keys -----------------------------------------------------------------------------------
    def key_inputs(self, stage: Stage, *, options: Mapping, inputs: Mapping) -> dict:
        """Everything that can change a stage's output, as plain JSON values.

        ``inputs`` maps a role to a file or directory path (hashed by content) or to a dict
        ``{"digest": ...}`` for inputs that are not local files (a hub dataset's fingerprint).
        """
        input_digests = {}
        for role, value in inputs.items():
            if isinstance(value, Mapping):
                input_digests[role] = dict(value)
            else:
                path = Path(value)
                if not path.exists():
                    raise ToolError(f"{path}: input does not exist")
                input_digests[role] = {"sha256": self.digests.path(path)}
        return {"stage": stage.name, "stage_version": stage.version,
                "code": source_digest(stage.modules), "options": dict(options),
                "inputs": input_digests, "format_version": stage.format_version}

    @staticmethod
    def key(key_inputs: Mapping) -> str:
        return sha256_json(key_inputs)

    def entry_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / key

    # build ----------------------------------------------------------------------------------
    def build(self, stage: Stage, *, options: Mapping, inputs: Mapping,
              builder: Callable[[Path], BuildOutput], rebuild: bool = False) -> Entry:
        """Return the cached entry for these inputs, building it with ``builder`` on a miss.

        ``builder(out_dir)`` writes its files into ``out_dir`` and returns a ``BuildOutput``.
        """
        key_inputs = self.key_inputs(stage, options=options, inputs=inputs)
        key = self.key(key_inputs)
        final = self.entry_dir(stage.name, key)
        with file_lock(final.parent / f"{key}.lock"):
            if not rebuild and (final / MANIFEST).exists():
                return Entry(stage.name, key, final, _read_manifest(final), hit=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{key[:12]}-", dir=final.parent))
            try:
                output = builder(tmp)
                manifest = self._manifest(stage, key, key_inputs, tmp, output)
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
                if final.exists():
                    trash = final.parent / f"{TMP_PREFIX}old-{key[:12]}-{os.getpid()}"
                    os.replace(final, trash)
                    os.replace(tmp, final)
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    os.replace(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        return Entry(stage.name, key, final, manifest, hit=False)

    @staticmethod
    def _manifest(stage: Stage, key: str, key_inputs: dict, out_dir: Path,
                  output: BuildOutput) -> dict:
        files = {}
        for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
            name = path.relative_to(out_dir).as_posix()
            files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        return {"key": key, "stage": stage.name, "key_inputs": key_inputs, "files": files,
                "rows": output.rows, "schema": output.schema, "result": output.result,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "uncollapse_version": __version__}

    # inspection -----------------------------------------------------------------------------
    def entries(self, stage: str | None = None) -> list[Entry]:
        stages = [self.root / stage] if stage else sorted(
            p for p in self.root.glob("*") if p.is_dir() and not p.name.startswith("."))
        found = []
        for stage_dir in stages:
            for manifest in sorted(stage_dir.glob(f"*/*/{MANIFEST}")):
                if manifest.parent.name.startswith(TMP_PREFIX):
                    continue
                found.append(Entry(stage_dir.name, manifest.parent.name, manifest.parent,
                                   _read_manifest(manifest.parent), hit=True))
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
        return _diff(a.manifest["key_inputs"], b.manifest["key_inputs"])

    def clear(self, stage: str | None = None) -> int:
        """Remove all entries (of one stage) and stray temporary directories; return the count."""
        removed = 0
        for entry in self.entries(stage):
            shutil.rmtree(entry.path)
            removed += 1
        stage_dirs = [self.root / stage] if stage else [p for p in self.root.glob("*")
                                                          if p.is_dir()]
        for stage_dir in stage_dirs:
            for leftover in stage_dir.glob(f"*/{TMP_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
        return removed


def _read_manifest(entry_dir: Path) -> dict:
    try:
        return json.loads((entry_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ToolError(f"{entry_dir / MANIFEST}: unreadable manifest ({exc}); "
                        "remove the entry with `uncollapse cache clear`") from exc


def _diff(a, b, prefix: str = "") -> list[tuple[str, object, object]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [(prefix, a, b)]
