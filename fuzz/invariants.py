"""What must hold after every fuzzed run, whatever the input.

- the exit code is 0, 1 or 2 and no exception escaped the command;
- the output holds no Python traceback and no raw exception class name (``KeyError: 'x'``) on a
  line that names neither a file (of the run, or any path or file name) nor an option;
- no pickle was executed (the payload of ``fuzz.arrays.PicklePayload`` creates a marker);
- inputs are unchanged (bytes and file type), special files stay special files;
- no temporary file is left in the run's folder, its cache or its TMPDIR (``systmp``); an
  output exists after exit 0 and reads back in its format, no output exists after a failure,
  a JSON report is whole JSON;
- the run ends before the timeout (no hang);
- a zero-byte input never passes (exit 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

TRACEBACK = "Traceback (most recent call last)"
RAW_EXCEPTION = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception|Interrupt|Exit|Warning)\b")
FILE_NAME = re.compile(r"[\w.-]+\.(?:json|jsonl|parquet|arrow|npz|npy|txt|csv|py|lock|sqlite)\b|"
                       r"/[\w.-]+/")
TEMP_NAME = re.compile(r"(^\.tmp|\.tmp|-tmp-|^tmp[a-z0-9_]{6,}|\.partial$|~$)")
SYSTEM_TEMP = "systmp"
LIBRARY_CACHE = re.compile(r"^(torchinductor_|matplotlib-|triton|numba)")  # libraries', not ours


@dataclass
class Case:
    """One run of one target on one hostile input."""

    target: str
    mutation: str
    role: str
    args: list[str]
    work: Path
    inputs: dict[str, Path]
    outputs: dict[str, Path] = field(default_factory=dict)
    owned: list[Path] = field(default_factory=list)
    marker: Path | None = None
    special: list[Path] = field(default_factory=list)
    empty_input: bool = False
    subprocess: bool = False
    note: str = ""


@dataclass
class Outcome:
    exit_code: int | None
    output: str
    timed_out: bool = False
    escaped: str | None = None
    seconds: float = 0.0


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """File type and content digest of every file under ``root`` (special files not read)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            path = Path(dirpath, name)
            info = os.lstat(path)
            kind = stat.S_IFMT(info.st_mode)
            digest = ""
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path)] = (kind, digest)
    return found


def _inside(path: Path, folders: list[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def _output_readable(path: Path) -> str | None:
    """Why an output file does not read back in its format, or None."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_table(path)
        elif path.suffix in (".npz", ".npy"):
            import numpy as np

            loaded = np.load(path, allow_pickle=False)
            if path.suffix == ".npz":
                with loaded:
                    for key in loaded.files:
                        loaded[key]
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except Exception as exc:  # any failure to read back is the finding
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def _raw_exception_lines(case: Case, text: str) -> list[str]:
    names = {p.name for p in [*case.inputs.values(), *case.outputs.values()]}
    names |= {Path(a).name for a in case.args if "/" in a}
    bad = []
    for line in text.splitlines():
        if not RAW_EXCEPTION.search(line):
            continue
        if ("--" in line or " -o" in line or any(n and n in line for n in names)
                or FILE_NAME.search(line)):
            continue
        bad.append(line.strip()[:300])
    return bad


def violations(case: Case, outcome: Outcome, before: dict) -> list[tuple[str, str]]:
    """Every broken invariant as (invariant, detail)."""
    found: list[tuple[str, str]] = []
    if outcome.timed_out:
        return [("no hang", f"still running after {outcome.seconds:.0f} s (killed)")]
    if outcome.escaped:
        found.append(("no traceback", outcome.escaped.strip().splitlines()[-1][:300]))
    if outcome.exit_code not in (0, 1, 2):
        found.append(("exit code in {0,1,2}", f"exit {outcome.exit_code}"))
    if TRACEBACK in outcome.output:
        found.append(("no traceback", outcome.output[outcome.output.index(TRACEBACK):][:300]))
    for line in _raw_exception_lines(case, outcome.output)[:1]:
        found.append(("no raw exception without file or option", line))
    if case.marker is not None and case.marker.exists():
        found.append(("no pickle executed", f"{case.marker.name} was created"))
    if case.empty_input and outcome.exit_code == 0:
        found.append(("empty input never passes", f"{case.role} was 0 bytes; exit 0"))
    after = snapshot(case.work)
    owned = [*case.owned, *case.outputs.values()]
    for path, (kind, digest) in before.items():
        if _inside(Path(path), case.owned):
            continue
        now = after.get(path)
        if now is None:
            found.append(("inputs never modified", f"{Path(path).name} was removed"))
        elif now[0] != kind:
            found.append(("inputs never modified",
                          f"{Path(path).name} changed type {stat.filemode(kind)[0]} -> "
                          f"{stat.filemode(now[0])[0]}"))
        elif now[1] != digest:
            found.append(("inputs never modified", f"{Path(path).name} was rewritten"))
    for path in sorted(set(after) - set(before)):
        p = Path(path)
        if p == case.work / SYSTEM_TEMP or any(LIBRARY_CACHE.match(q.name) for q in [p, *p.parents]
                                               if q.parent == case.work / SYSTEM_TEMP):
            continue
        if (TEMP_NAME.search(p.name) and not p.name.endswith(".lock")) or (
                case.work / SYSTEM_TEMP in p.parents):
            found.append(("no temp files left", str(p.relative_to(case.work))))
        elif not _inside(p, owned) and p != case.marker:
            found.append(("no stray files", str(p.relative_to(case.work))))
    inputs = set(map(str, case.inputs.values()))
    for role, path in case.outputs.items():
        if str(path) in inputs or path in case.special or str(path) in before:
            continue
        if outcome.exit_code == 0 and role == "output" and not path.exists():
            found.append(("output written on success", f"exit 0 but no {path.name}"))
        elif outcome.exit_code not in (0, None) and role == "output" and path.exists():
            found.append(("no half-written output",
                          f"exit {outcome.exit_code} left {path.name} "
                          f"({path.stat().st_size} bytes)"))
        elif path.is_file() and (why := _output_readable(path)):
            found.append(("no half-written output", f"{path.name} does not read back: {why}"))
    return found
