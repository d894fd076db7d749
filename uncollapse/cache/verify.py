"""Re-hash cache entries and report any file that no longer matches its manifest."""

from __future__ import annotations

from uncollapse.cache.hashing import sha256_file
from uncollapse.cache.store import Cache
from uncollapse.report import Code, Report

CACHE_FILE_MISSING = Code("CACHE_FILE_MISSING", "error",
                          "A file listed in a cache entry's manifest is gone.",
                          "Rebuild the artifact (`--rebuild`) or `uncollapse cache clear`.")
CACHE_HASH_MISMATCH = Code("CACHE_HASH_MISMATCH", "error",
                           "A cached file's SHA-256 differs from its manifest: it was changed "
                           "or corrupted after it was built.",
                           "Rebuild the artifact (`--rebuild`); check the disk if it recurs.")


def validate_cache(cache: Cache, key_prefix: str | None = None) -> Report:
    """Re-hash every file of every entry (or of one entry) against its manifest."""
    entries = [cache.find(key_prefix)] if key_prefix else cache.entries()
    missing, mismatched = [], []
    n_files = 0
    for entry in entries:
        for name, meta in entry.files.items():
            n_files += 1
            path = entry.file(name)
            if not path.exists():
                missing.append({"key": entry.key, "file": name})
            elif sha256_file(path) != meta["sha256"]:
                mismatched.append({"key": entry.key, "file": name, "expected": meta["sha256"]})
    findings = []
    if missing:
        findings.append(CACHE_FILE_MISSING.finding(f"{len(missing)} cached file(s) missing",
                                                   count=len(missing), examples=missing))
    if mismatched:
        findings.append(CACHE_HASH_MISMATCH.finding(
            f"{len(mismatched)} cached file(s) do not match their manifest",
            count=len(mismatched), examples=mismatched))
    return Report(target=str(cache.root), kind="cache", findings=findings,
                  stats={"entries": len(entries), "files": n_files})
