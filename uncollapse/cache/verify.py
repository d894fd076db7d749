"""Re-hash cache entries and report any entry that is not what its manifest says."""

from __future__ import annotations

from uncollapse.cache.integrity import MANIFEST, check_files
from uncollapse.cache.store import Cache
from uncollapse.report import Code, Report

CACHE_FILE_MISSING = Code("CACHE_FILE_MISSING", "error",
                          "A file listed in a cache entry's manifest is gone.",
                          "Rebuild the artifact (`--rebuild`) or `uncollapse cache clear`.")
CACHE_HASH_MISMATCH = Code("CACHE_HASH_MISMATCH", "error",
                           "A cached file's SHA-256 (or size) differs from its manifest: it was "
                           "changed or corrupted after it was built.",
                           "Rebuild the artifact (`--rebuild`); check the disk if it recurs.")
CACHE_FILE_UNSAFE = Code("CACHE_FILE_UNSAFE", "error",
                         "A cached file is a symbolic link, a special file or a name leading "
                         "out of its entry; a build never follows it and rebuilds the entry.",
                         "Rebuild the artifact (`--rebuild`) or `uncollapse cache clear`; find "
                         "out what put a link into the cache.")
CACHE_MANIFEST_BROKEN = Code("CACHE_MANIFEST_BROKEN", "error",
                             "A cache entry's manifest.json is missing, unreadable, not JSON, "
                             "or lacks what it must record; the entry cannot be trusted.",
                             "`uncollapse cache clear --stage STAGE` removes it (a build of "
                             "the same key also replaces it).")

BY_KIND = {"missing": CACHE_FILE_MISSING, "mismatch": CACHE_HASH_MISMATCH,
           "unsafe": CACHE_FILE_UNSAFE}


def validate_cache(cache: Cache, key_prefix: str | None = None) -> Report:
    """Re-hash every file of every entry (or of one entry) against its manifest."""
    entries = [cache.find(key_prefix)] if key_prefix else cache.entries()
    found: dict[Code, list[dict]] = {}
    n_files = 0
    for entry in entries:
        if entry.broken:
            found.setdefault(CACHE_MANIFEST_BROKEN, []).append(
                {"key": entry.key, "stage": entry.stage, "file": MANIFEST,
                 "problem": entry.broken})
            continue
        n_files += len(entry.files)
        problems, _ = check_files(entry.path, entry.files, full=True)
        for problem in problems:
            example = {"key": entry.key, "stage": entry.stage, "file": problem.file,
                       "problem": problem.what}
            if problem.kind == "mismatch":
                example["expected"] = entry.files.get(problem.file, {}).get("sha256")
            found.setdefault(BY_KIND[problem.kind], []).append(example)
    messages = {CACHE_FILE_MISSING: "cached file(s) missing",
                CACHE_HASH_MISMATCH: "cached file(s) do not match their manifest",
                CACHE_FILE_UNSAFE: "cached file(s) are links or special files",
                CACHE_MANIFEST_BROKEN: "cache entry manifest(s) broken or missing"}
    findings = [code.finding(f"{len(examples)} {messages[code]}", count=len(examples),
                             examples=examples)
                for code in (CACHE_FILE_MISSING, CACHE_HASH_MISMATCH, CACHE_FILE_UNSAFE,
                             CACHE_MANIFEST_BROKEN) if (examples := found.get(code))]
    return Report(target=str(cache.root), kind="cache", findings=findings,
                  stats={"entries": len(entries), "files": n_files})
