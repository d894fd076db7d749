"""The cache family: a real entry, damaged one way, then ``cache ls|verify|clear`` and a build.

The entry is what ``build chunks docs.jsonl`` stores. One damage is drawn: the manifest's bytes
mutated or its structure broken (missing ``files``, wrong types, a file entry pointing outside
the entry), the stored Parquet bit-flipped, truncated, emptied, padded, replaced by its first
half (same schema, fewer rows, old mtime), removed, or turned into a directory, a FIFO or a
symlink to a file outside the cache, a stray temporary directory, or a hostile
``--stage`` name with a victim folder beside the cache. Besides the invariants of every run,
a build that exits 0 must hand over exactly the table a fresh build makes, and nothing outside
the cache root is ever removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import strategies as st

from fuzz.invariants import Case, Outcome
from fuzz.mutations import BYTE_MUTATIONS, CORPUS

SOURCE = CORPUS / "chunks" / "docs.jsonl"
MANIFEST_DAMAGE = ["drop_files", "files_not_a_dict", "file_outside", "wrong_sha", "drop_key",
                   "drop_key_inputs", "files_empty", "bytes_negative", "not_an_object",
                   "deep_nesting", "rows_string"]
FILE_DAMAGE = ["bit_flipped", "truncated", "empty", "replaced", "removed", "symlink_outside",
               "directory", "fifo", "appended"]
# laid out like a stage's entries and leftovers, so that a clear that strays here would act
VICTIM_FILES = ["keep.txt", "ab/abcd/manifest.json", "ab/.tmp-abcd-1/keep.txt"]
STAGES = ["../victim", "..", "/", "VICTIM_ABS", "chunks/../../victim", ".", "", "nosuch",
          "chunks/../.."]


def _build_args(work: Path, out: Path) -> list[str]:
    return ["build", "chunks", str(work / "in" / SOURCE.name), "-o", str(out), "--cache-dir",
            str(work / "cache"), "--quiet"]


def prepare(work: Path, run_in_process) -> tuple[Path, Path]:
    """A cache holding one good entry; returns (entry folder, the good output)."""
    (work / "in").mkdir(parents=True)
    shutil.copyfile(SOURCE, work / "in" / SOURCE.name)
    good = work / "expected" / "good.parquet"
    good.parent.mkdir()
    case = Case("cache", "none", "none", _build_args(work, good), work, {})
    outcome = run_in_process(case)
    if outcome.exit_code != 0:
        raise RuntimeError(f"the cache seed build failed: {outcome.output}")
    manifest = next((work / "cache").glob("chunks/*/*/manifest.json"))
    return manifest.parent, good


def _writable(path: Path) -> None:
    """Undo the read-only seal of an entry (as any user who wants to damage it can)."""
    os.chmod(path.parent, 0o755)
    if path.exists() and not path.is_symlink():
        os.chmod(path, 0o644)


def _damage_manifest(path: Path, data: st.DataObject) -> str:
    _writable(path)
    if data.draw(st.booleans(), label="bytes or structure"):
        name = data.draw(st.sampled_from(sorted(BYTE_MUTATIONS)), label="mutation")
        path.write_bytes(BYTE_MUTATIONS[name](path.read_bytes(), data))
        return f"manifest {name}"
    manifest = json.loads(path.read_text())
    damage = data.draw(st.sampled_from(MANIFEST_DAMAGE), label="manifest damage")
    files = manifest.get("files", {})
    first = next(iter(files))
    if damage == "drop_files":
        del manifest["files"]
    elif damage == "files_not_a_dict":
        manifest["files"] = data.draw(st.sampled_from([[], None, "chunks.parquet", 7]))
    elif damage == "file_outside":
        manifest["files"] = {"../../../../outside.parquet": files[first]}
    elif damage == "wrong_sha":
        files[first]["sha256"] = "0" * 64
    elif damage == "drop_key":
        del manifest["key"]
    elif damage == "drop_key_inputs":
        del manifest["key_inputs"]
    elif damage == "files_empty":
        manifest["files"] = {}
    elif damage == "bytes_negative":
        files[first]["bytes"] = -1
    elif damage == "rows_string":
        manifest["rows"] = "many"
    elif damage == "not_an_object":
        manifest = [manifest]
    else:
        manifest["result"] = "DEEP"
    path.write_text(json.dumps(manifest).replace('"DEEP"', "[" * 5000 + "]" * 5000))
    return f"manifest {damage}"


def _half(path: Path):
    """The stored table's first half: valid Parquet with the right schema and wrong rows."""
    table = pq.read_table(path)
    return table.slice(0, table.num_rows // 2)


def _damage_file(path: Path, data: st.DataObject, work: Path) -> tuple[str, bool]:
    """Damage the stored table; returns (description, whether it needs a subprocess)."""
    damage = data.draw(st.sampled_from(FILE_DAMAGE), label="file damage")
    _writable(path)
    blob = path.read_bytes()
    if damage in ("bit_flipped", "truncated"):
        path.write_bytes(BYTE_MUTATIONS[damage](blob, data))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "appended":
        path.write_bytes(blob + b"\0" * 16)
    elif damage == "replaced":
        original = path.stat()
        pq.write_table(_half(path), path)
        os.utime(path, ns=(original.st_atime_ns, original.st_mtime_ns))
    elif damage == "removed":
        path.unlink()
    elif damage == "symlink_outside":
        outside = work / "outside.parquet"
        pq.write_table(_half(path), outside)
        path.unlink()
        path.symlink_to(outside)
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    else:
        path.unlink()
        os.mkfifo(path)
    return f"entry file {damage}", damage in ("fifo",)


def draw_cache_cases(data: st.DataObject, work: Path, run_in_process,
                     allow_subprocess: bool = True) -> list[tuple[Case, object]]:
    """Damage the entry, then the cases to run in order, each with an extra check or None."""
    entry, good = prepare(work, run_in_process)
    victim = work / "victim"
    for name in VICTIM_FILES:
        (victim / name).parent.mkdir(parents=True, exist_ok=True)
        (victim / name).write_text("{}\n")
    what = data.draw(st.sampled_from(["manifest", "file", "stray_temp", "stage"]), label="what")
    subprocess, stage = False, None
    if what == "manifest":
        note = _damage_manifest(entry / "manifest.json", data)
    elif what == "file":
        note, subprocess = _damage_file(entry / "chunks.parquet", data, work)
        subprocess = subprocess and allow_subprocess
        if not allow_subprocess and subprocess:
            note = "entry file fifo skipped"
    elif what == "stray_temp":
        stray = entry.parent / ".tmp-0123456789ab-stray"
        stray.mkdir()
        (stray / "chunks.parquet").write_bytes(b"PAR1 half")
        note = "stray temp dir"
    else:
        stage = data.draw(st.sampled_from(STAGES), label="stage")
        stage = str(victim.resolve()) if stage == "VICTIM_ABS" else stage
        note = f"cache clear --stage {stage!r}"
    if note == "entry file fifo skipped":
        return []
    served = work / "served.parquet"
    cache = ["--cache-dir", str(work / "cache")]
    commands: list[tuple[list[str], object]] = [
        (["cache", "ls", *cache], None),
        (["cache", "verify", *cache, "--json", str(work / "verify.json")], None),
        (_build_args(work, served), _serves_good(served, good)),
        (["cache", "clear", *cache, *(["--stage", stage] if stage is not None else [])],
         _victim_survives(victim)),
    ]
    inputs = {"source": work / "in" / SOURCE.name}
    owned = [work / "cache", work / "expected", victim, work / "outside.parquet"]
    cases = []
    for args, extra in commands:
        outputs = {"output": served} if args[0] == "build" else (
            {"report": work / "verify.json"} if args[1] == "verify" else {})
        cases.append((Case("cache", what, "cache entry", args, work, inputs, outputs,
                           owned + [served, work / "verify.json"], work / "PICKLE_EXECUTED",
                           subprocess=subprocess, note=note), extra))
    return cases


def _serves_good(served: Path, good: Path):
    def check(case: Case, outcome: Outcome) -> list[tuple[str, str]]:
        if outcome.exit_code != 0 or not served.is_file():
            return []
        try:
            same = pq.read_table(served).equals(pq.read_table(good))
        except Exception as exc:  # an unreadable served file is the finding
            return [("cache serves only what its key promises", f"served file unreadable: {exc}")]
        return [] if same else [("cache serves only what its key promises",
                                 "exit 0 with a table that differs from a fresh build's")]
    return check


def _victim_survives(victim: Path):
    def check(case: Case, outcome: Outcome) -> list[tuple[str, str]]:
        gone = [name for name in VICTIM_FILES if not (victim / name).is_file()]
        return [("nothing outside the cache root is touched",
                 f"{victim.name}/{gone[0]} removed by {' '.join(case.args)}")] if gone else []
    return check
